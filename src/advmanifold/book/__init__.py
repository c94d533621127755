"""The book's machinery: the runner (``python -m advmanifold.book``), the plan and
its Dask fan-out, units and their cache, results files, paths, profiles, figures, the
table of contents and the claims ledger's rules.

Importing this package imports none of its modules: the chapters use
:mod:`~advmanifold.book.units`, :mod:`~advmanifold.book.cache` and the others
without the runner. No module here imports the chapters but the runner's entry point,
:mod:`advmanifold.book.__main__`, which hands their registry
(:func:`advmanifold.chapters.registry`) to the runner and the fan-out.
"""
