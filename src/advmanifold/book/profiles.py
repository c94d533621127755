"""Run profiles shared by every notebook.

``smoke`` exists for tests and CI (minutes for the whole book), ``quick`` is the
default book build on a laptop CPU, ``paper`` uses the papers' settings. Each
notebook keeps its own table of settings per profile and calls :func:`select`.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any, Mapping

PROFILES = ("smoke", "quick", "paper")


def seeds(n_seeds: int, seed: int = 0) -> list[int]:
    """The training seeds ``seed, seed + 1, …, seed + n_seeds − 1``."""
    if isinstance(n_seeds, bool) or int(n_seeds) != n_seeds or n_seeds < 1:
        raise ValueError(f"n_seeds must be an integer >= 1, got {n_seeds!r}")
    if isinstance(seed, bool) or int(seed) != seed:
        raise ValueError(f"seed must be an integer, got {seed!r}")
    return list(range(int(seed), int(seed) + int(n_seeds)))


def check_profile(profile: str) -> str:
    if profile not in PROFILES:
        raise ValueError(f"profile must be one of {PROFILES}, got {profile!r}")
    return profile


def select(
    profile: str, table: Mapping[str, Mapping[str, Any]], **overrides: Any
) -> SimpleNamespace:
    """Settings of ``profile`` from ``table`` with every non-None override applied.

    >>> table = {p: {"epochs": i} for i, p in enumerate(PROFILES)}
    >>> select("quick", table, epochs=None).epochs
    1
    """
    check_profile(profile)
    missing = [p for p in PROFILES if p not in table]
    if missing:
        raise ValueError(f"settings table lacks profiles {missing}")
    settings = dict(table[profile])
    unknown = sorted(
        k for k, v in overrides.items() if v is not None and k not in settings
    )
    if unknown:
        raise ValueError(f"unknown setting(s) {unknown}; valid: {sorted(settings)}")
    settings.update({k: v for k, v in overrides.items() if v is not None})
    return SimpleNamespace(profile=profile, **settings)
