"""``python -m advmanifold.book``: :func:`advmanifold.book.runner.main`."""

from .runner import main

raise SystemExit(main())
