"""``python -m advmanifold.book`` and the ``advmanifold-book`` command: the runner
(:func:`advmanifold.book.runner.main`) asking the chapters through
:func:`advmanifold.chapters.registry`.

This entry point is the one module of the book wing that imports
:mod:`advmanifold.chapters`: the runner and the fan-out only receive the registry's
functions, so the book's machinery depends on no chapter.
"""

from __future__ import annotations

from ..chapters import registry
from . import runner


def main(argv: list[str] | None = None) -> int:
    """The runner on the command line ``argv`` (default: ``sys.argv``)."""
    return runner.main(registry(), argv)


if __name__ == "__main__":
    raise SystemExit(main())
