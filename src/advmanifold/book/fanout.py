"""Plan a book run's units and build the missing ones on Dask distributed.

    python -m advmanifold.book --profile paper --plan # what it needs, what it costs
    python -m advmanifold.book --profile paper --workers 4 # LocalCluster of 4 processes
    python -m advmanifold.book --scheduler tcp://host:8786 # any running Dask scheduler

Every unit (:mod:`advmanifold.book.units`) is submitted as one Dask task after the units
it depends on; a worker builds it through the shared content-addressed cache, so the
notebooks executed afterwards find every unit cached. Workers on other machines must
see the same cache folder (``ADVMANIFOLD_CACHE`` on shared storage) and data folder.
Dask provides the scheduling, the retries and the dashboard; nothing here is a job
system. The chapters' units and their order come from a
:class:`~advmanifold.book.units.Registry` that the caller passes (the runner's entry
point takes it from :mod:`advmanifold.chapters`): this module imports no chapter.
"""

from __future__ import annotations

import threading
import time
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping

from ..science.compute import cores
from .units import Registry, Unit, estimate, format_seconds, unique


@dataclass
class PlannedUnit:
    unit: Unit
    cached: bool
    estimate_s: float
    basis: str


def plan_units(
    parameters: Mapping[str, Mapping[str, Any]], profile: str, registry: Registry
) -> list[PlannedUnit]:
    """Every unit of the selected chapters (``{stem: notebook parameters}``), each
    once, as ``registry.units`` lists them."""
    units = unique(
        u
        for stem, params in parameters.items()
        for u in registry.units(stem, profile, params)
    )
    planned = []
    for unit in units:
        seconds, basis = estimate(unit)
        planned.append(PlannedUnit(unit, unit.is_cached(), seconds, basis))
    return planned


def format_plan(
    planned: list[PlannedUnit],
    chapter_times: Mapping[str, float] | None = None,
    workers: int = 1,
) -> str:
    """A per-chapter table: unit, cached or not, estimated cost here; totals at the
    end."""
    lines, chapter_times = [], dict(chapter_times or {})
    by_chapter: dict[str, list[PlannedUnit]] = {}
    for p in planned:
        by_chapter.setdefault(p.unit.chapter, []).append(p)
    for chapter, rows in by_chapter.items():
        todo = sum(p.estimate_s for p in rows if not p.cached)
        lines.append(
            f"{chapter}: {len(rows)} unit(s), "
            f"{sum(not p.cached for p in rows)} to build, "
            f"about {format_seconds(todo)}"
        )
        for p in rows:
            state = (
                "cached"
                if p.cached
                else f"build ~{format_seconds(p.estimate_s)} ({p.basis})"
            )
            lines.append(f"  {p.unit.key:<34} {state}")
    missing = [p for p in planned if not p.cached]
    total = sum(p.estimate_s for p in missing)
    lines.append(
        f"units to build: {len(missing)} of {len(planned)}, "
        f"about {format_seconds(total)} "
        f"of one worker"
        + (
            f", about {format_seconds(total / workers)} on {workers} workers"
            if workers > 1
            else ""
        )
    )
    if chapter_times:
        shown = ", ".join(f"{k} {format_seconds(v)}" for k, v in chapter_times.items())
        lines.append(
            "recorded chapter times of this profile (with cached units or not): "
            f"{shown}"
        )
    return "\n".join(lines)


def build_unit(unit: Unit, *_dependencies_done, threads: int = 1) -> dict[str, Any]:
    """Dask task: build (or find) one unit in the shared cache; returns its timing."""
    from . import cache
    from ..science import compute

    compute.set_threads(max(1, int(threads)))
    before = cache.stats()["misses"]
    start = time.perf_counter()
    unit.get()
    return {
        "key": unit.key,
        "seconds": time.perf_counter() - start,
        "built": cache.stats()["misses"] > before,
    }


