"""The book's chapters: one module per chapter (its settings, units, claims helpers and
figures), on top of :mod:`advmanifold.science`, with the book's machinery
(:mod:`advmanifold.book`) for units, cache and results.

:data:`CHAPTERS` maps a notebook stem to the module holding that chapter's
``settings`` (:class:`advmanifold.book.profiles.Settings`: every setting declared once)
and ``units(profile, params)``. The runner asks the chapters through
:func:`registry`, which its entry point (:mod:`advmanifold.book.__main__`) hands to it.

Importing this package loads no chapter: :data:`CHAPTERS` imports them all on its
first use (:func:`chapters`), and ``from advmanifold.chapters import fonts`` imports
only that one. A fresh process that runs one chapter module (the benchmarks'
``python -m advmanifold.chapters.benchmarks.fresh``) so loads neither the other
chapters nor what they import (matplotlib, seaborn, scipy).
"""

from __future__ import annotations

import functools
from types import ModuleType
from typing import Any, Mapping

from ..book.units import Registry, Unit, unique


@functools.cache
def chapters() -> dict[str, ModuleType]:
    """Notebook stem → the module of that chapter's settings and units, every chapter
    imported on the first call (:data:`CHAPTERS`)."""
    from . import benchmarks, bridge, fonts, generalization, mnist, pmnist
    from . import init_scale
    from . import dimpled

    return {
        "01_fonts": fonts,
        "02_mnist": mnist,
        "03_pmnist": pmnist,
        "04_bridge": bridge,
        "06_generalization": generalization,
        "07_dimpled": dimpled,
        "08_init_scale": init_scale,
        "90_benchmarks": benchmarks,
    }


def __getattr__(name: str) -> Any:
    """``CHAPTERS``, the mapping of :func:`chapters`, loaded on first use."""
    if name == "CHAPTERS":
        return chapters()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def chapter_module(stem: str) -> ModuleType | None:
    """The module of a chapter with units, or None for chapters without any."""
    return chapters().get(stem)


def chapter_units(
    stem: str, profile: str, params: Mapping[str, Any] | None = None
) -> list[Unit]:
    """The units chapter ``stem`` needs for ``profile`` and notebook parameters
    ``params``, dependencies first."""
    module = chapter_module(stem)
    if module is None or not hasattr(module, "units"):
        return []
    return unique(module.units(profile, dict(params or {})))


def unit_priority(unit: Unit) -> Any:
    """The build order of ``unit`` within its chapter: the chapter module's
    ``priority(unit)`` where it defines one, else ``()``."""
    own = getattr(chapter_module(unit.chapter), "priority", None)
    return own(unit) if own is not None else ()


def check_parameters(stem: str, profile: str, params: Mapping[str, Any]) -> None:
    """Check the notebook parameters ``params`` of chapter ``stem`` against its
    declared settings; a :class:`~advmanifold.book.profiles.SettingError` names the
    parameter and the values it takes. Chapters without settings accept anything."""
    module = chapter_module(stem)
    if module is not None:
        module.settings.from_params(profile, params)


def runs_alone(stem: str) -> bool:
    """Whether chapter ``stem`` times things (its module sets ``RUNS_ALONE``), so
    that the runner gives it the machine to itself."""
    return bool(getattr(chapter_module(stem), "RUNS_ALONE", False))


def registry() -> Registry:
    """The functions through which the runner and the fan-out ask the chapters."""
    return Registry(
        units=chapter_units,
        priority=unit_priority,
        check=check_parameters,
        runs_alone=runs_alone,
    )
