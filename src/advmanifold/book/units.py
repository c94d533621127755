"""Units: the expensive, independent pieces of work of a chapter.

A chapter is its settings, its units and a narrative notebook. A :class:`Unit` is a
pure function of a JSON-able configuration whose result goes through the
content-addressed cache (:mod:`advmanifold.book.cache`) under ``(name, config)``: a
model trained for one seed, a rendered data set, an attack run over a test set. Built in
the notebook, in another process or on a Dask worker, a unit is the same cache entry,
so scaling out is only "build the missing units first, anywhere"
(:mod:`advmanifold.book.fanout`), after which the notebook finds everything cached.

Each chapter module listed in :data:`advmanifold.chapters.CHAPTERS` provides

- ``settings``, a :class:`advmanifold.book.profiles.Settings` (its table and every
  setting declared once): ``settings(profile, **overrides)`` → its settings, checked;
  ``settings.from_params(profile, params)`` → the same for notebook parameters;
- ``units(profile, params)`` → the list of its units for the notebook parameters
  ``params`` (the parameters cell's values, as the runner would inject them);
- optionally ``priority(unit)`` → the order in which its units are built.

The runner and the fan-out reach these through a :class:`Registry` of functions.

A unit's configuration must be computable without building anything expensive: it
holds the unit's own settings plus the keys of the units it depends on (``deps``), or
fingerprints of raw inputs that are cheap to read (the MNIST files).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping

from . import cache

@dataclass(frozen=True, eq=False)
class Unit:
    """One cached piece of work: ``build()`` → payload, stored under ``(name, config)``.

    ``deps`` are units whose payloads ``build`` reads (through the cache); they are
    built first. ``estimate_s`` is a rough cost in seconds on the reference machine
    (2 CPU cores), corrected by :func:`estimate` with the timings recorded when units
    of the same name were built; ``cost_model`` names the version of the formula
    behind it, so that timings recorded against an older formula do not rescale a
    newer one.
    """

    chapter: str
    name: str
    config: Mapping[str, Any]
    build: Callable[[], Any] = field(repr=False)
    deps: tuple["Unit", ...] = ()
    estimate_s: float = 0.0
    cost_model: int = 1  # version of the formula behind estimate_s

    @property
    def key(self) -> str:
        """The cache entry's file stem, ``<name>-<sha256 of config>``."""
        return f"{self.name}-{cache.config_key(self.config)}"

    def is_cached(self) -> bool:
        return cache.exists(self.name, self.config)

    def get(self) -> Any:
        """The payload: loaded from the cache, or built (and stored) now."""
        return cache.cached(
            self.name,
            self.config,
            self.build,
            meta={
                "estimate_s": float(self.estimate_s),
                "cost_model": self.cost_model,
                "chapter": self.chapter,
            },
        )

    def build_seconds(self) -> float:
        """Seconds its build took, as the cache recorded it (NaN without a record)."""
        meta = cache.metadata(self.name, self.config) or {}
        seconds = meta.get("build_s")
        return math.nan if seconds is None else float(seconds)

    def describe(self) -> str:
        shown = ", ".join(f"{k}={v}" for k, v in self.config.items() if k != "data")
        return f"{self.chapter} / {self.name} ({shown})"


def _no_priority(unit: Unit) -> tuple:
    return ()


def _no_check(stem: str, profile: str, params: Mapping[str, Any]) -> None:
    return None


def _never(stem: str) -> bool:
    return False


@dataclass(frozen=True)
class Registry:
    """What the runner and the fan-out ask of the chapters, as functions.

    The book wing imports no chapter: the entry point (:mod:`advmanifold.book.__main__`)
    takes these from :func:`advmanifold.chapters.registry` and hands them down.

    - ``units(stem, profile, params)``: the units of chapter ``stem`` for ``profile``
      and its notebook parameters ``params``, dependencies first;
    - ``priority(unit)``: a sort key of ``unit`` within its chapter (smaller is built
      first; ``()`` where the chapter has no order of its own);
    - ``check(stem, profile, params)``: raises ``ValueError`` (a
      :class:`~advmanifold.book.profiles.SettingError`) when a notebook parameter has
      a value its setting does not take;
    - ``runs_alone(stem)``: True for a chapter that times things, so that it runs
      after every unit is built and beside nothing else.
    """

    units: Callable[[str, str, Mapping[str, Any]], list[Unit]]
    priority: Callable[[Unit], Any] = _no_priority
    check: Callable[[str, str, Mapping[str, Any]], None] = _no_check
    runs_alone: Callable[[str], bool] = _never


def build_device() -> str:
    """The device unit builds train on: ``ADVMANIFOLD_DEVICE`` (default ``cpu``).

    A Dask worker that owns one GPU is started with ``ADVMANIFOLD_DEVICE=cuda`` and
    ``CUDA_VISIBLE_DEVICES=<i>``; payloads are stored as CPU tensors either way.
    """
    import os

    return os.environ.get("ADVMANIFOLD_DEVICE", "cpu")


def unique(units: Iterable[Unit]) -> list[Unit]:
    """Units and their dependencies, each key once, dependencies before dependents."""
    seen: dict[str, Unit] = {}

    def visit(unit: Unit) -> None:
        if unit.key in seen:
            return
        for dep in unit.deps:
            visit(dep)
        seen[unit.key] = unit

    for unit in units:
        visit(unit)
    return list(seen.values())


#: Timings that may correct a unit's cost model: builds of at least this many estimated
#: seconds (below, fixed overheads dominate) on a machine not overloaded at the time
#: (1-minute load average per core at most this).
MIN_ESTIMATE_S, MAX_LOAD_PER_CORE = 5.0, 1.5


def estimate(unit: Unit) -> tuple[float, str]:
    """Seconds this unit should take here, and where the number comes from.

    The unit's own ``estimate_s`` is scaled by the median ratio of measured to
    estimated build time over the units of the same name built on this machine
    (recorded in the cache's metadata), counting only builds large enough and made
    while the machine was not overloaded, against the same version of the cost
    formula; where such builds exist for the unit's own
    ``method`` (a configuration key of trainings), only those count. Without any
    such record ``estimate_s`` is used as it is.
    """
    usable = [
        r
        for r in cache.build_records(unit.name)
        if r.get("build_s") is not None
        and (r.get("estimate_s") or 0) >= MIN_ESTIMATE_S
        and r.get("load_per_core", math.inf) <= MAX_LOAD_PER_CORE
        and r.get("cost_model", 1) == unit.cost_model
    ]
    method = unit.config.get("method")
    same = [r for r in usable if (r.get("config") or {}).get("method") == method]
    ratios = sorted(r["build_s"] / r["estimate_s"] for r in (same or usable))
    if not ratios:
        return float(unit.estimate_s), "model"
    scale = ratios[len(ratios) // 2]
    return float(unit.estimate_s) * scale, f"model × {len(ratios)} timing(s)"


def format_seconds(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"