@dataclass
class FanOutReport:
    built: list[str] = field(default_factory=list)
    found: list[str] = field(default_factory=list)
    failed: list[tuple[Unit, str]] = field(default_factory=list)
    left: list[str] = field(default_factory=list)  # not built: the budget was spent
    seconds: dict[str, float] = field(default_factory=dict)  # key → build time
    wall_s: float = 0.0
    workers: int = 1
    chain: list[str] = field(default_factory=list)  # the longest chain, as built

    def summary(self) -> str:
        """Measured: unit work, wall time, how busy the workers were, and the
        longest chain of dependent units in measured seconds (the critical path)."""
        work = sum(self.seconds.values())
        busy = work / (self.wall_s * self.workers) if self.wall_s else 0.0
        chain_s = sum(self.seconds.get(k, 0.0) for k in self.chain)  # unbuilt: 0
        return (
            f"measured: {format_seconds(work)} of unit work in "
            f"{format_seconds(self.wall_s)} on {self.workers} worker(s) "
            f"({busy:.0%} busy); the longest chain {format_seconds(chain_s)}: "
            + " → ".join(self.chain)
        )

    def per_chapter(
        self, listed: Mapping[str, Iterable[str]]
    ) -> dict[str, dict[str, int]]:
        """Counts per chapter (``listed``: stem → its units' keys, a unit shared by
        chapters counted in each): ``listed``, ``built`` here, ``found`` in the cache,
        ``failed`` and ``left`` (the budget was spent)."""
        failed = {u.key for u, _ in self.failed}
        counts = {}
        for stem, keys in listed.items():
            keys = set(keys)
            found = dict(
                listed=len(keys),
                built=len(keys & set(self.built)),
                failed=len(keys & failed),
                left=len(keys & set(self.left)),
            )
            found["found"] = found["listed"] - found["built"] - found["failed"]
            found["found"] -= found["left"]
            counts[stem] = found
        return counts

    def describe_failures(self) -> str:
        return "\n".join(
            f"unit failed: {u.describe()} [cache key {u.key}]\n  {err}"
            for u, err in self.failed
        )


