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

from ..science.data import resolve_data_dir as data_dir
from ..science.data import user_cache

__all__ = ["book_root", "cache_dir", "data_dir", "figures_dir", "results_dir"]


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


def cache_dir(explicit: str | os.PathLike | None = None) -> Path:
    return _resolve(explicit, "ADVMANIFOLD_CACHE", user_cache() / "cache")


def results_dir(
    explicit: str | os.PathLike | None = None, root: str | os.PathLike | None = None
) -> Path:
    """The results folder: ``explicit`` > ``ADVMANIFOLD_RESULTS`` >
    ``<root>/_build/results`` (``root`` default: :func:`book_root`)."""
    default = (Path(root) if root is not None else book_root()) / "_build" / "results"
    return _resolve(explicit, "ADVMANIFOLD_RESULTS", default)


def figures_dir(explicit: str | os.PathLike | None = None) -> Path:
    """Figures written by the notebooks, next to the results:
    ``<results>/../figures``."""
    return _resolve(explicit, "ADVMANIFOLD_FIGURES", results_dir().parent / "figures")
