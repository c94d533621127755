"""Where data, cache and results live.

Each location is resolved as: explicit argument > environment variable > default.

- data: variable ``ADVMANIFOLD_DATA``, default ``$XDG_CACHE_HOME/advmanifold/data``
  (``~/.cache/...``);
- cache: variable ``ADVMANIFOLD_CACHE``, default ``$XDG_CACHE_HOME/advmanifold/cache``;
- results: variable ``ADVMANIFOLD_RESULTS``, default ``<book root>/_build/results``,
  the book root being the first parent of the working directory holding ``_toc.yml``
  (else the working directory).
"""

from __future__ import annotations

import os
from pathlib import Path


def _user_cache() -> Path:
    return (
        Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "advmanifold"
    )


def _resolve(explicit, variable: str, default: Path) -> Path:
    path = Path(explicit or os.environ.get(variable) or default).expanduser()
    path.mkdir(parents=True, exist_ok=True)
    return path


def book_root(start: Path | None = None) -> Path:
    """First directory at or above ``start`` (default: cwd) holding ``_toc.yml``."""
    start = Path(start or Path.cwd()).resolve()
    for candidate in (start, *start.parents):
        if (candidate / "_toc.yml").is_file():
            return candidate
    return start


def data_dir(explicit: str | os.PathLike | None = None) -> Path:
    return _resolve(explicit, "ADVMANIFOLD_DATA", _user_cache() / "data")


def cache_dir(explicit: str | os.PathLike | None = None) -> Path:
    return _resolve(explicit, "ADVMANIFOLD_CACHE", _user_cache() / "cache")


def results_dir(explicit: str | os.PathLike | None = None) -> Path:
    return _resolve(explicit, "ADVMANIFOLD_RESULTS", book_root() / "_build" / "results")


def figures_dir(explicit: str | os.PathLike | None = None) -> Path:
    """Figures written by the notebooks, next to the results:
    ``<results>/../figures``."""
    return _resolve(explicit, "ADVMANIFOLD_FIGURES", results_dir().parent / "figures")
