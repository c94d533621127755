"""Headline numbers and tables of a chapter, written where the prose and the claims
ledger read them: ``<results>/<stem>.json`` (flat: metric name → number, plus
profile, seed, package versions and wall time) and ``<results>/<stem>__<table>.csv``.

Every number added is also glued (myst-nb) under the same name, so the prose
shows exactly what the file holds.
"""

from __future__ import annotations

import json
import math
import os
import platform
import tempfile
import time
from importlib import metadata
from numbers import Real
from pathlib import Path
from typing import Any

from . import paths
from .profiles import check_profile

VERSIONED = ("advmanifold", "torch", "torchvision", "numpy")


def _glue(name: str, value: Any) -> None:
    try:
        from myst_nb import glue
    except ImportError:  # outside the book (Colab, plain scripts) glue is not needed
        return
    glue(name, value, display=False)


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


def machine() -> dict[str, Any]:
    """Where a result was computed: CPU model and cores, OS, torch threads, CUDA
    device."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    found: dict[str, Any] = {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "os": platform.platform(),
    }
    try:
        import torch

        found["torch_threads"] = torch.get_num_threads()
        if torch.cuda.is_available():
            found["cuda_device"] = torch.cuda.get_device_name(0)
    except ImportError:
        pass
    return found


def describe_machine() -> str:
    """One line: ``<cpu>, <n> cores, <threads> torch threads[, <GPU>]``."""
    m = machine()
    text = f"{m['cpu']}, {m['cores']} cores"
    if "torch_threads" in m:
        text += f", {m['torch_threads']} torch threads"
    return text + (f", {m['cuda_device']}" if "cuda_device" in m else "")


def versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for name in VERSIONED:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return found


class Results:
    """Collects a chapter's numbers; :meth:`write` saves them.

    >>> res = Results("00_demo", profile="smoke", seed=0)   # doctest: +SKIP
    >>> res.add("accuracy", 0.97)                          # doctest: +SKIP
    >>> res.write()                                        # doctest: +SKIP
    """

    def __init__(
        self,
        stem: str,
        *,
        profile: str,
        seed: int,
        directory: str | os.PathLike | None = None,
    ):
        if not stem or "/" in stem or stem.startswith("."):
            raise ValueError(
                f"stem must be a plain file stem such as '01_fonts', got {stem!r}"
            )
        self.stem, self.profile, self.seed = stem, check_profile(profile), int(seed)
        self.directory = Path(directory) if directory else None
        self.metrics: dict[str, float | int] = {}
        self.tables: dict[str, Any] = {}
        self.started = time.perf_counter()

    def add(self, name: str, value: Real, *, glue: bool = True) -> float | int:
        """Record one number (a Python/NumPy/torch scalar); returns it as a Python
        number."""
        if hasattr(value, "item"):
            value = value.item()
        if isinstance(value, bool) or not isinstance(value, Real):
            raise TypeError(
                f"metric {name!r} must be a real number, got {type(value).__name__}"
            )
        value = int(value) if isinstance(value, int) else float(value)
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"metric {name!r} is not finite: {value}")
        self.metrics[name] = value
        if glue:
            _glue(name, value)
        return value

    def add_table(self, name: str, frame) -> None:
        """Record a pandas DataFrame, written as ``<stem>__<name>.csv``."""
        self.tables[name] = frame

    def write(self) -> Path:
        from . import cache  # cache imports this module

        directory = self.directory or paths.results_dir()
        record = {
            "stem": self.stem,
            "profile": self.profile,
            "seed": self.seed,
            "wall_time_s": round(time.perf_counter() - self.started, 3),
            "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "machine": describe_machine(),
            **{f"version_{k}": v for k, v in versions().items()},
            **{f"cache_{k}": v for k, v in cache.stats().items()},
            **self.metrics,
        }
        path = Path(directory) / f"{self.stem}.json"
        atomic_write_text(path, json.dumps(record, indent=1, sort_keys=False) + "\n")
        for name, frame in self.tables.items():
            atomic_write_text(
                Path(directory) / f"{self.stem}__{name}.csv", frame.to_csv(index=False)
            )
        return path


def read_results(
    stem: str, directory: str | os.PathLike | None = None
) -> dict[str, Any]:
    """The JSON record a chapter wrote; a clear error if it has not run yet."""
    path = Path(directory or paths.results_dir()) / f"{stem}.json"
    if not path.is_file():
        raise FileNotFoundError(
            f"no results for {stem!r} at {path}: run that chapter first"
        )
    return json.loads(path.read_text())
