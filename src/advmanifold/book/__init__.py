"""The book's machinery: the runner (``python -m advmanifold.book``), the plan and
its Dask fan-out, units and their cache, results files, paths, profiles, figures, the
table of contents and the claims ledger's rules.

Importing this package imports none of its modules: the chapters use
:mod:`~advmanifold.book.units`, :mod:`~advmanifold.book.cache` and the others
without the runner, which imports the chapters (:mod:`advmanifold.book.runner`).
"""
