"""The chapters executed while the fan-out still builds other chapters' units.

The fan-out (:func:`advmanifold.book.fanout.build_missing`) runs on a thread of the
runner; chapters still execute one at a time in the book's order, but each starts as
soon as the chapter before it is done and *its own* units are built, instead of after
every unit of the run. A chapter that times things (``Registry.runs_alone``) waits for
the whole fan-out. While the fan-out runs, a chapter's kernel gets one thread per
process (``OMP_NUM_THREADS=1``): the workers already keep every core busy, and
OpenMP threads that spin-wait for a busy core slow everything many times over.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

from . import paths
from .fanout import FanOutReport
from .results import read_book_run
from .toc import BookError
from .units import Registry

#: the environment a kernel started during the fan-out gets
ONE_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
#: A chapter's own seconds (kernel, loading, figures) where no run recorded them.
CHAPTER_S = 30.0


class FanOutInBackground:
    """The fan-out on a thread, and a gate per chapter.

    ``pending``: chapter stem → the keys of its units not cached at the start;
    ``build(on_done)`` runs the fan-out, calling ``on_done(key)`` as each unit ends,
    and returns its :class:`~advmanifold.book.fanout.FanOutReport`.
    """

    def __init__(
        self,
        pending: Mapping[str, set[str]],
        build: Callable[[Callable[[str], None]], FanOutReport],
    ):
        self._pending = {stem: set(keys) for stem, keys in pending.items()}
        self._ready = {stem: threading.Event() for stem in self._pending}
        self._finished = threading.Event()
        self._lock = threading.Lock()
        self.report: FanOutReport | None = None
        self.error: BaseException | None = None
        self.started = time.perf_counter()
        self.seconds: float | None = None
        for stem, keys in self._pending.items():
            if not keys:
                self._ready[stem].set()
        self._thread = threading.Thread(target=self._run, args=(build,), daemon=True)
        self._thread.start()

    def _unit_done(self, key: str) -> None:
        with self._lock:
            for stem, keys in self._pending.items():
                keys.discard(key)
                if not keys:
                    self._ready[stem].set()

    def _run(self, build) -> None:
        try:
            self.report = build(self._unit_done)
        except BaseException as err:  # handed to the chapters that wait
            self.error = err
        finally:
            self.seconds = time.perf_counter() - self.started
            for event in self._ready.values():
                event.set()
            self._finished.set()

    @property
    def running(self) -> bool:
        return not self._finished.is_set()

    def wait(self, stem: str, whole: bool = False) -> None:
        """Block until chapter ``stem``'s units are built (``whole``: every unit of
        the run); a failure of the fan-out or of one of those units is raised as a
        :class:`~advmanifold.book.toc.BookError`."""
        event = self._finished if whole else self._ready.get(stem, self._finished)
        event.wait()
        if self.error is not None:
            raise self.error
        failed = [
            (u, err)
            for u, err in (self.report.failed if self.report else [])
            if whole or u.chapter == stem
        ]
        if failed:
            raise BookError(
                FanOutReport(failed=failed).describe_failures()
                + f"\n{stem} needs it; the other units are built and cached: fix "
                "the failing ones and run again",
                status=1,
            )

    def counts(
        self,
        parameters: Mapping[str, Mapping[str, Any]],
        profile: str,
        registry: Registry,
    ) -> tuple[float, dict[str, dict[str, int]]]:
        """Wait for the fan-out (:meth:`finish`); the seconds it took and its counts
        per chapter of ``parameters`` (listed, built, found, ...)."""
        report = self.finish()
        print(
            f"units: {len(report.built)} built, {len(report.found)} found, "
            f"{len(report.failed)} failed, {len(report.left)} left "
            f"in {self.seconds:.1f} s",
            flush=True,
        )
        listed = {
            stem: [u.key for u in registry.units(stem, profile, params)]
            for stem, params in parameters.items()
        }
        return float(self.seconds), report.per_chapter(listed)

    def finish(self) -> FanOutReport:
        """Wait for the fan-out to end; its report (failures raised)."""
        self._thread.join()
        if self.error is not None:
            raise self.error
        assert self.report is not None
        if self.report.failed:
            raise BookError(
                self.report.describe_failures() + "\nthe other units are built and "
                "cached; fix the failing ones and run again",
                status=1,
            )
        return self.report

    @contextlib.contextmanager
    def kernel_environment(self) -> Iterator[None]:
        """While the fan-out runs: a kernel started in this block gets one thread."""
        if not self.running:
            yield
            return
        before = {k: os.environ.get(k) for k in ONE_THREAD}
        os.environ.update(ONE_THREAD)
        try:
            yield
        finally:
            for k, v in before.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v


def start_fan_out(
    root: Path,
    parameters: Mapping[str, Mapping[str, Any]],
    args: Any,
    registry: Registry,
) -> FanOutInBackground:
    """Start building the missing units of the chapters of ``parameters`` (stem →
    notebook parameters, in the book's order) on Dask, on a thread, with the
    runner's ``args`` (profile, workers, scheduler, budget_s, threads). The units of
    the first chapters weigh the chapters that wait behind them (their recorded
    seconds, :data:`CHAPTER_S` where none), so that the chapters can start early."""
    from .fanout import build_missing, chapter_tails, plan_units, to_build

    planned = plan_units(parameters, args.profile, registry)
    missing = {u.key for u in to_build(p.unit for p in planned)}
    listed = {
        stem: {u.key for u in registry.units(stem, args.profile, params)}
        for stem, params in parameters.items()
    }
    recorded = read_book_run(args.profile, paths.results_dir(root=root))["chapters_s"]
    chapter_s = {stem: recorded.get(stem, CHAPTER_S) for stem in listed}

    def build(on_done):
        return build_missing(
            [p.unit for p in planned],
            workers=args.workers,
            scheduler=args.scheduler,
            budget_s=args.budget_s,
            threads=args.threads,
            priority=registry.priority,
            on_done=on_done,
            waiting=chapter_tails(listed, chapter_s),
        )

    return FanOutInBackground(
        {stem: keys & missing for stem, keys in listed.items()}, build
    )
