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
import time
from importlib import metadata
from numbers import Real
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd

from ..science.compute import cores, cpu_model
from . import cache, paths
from .cache import atomic_write_text
from .profiles import check_profile

VERSIONED = ("advmanifold", "torch", "torchvision", "numpy")


def _glue(name: str, value: Any) -> None:
    try:
        from myst_nb import glue
    except ImportError:  # outside the book (Colab, plain scripts) glue is not needed
        return
    glue(name, value, display=False)


def machine() -> dict[str, Any]:
    """Where a result was computed: CPU model, cores (of the machine, and those this
    process may run on), OS, torch threads, CUDA device."""
    found: dict[str, Any] = {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "cores_available": cores(),
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
        self.labels: dict[str, str] = {}
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

    def add_if_finite(self, name: str, value: Real) -> bool:
        """Record ``value`` as :meth:`add` does when it is finite; otherwise record
        nothing and glue NaN, so that the prose shows "nan" where this run has no
        such number (a method without models at that N, an undefined measure).
        Returns whether it was recorded."""
        if hasattr(value, "item"):
            value = value.item()
        if isinstance(value, float) and not math.isfinite(value):
            _glue(name, float("nan"))
            return False
        self.add(name, value)  # checks the type
        return True

    def label(self, name: str, text: str, *, glue: bool = True) -> str:
        """Record one short text (e.g. which data source a run used), written to the
        results file beside the numbers and glued like them."""
        if not isinstance(text, str):
            raise TypeError(f"label {name!r} must be a str, got {type(text).__name__}")
        self.labels[name] = text
        if glue:
            _glue(name, text)
        return text

    def add_table(self, name: str, frame) -> None:
        """Record a pandas DataFrame, written as ``<stem>__<name>.csv``."""
        self.tables[name] = frame

    def write(self) -> Path:
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
            **self.labels,
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


# ----------------------------------------------------------------- the runner's log


def book_run_path(profile: str, directory: str | os.PathLike | None = None) -> Path:
    """``<results>/book_run_<profile>.json``: the runner's log of a profile."""
    return Path(directory or paths.results_dir()) / f"book_run_{profile}.json"


def read_book_run(
    profile: str, directory: str | os.PathLike | None = None
) -> dict[str, Any]:
    """The runner's log of ``profile``: ``chapters_s`` (stem → seconds of its last
    run), ``total_s``, ``units_s`` (the fan-out before the chapters, last run),
    ``units`` (stem → its units' counts in the fan-out before its last run, where one
    ran: ``listed``, ``built``, ``found``, ``failed``, ``left``) and ``finished``; an
    empty log where none was written."""
    path = book_run_path(profile, directory)
    log = json.loads(path.read_text()) if path.is_file() else {}
    log.setdefault("profile", profile)
    log.setdefault("chapters_s", {})
    log.setdefault("total_s", round(sum(log["chapters_s"].values()), 1))
    return log


def write_book_run(
    profile: str,
    chapters_s: Mapping[str, float],
    *,
    units_s: float | None = None,
    units: Mapping[str, Mapping[str, int]] | None = None,
    wall_s: float | None = None,
    directory: str | os.PathLike | None = None,
) -> Path:
    """Merge chapter times into the log of ``profile`` (other chapters keep theirs),
    with ``total_s`` = their sum; ``units_s`` replaces the fan-out time where given;
    ``units``: the fan-out's counts per chapter of this run (a chapter of
    ``chapters_s`` without them ran without a fan-out: its old counts go);
    ``wall_s``: this run's time from the fan-out's start to the last chapter's end
    (the chapters run beside the fan-out, so it is at most ``units_s + total_s``;
    a run without it drops the old one)."""
    log = read_book_run(profile, directory)
    log["chapters_s"].update({k: round(float(v), 1) for k, v in chapters_s.items()})
    log["total_s"] = round(sum(log["chapters_s"].values()), 1)
    if units_s is not None:
        log["units_s"] = round(float(units_s), 1)
    log.pop("wall_s", None)
    if wall_s is not None:
        log["wall_s"] = round(float(wall_s), 1)
    counts = {k: v for k, v in log.get("units", {}).items() if k not in chapters_s}
    counts.update({k: dict(v) for k, v in (units or {}).items()})
    log.pop("units", None)
    if counts:
        log["units"] = counts
    log["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S")
    path = book_run_path(profile, directory)
    atomic_write_text(path, json.dumps(log, indent=1) + "\n")
    return path


# ------------------------------------------------------------ statistics over seeds


def mean_std(values) -> tuple[float, float]:
    """Mean x̄ and sample standard deviation s = √(Σ (xᵢ − x̄)² / (n − 1)) of per-seed
    values; s is 0 for a single value (no spread measured), NaN values are an
    error."""
    v = np.asarray(
        values.detach().cpu() if hasattr(values, "detach") else list(values),
        dtype=np.float64,
    ).ravel()
    if v.size == 0:
        raise ValueError("values must hold at least one number")
    if not np.isfinite(v).all():
        raise ValueError(f"values must be finite, got {v.tolist()}")
    return float(v.mean()), float(v.std(ddof=1)) if v.size > 1 else 0.0


def over_seeds(frame: pd.DataFrame, by, values) -> pd.DataFrame:
    """Per group of ``by``: the mean of each of ``values`` over its rows (one per
    seed), its sample standard deviation as ``<value>_std`` (0 for one row) and the
    rows' count ``n_models``."""
    grouped = frame.groupby(by, sort=False)[list(values)]
    out = grouped.mean().join(grouped.std(ddof=1).fillna(0.0).add_suffix("_std"))
    out["n_models"] = grouped.size()
    return out


def mean_std_table(frame: pd.DataFrame, by, values) -> pd.DataFrame:
    """"mean ± standard deviation" over seeds of per-seed values
    (:func:`over_seeds`), as text with three decimals."""
    stats = over_seeds(frame, by, values)
    return pd.DataFrame(
        {
            v: stats[v].map("{:.3f}".format) + " ± " + stats[f"{v}_std"].map(
                "{:.3f}".format
            )
            for v in values
        }
    )
