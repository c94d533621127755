"""Content-addressed cache for trained models and expensive intermediate results.

An entry is keyed by the SHA-256 of its configuration (a JSON-able mapping that
must include whatever identifies the data, e.g. :func:`fingerprint` of a tensor)
and stored as two files in the cache folder:

- ``<name>-<key>.pt``   the payload, written with ``torch.save`` (tensors, state
  dicts, lists, dicts and plain numbers), loaded with ``weights_only=True``;
- ``<name>-<key>.json`` the configuration, the payload's SHA-256 and size.

Both are written atomically (temporary file + rename), the metadata last. On load
the payload's hash is checked; a missing, truncated or corrupted entry is rebuilt
with a warning. ``ADVMANIFOLD_NO_CACHE=1`` (or ``enabled=False``) bypasses the cache.

The metadata also records how long the build took (``build_s``), which
:func:`advmanifold.book.units.estimate` uses to predict the cost of units not built yet;
:func:`stats` counts this process's hits and misses (a chapter writes them to its
results as ``cache_hits`` and ``cache_misses``).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Mapping

import torch

from . import paths


def atomic_write_text(path: Path, text: str) -> None:
    """Write via a temporary file in the same folder and an atomic rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def config_key(config: Mapping[str, Any]) -> str:
    """SHA-256 (hex, 16 chars) of the configuration as canonical JSON."""
    try:
        text = json.dumps(config, sort_keys=True, separators=(",", ":"), default=str)
    except TypeError as err:
        raise TypeError(f"cache configuration must be JSON-able: {err}") from err
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def fingerprint(*tensors: torch.Tensor) -> str:
    """SHA-256 (hex, 16 chars) of tensors' shapes, dtypes and bytes: the data part of a
    key."""
    digest = hashlib.sha256()
    for tensor in tensors:
        t = tensor.detach().cpu().contiguous()
        digest.update(f"{tuple(t.shape)}{t.dtype}".encode())
        digest.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()[:16]


_STATS = {"hits": 0, "misses": 0}


def stats() -> dict[str, int]:
    """Hits and misses of :func:`cached` in this process since the last
    :func:`reset_stats`."""
    return dict(_STATS)


def reset_stats() -> None:
    _STATS.update(hits=0, misses=0)


def enabled_by_default() -> bool:
    return os.environ.get("ADVMANIFOLD_NO_CACHE", "").strip().lower() not in {
        "1",
        "true",
        "yes",
    }


def _paths(name: str, key: str, directory: Path) -> tuple[Path, Path]:
    return directory / f"{name}-{key}.pt", directory / f"{name}-{key}.json"


def load(
    name: str, config: Mapping[str, Any], directory: str | os.PathLike | None = None
) -> Any | None:
    """The cached payload, or None when absent; warns and returns None when
    corrupted."""
    payload_path, meta_path = _paths(
        name, config_key(config), paths.cache_dir(directory)
    )
    if not meta_path.is_file() or not payload_path.is_file():
        return None
    try:
        meta = json.loads(meta_path.read_text())
        blob = payload_path.read_bytes()
        if hashlib.sha256(blob).hexdigest() != meta["sha256"]:
            raise ValueError("payload hash does not match its metadata")
        return torch.load(io.BytesIO(blob), weights_only=True, map_location="cpu")
    except Exception as err:  # noqa: BLE001 - any failure means: rebuild
        warnings.warn(
            f"cache entry {payload_path.name} is corrupted ({err}); rebuilding it",
            stacklevel=2,
        )
        return None


def exists(
    name: str, config: Mapping[str, Any], directory: str | os.PathLike | None = None
) -> bool:
    """Whether a valid entry is stored (the payload's hash is checked, nothing is
    loaded)."""
    payload_path, meta_path = _paths(
        name, config_key(config), paths.cache_dir(directory)
    )
    if not meta_path.is_file() or not payload_path.is_file():
        return False
    try:
        meta = json.loads(meta_path.read_text())
        return hashlib.sha256(payload_path.read_bytes()).hexdigest() == meta["sha256"]
    except Exception:  # noqa: BLE001 - unreadable metadata: not a valid entry
        return False



def metadata(
    name: str, config: Mapping[str, Any], directory: str | os.PathLike | None = None
) -> dict[str, Any] | None:
    """The stored metadata of one entry (build time, estimate, …), or None."""
    _, meta_path = _paths(name, config_key(config), paths.cache_dir(directory))
    try:
        return json.loads(meta_path.read_text())
    except (OSError, ValueError):
        return None

def build_records(
    name: str, directory: str | os.PathLike | None = None
) -> list[dict[str, Any]]:
    """The metadata of every stored entry called ``name`` (for timing estimates)."""
    records = []
    for meta_path in paths.cache_dir(directory).glob(f"{name}-*.json"):
        try:
            meta = json.loads(meta_path.read_text())
        except (OSError, ValueError):
            continue
        if meta.get("name") == name:
            records.append(meta)
    return records


def save(
    name: str,
    config: Mapping[str, Any],
    payload: Any,
    directory: str | os.PathLike | None = None,
    meta: Mapping[str, Any] | None = None,
) -> Path:
    payload_path, meta_path = _paths(
        name, config_key(config), paths.cache_dir(directory)
    )
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    blob = buffer.getvalue()
    tmp = payload_path.with_name(f".{payload_path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(blob)
    os.replace(tmp, payload_path)
    record = {
        "name": name,
        "config": config,
        "sha256": hashlib.sha256(blob).hexdigest(),
        "bytes": len(blob),
        **(meta or {}),
    }
    atomic_write_text(meta_path, json.dumps(record, indent=1, default=str))
    return payload_path


def cached(
    name: str,
    config: Mapping[str, Any],
    build: Callable[[], Any],
    *,
    enabled: bool | None = None,
    directory: str | os.PathLike | None = None,
    meta: Mapping[str, Any] | None = None,
) -> Any:
    """``build()`` once per configuration; later calls load the stored payload.

    >>> state = cached(  # doctest: +SKIP
    ...     "cnn-mnist", {"epochs": 2, "data": fingerprint(x)},
    ...     lambda: train(model, ...).state_dict())
    """
    if not name.replace("-", "").replace("_", "").isalnum():
        raise ValueError(
            f"cache name must contain only letters, digits, '-' and '_', got {name!r}"
        )
    enabled = enabled_by_default() if enabled is None else enabled
    if enabled:
        hit = load(name, config, directory)
        if hit is not None:
            _STATS["hits"] += 1
            return hit
    _STATS["misses"] += 1
    start = time.perf_counter()
    payload = build()
    if enabled:
        built = {
            "build_s": round(time.perf_counter() - start, 3),
            "built": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "load_per_core": round(os.getloadavg()[0] / (os.cpu_count() or 1), 2),
        }
        save(name, config, payload, directory, meta={**built, **(meta or {})})
    return payload
