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
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import warnings
from pathlib import Path
from typing import Any, Callable, Mapping

import torch

from . import paths
from .results import atomic_write_text


def config_key(config: Mapping[str, Any]) -> str:
    """SHA-256 (hex, 16 chars) of the configuration as canonical JSON."""
    try:
        text = json.dumps(config, sort_keys=True, separators=(",", ":"), default=str)
    except TypeError as err:
        raise TypeError(f"cache configuration must be JSON-able: {err}") from err
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def fingerprint(*tensors: torch.Tensor) -> str:
    """SHA-256 (hex, 16 chars) of tensors' shapes, dtypes and bytes: the data part of a key."""
    digest = hashlib.sha256()
    for tensor in tensors:
        t = tensor.detach().cpu().contiguous()
        digest.update(f"{tuple(t.shape)}{t.dtype}".encode())
        digest.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()[:16]


def enabled_by_default() -> bool:
    return os.environ.get("ADVMANIFOLD_NO_CACHE", "").strip().lower() not in {"1", "true", "yes"}


def _paths(name: str, key: str, directory: Path) -> tuple[Path, Path]:
    return directory / f"{name}-{key}.pt", directory / f"{name}-{key}.json"


def load(name: str, config: Mapping[str, Any], directory: str | os.PathLike | None = None) -> Any | None:
    """The cached payload, or None when absent; warns and returns None when corrupted."""
    payload_path, meta_path = _paths(name, config_key(config), paths.cache_dir(directory))
    if not meta_path.is_file() or not payload_path.is_file():
        return None
    try:
        meta = json.loads(meta_path.read_text())
        blob = payload_path.read_bytes()
        if hashlib.sha256(blob).hexdigest() != meta["sha256"]:
            raise ValueError("payload hash does not match its metadata")
        return torch.load(io.BytesIO(blob), weights_only=True, map_location="cpu")
    except Exception as err:  # noqa: BLE001 - any failure means: rebuild
        warnings.warn(f"cache entry {payload_path.name} is corrupted ({err}); rebuilding it", stacklevel=2)
        return None


def save(name: str, config: Mapping[str, Any], payload: Any, directory: str | os.PathLike | None = None) -> Path:
    payload_path, meta_path = _paths(name, config_key(config), paths.cache_dir(directory))
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    blob = buffer.getvalue()
    tmp = payload_path.with_name(f".{payload_path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(blob)
    os.replace(tmp, payload_path)
    meta = {"name": name, "config": config, "sha256": hashlib.sha256(blob).hexdigest(), "bytes": len(blob)}
    atomic_write_text(meta_path, json.dumps(meta, indent=1, default=str))
    return payload_path


def cached(name: str, config: Mapping[str, Any], build: Callable[[], Any], *,
           enabled: bool | None = None, directory: str | os.PathLike | None = None) -> Any:
    """``build()`` once per configuration; later calls load the stored payload.

    >>> state = cached("cnn-mnist", {"epochs": 2, "data": fingerprint(x)},   # doctest: +SKIP
    ...                lambda: train(model, ...).state_dict())
    """
    if not name.replace("-", "").replace("_", "").isalnum():
        raise ValueError(f"cache name must contain only letters, digits, '-' and '_', got {name!r}")
    enabled = enabled_by_default() if enabled is None else enabled
    if enabled:
        hit = load(name, config, directory)
        if hit is not None:
            return hit
    payload = build()
    if enabled:
        save(name, config, payload, directory)
    return payload