class Heartbeat:
    """Prints ``message()`` every ``every`` seconds from a daemon thread until
    stopped."""

    def __init__(self, message, every: float = 30.0):
        self.message, self.every = message, every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            print(self.message(), flush=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def build_order(
    units: Iterable[Unit], priority: Callable[[Unit], Any] | None = None
) -> list[Unit]:
    """Units (dependencies included) in the order to build them: by chapter, then by
    ``priority(unit)`` (smaller first; a registry's ``priority``: the chapter's own
    order), dependencies always before their dependents."""
    listed = unique(units)
    chapters = list(dict.fromkeys(u.chapter for u in listed))

    def rank(unit: Unit):
        return (chapters.index(unit.chapter), priority(unit) if priority else ())

    ranked = sorted(listed, key=rank)  # stable: the chapter's own order otherwise
    return unique(ranked)  # re-inserts any dependency a priority put later


def to_build(units: Iterable[Unit]) -> list[Unit]:
    """The units (dependencies included) that a run must build: those not cached
    that a listed unit needs, where a cached unit needs nothing (its dependencies
    are not built again for it: the ten per-class models of a cached assembly).
    Dependencies first."""
    listed = unique(units)
    dependents: dict[str, list[str]] = {u.key: [] for u in listed}
    for u in listed:
        for d in u.deps:
            dependents[d.key].append(u.key)
    need: set[str] = set()
    for u in reversed(listed):  # every dependent before its dependencies
        wanted = not dependents[u.key] or any(k in need for k in dependents[u.key])
        if wanted and not u.is_cached():
            need.add(u.key)
    return [u for u in listed if u.key in need]


def critical_path(
    units: Iterable[Unit],
    seconds: Callable[[Unit], float],
    waiting: Mapping[str, float] | None = None,
) -> dict[str, float]:
    """Each unit's *bottom level*: ``seconds(u)`` plus the longest chain of work that
    waits for it, b(u) = s(u) + max(max_{v depends on u} b(v), w(u)), where
    ``waiting`` w(u) (default 0) is work outside the units that waits for u: the
    chapters that read it and those executed after them. Building the unit of largest
    b first (longest chain first) keeps the workers busy to the end: a long chain
    starts early and short units fill the gaps. Only the given units count: a
    dependency not among them (already cached) is done and waits for nothing. Keyed
    by unit key."""
    waiting = waiting or {}
    given = list(units)
    keys = {u.key for u in given}
    listed = [u for u in unique(given) if u.key in keys]
    dependents: dict[str, list[str]] = {u.key: [] for u in listed}
    for u in listed:
        for d in u.deps:
            if d.key in keys:
                dependents[d.key].append(u.key)
    level: dict[str, float] = {}
    for u in reversed(listed):  # dependents come after their dependencies
        below = [level[k] for k in dependents[u.key]] + [waiting.get(u.key, 0.0)]
        level[u.key] = float(seconds(u)) + max(below)
    return level


def chapter_tails(
    listed: Mapping[str, Iterable[str]], chapter_s: Mapping[str, float]
) -> dict[str, float]:
    """For :func:`critical_path`: per unit key, the chapter work that waits for it
    when chapters run one after another in the order of ``listed`` (stem → its units'
    keys), each after its units: the seconds ``chapter_s`` of the first chapter that
    lists the unit and of every chapter after it (the largest over the chapters that
    list it)."""
    stems = list(listed)
    tails, after = {}, 0.0
    for stem in reversed(stems):
        after += float(chapter_s.get(stem, 0.0))
        for key in listed[stem]:
            tails[key] = max(tails.get(key, 0.0), after)
    return tails


def format_schedule(
    seconds: Mapping[str, float], level: Mapping[str, float], workers: int
) -> str:
    """One line: the work (unit seconds), its lower bound on ``workers`` workers
    (max of the longest chain and the work / workers) for a run's expectation."""
    work = sum(seconds.values())
    chain = max(level.values(), default=0.0)
    bound = max(chain, work / max(1, workers))
    return (
        f"{format_seconds(work)} of unit work; the longest chain "
        f"{format_seconds(chain)}; on {workers} worker(s) at least "
        f"{format_seconds(bound)}"
    )


def client_for(workers: int | None = None, scheduler: str | None = None):
    """A Dask client: of a running scheduler, or of a new LocalCluster of processes."""
    from dask.distributed import Client, LocalCluster

    if scheduler:
        return Client(scheduler), None
    cluster = LocalCluster(
        n_workers=int(workers),
        threads_per_worker=1,
        processes=True,
        dashboard_address=":0",
    )
    return Client(cluster), cluster


def build_missing(
    units: Iterable[Unit],
    *,
    workers: int | None = None,
    scheduler: str | None = None,
    retries: int = 1,
    heartbeat_s: float = 30.0,
    budget_s: float | None = None,
    threads: int | None = None,
    priority: Callable[[Unit], Any] | None = None,
    on_done: Callable[[str], None] | None = None,
    waiting: Mapping[str, float] | None = None,
) -> FanOutReport:
    """Build every unit not cached yet on Dask, dependencies first. Among the units
    ready to run, a worker takes the one heading the longest chain of estimated work
    (:func:`critical_path`), ties in :func:`build_order` with ``priority``; under a
    budget, the first in that order (the chapters' priorities: what they need most
    is done when the time ends).

    A unit that fails is reported with its chapter, name and configuration; the
    units that do not depend on it are still built and stay cached. With
    ``budget_s``, no result is awaited after that many seconds: the units not done
    are cancelled (a unit cut short leaves nothing in the cache) and listed in
    ``report.left`` for the next run. Each worker of a local cluster runs its units
    with ``threads`` torch threads (default: cores / workers, so that every core is
    busy and none is oversubscribed; OpenMP threads that spin-wait for a busy core
    slow a training many times over); workers of a running scheduler with one
    (default) or ``threads``. ``on_done(key)`` is called as each unit ends (built,
    found or failed), so that a caller can start what needed it; ``waiting``: the
    work outside the units that waits for each (:func:`chapter_tails`), which the
    longest chain includes.
    """
    from dask.distributed import as_completed

    needed = {u.key for u in to_build(units)}
    todo = [u for u in build_order(units, priority) if u.key in needed]
    report = FanOutReport()
    if not todo:
        return report
    client, cluster = client_for(workers, scheduler)
    try:
        n_workers = max(1, len(client.scheduler_info().get("workers", {})))
        if threads is None:
            threads = max(1, cores() // n_workers) if cluster is not None else 1
        link = getattr(client, "dashboard_link", None)
        print(
            f"building {len(todo)} unit(s) on {n_workers} Dask worker(s)"
            + (f"; dashboard: {link}" if link else ""),
            flush=True,
        )
        futures: dict[str, Any] = {}
        missing_keys = {u.key for u in todo}
        seconds = {u.key: estimate(u)[0] for u in todo}
        level = critical_path(todo, lambda u: seconds[u.key], waiting)
        print(
            "expected: " + format_schedule(seconds, level, n_workers), flush=True
        )
        # Without a budget, what counts is when the last unit ends: the longest
        # chain first, submitted first too (a worker starts on the first task it
        # gets). A dependency's level exceeds its dependents', so the stable sort
        # keeps dependencies first. Under a budget, what counts is which units are
        # done when it ends: the chapters' own order.
        rank_of = {u.key: len(todo) - i for i, u in enumerate(todo)}
        if budget_s is None:
            todo.sort(key=lambda u: -level[u.key])
            rank_of = {u.key: level[u.key] + rank_of[u.key] / 1e6 for u in todo}
        for unit in todo:
            deps = [futures[d.key] for d in unit.deps if d.key in missing_keys]
            futures[unit.key] = client.submit(
                build_unit,
                unit,
                *deps,
                threads=threads,
                key=f"unit-{unit.key}",
                retries=retries,
                pure=False,
                priority=rank_of[unit.key],  # the ready task of highest first
            )
        by_future = {f.key: u for u, f in zip(todo, (futures[u.key] for u in todo))}
        start, done = time.perf_counter(), 0

        def status() -> str:
            running = len(todo) - done
            return (
                f"      … {done}/{len(todo)} unit(s) done, "
                f"{running} queued or running, "
                f"{format_seconds(time.perf_counter() - start)} elapsed"
            )

        pending = as_completed(list(futures.values()), timeout=budget_s)
        with Heartbeat(status, heartbeat_s):
            try:
                for future in pending:
                    unit = by_future[future.key]
                    done += 1
                    _report(future, unit, report, done, len(todo))
                    if on_done is not None:
                        on_done(unit.key)
            except TimeoutError:
                left = [f for f in futures.values() if not f.done()]
                client.cancel(left)
                report.left = [by_future[f.key].key for f in left]
                print(
                    f"budget of {format_seconds(budget_s)} spent: "
                    f"{len(report.built)} unit(s) built, {len(left)} left for the "
                    "next run (a unit cut short is not cached)",
                    flush=True,
                )
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
    report.wall_s, report.workers = time.perf_counter() - start, n_workers
    report.chain = longest_chain(todo, report.seconds)
    print(report.summary(), flush=True)
    return report


def longest_chain(units: list[Unit], seconds: Mapping[str, float]) -> list[str]:
    """The keys of the chain of dependent units with the largest sum of ``seconds``
    (units without a time count 0), first to last."""
    level = critical_path(units, lambda u: seconds.get(u.key, 0.0))
    by_key = {u.key: u for u in units}
    dependents: dict[str, list[str]] = {k: [] for k in by_key}
    for u in units:
        for d in u.deps:
            if d.key in by_key:
                dependents[d.key].append(u.key)
    if not level:
        return []
    chain = [max(level, key=lambda k: (level[k], k))]
    while dependents[chain[-1]]:
        chain.append(max(dependents[chain[-1]], key=lambda k: (level[k], k)))
    return chain


def _report(future, unit: Unit, report: FanOutReport, done: int, total: int) -> None:
    """Print and file one finished unit (built, found or failed)."""
    if future.status == "error":
        err = future.exception()
        text = "".join(traceback.format_exception_only(type(err), err)).strip()
        report.failed.append((unit, text))
        print(f"[{done}/{total}] FAILED {unit.describe()}: {text}", flush=True)
        return
    info = future.result()
    report.seconds[unit.key] = info["seconds"]
    (report.built if info["built"] else report.found).append(unit.key)
    print(
        f"[{done}/{total}] {'built' if info['built'] else 'found'} "
        f"{unit.chapter} / {unit.key} in {format_seconds(info['seconds'])}",
        flush=True,
    )
