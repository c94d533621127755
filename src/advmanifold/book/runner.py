"""Re-execute the book with papermill, then compile it with Jupyter Book.

    python -m advmanifold.book  # every chapter, profile quick, then build
    python -m advmanifold.book --profile smoke  # the CI profile
    python -m advmanifold.book --only 02_mnist -p epochs=3 -p 02_mnist:seed=1
    python -m advmanifold.book --no-execute  # compile what was executed before
    python -m advmanifold.book --profile paper --plan  # units, cached or not, cost here
    python -m advmanifold.book --profile paper --workers 4  # build units on Dask first
    python -m advmanifold.book --profile paper --only 06_generalization --budget 2h \
        --record  # build what fits in two hours, record it, run the rest next time

Chapters are the notebooks listed in ``_toc.yml``; their source of truth is
``notebooks/<stem>.py`` (jupytext py:percent). Each is converted, executed with
papermill into ``_build/site/notebooks/<stem>.ipynb`` (the committed notebooks stay
output-free), and the site tree (``_config.yml``, ``_toc.yml``, ``book/`` and the
executed notebooks) is compiled with ``jupyter-book build -W -n --keep-going`` into
``_build/html``. Per-chapter times go to ``_build/results/book_run_<profile>.json``
(:func:`advmanifold.book.results.write_book_run`).
While a chapter runs, a heartbeat line every 30 s shows its current cell, the elapsed
time and the latest progress bar printed by the notebook (training, attacks).
A chapter never executed in this tree is compiled as a placeholder page saying so.

The chapters' missing units (see :mod:`advmanifold.book.units`) are built on Dask
distributed (:mod:`advmanifold.book.fanout`): on a local cluster of one process per core
by default (``--workers N`` to choose, ``--workers 1`` to let the notebooks build them)
or on a running scheduler (``--scheduler ADDRESS``), the longest chain of work first.
The chapters run beside the fan-out, in the book's order, each as soon as its own units
are built (:mod:`advmanifold.book.overlap`); the notebooks find them cached. The fan-out
prints the expected work and its lower bound before it starts and the measured critical
path when it ends. With ``--budget`` the fan-out stops when the time is spent, and the
chapters that declare an ``only_cached`` parameter use the units built so far.

The runner asks the chapters (their units, build order and the check of notebook
parameters against their declared settings) through a
:class:`~advmanifold.book.units.Registry` that its entry point,
:mod:`advmanifold.book.__main__`, takes from :mod:`advmanifold.chapters`; the runner
itself imports no chapter.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import yaml

from . import paths
from .cache import atomic_write_text
from .execution import write_page
from .overlap import FanOutInBackground, start_fan_out
from .profiles import PROFILES, SettingError, check_profile
from .results import read_book_run, write_book_run
from .toc import BookError, Chapter, chapters
from .units import Registry


@dataclass
class Plan:
    profile: str
    chapters: list[Chapter]
    parameters: dict[str, dict[str, Any]] = field(default_factory=dict)


def parse_assignment(text: str) -> tuple[str | None, str, Any]:
    """``[stem:]name=value`` → (stem or None, name, YAML-parsed value)."""
    if "=" not in text:
        raise BookError(
            f"parameter {text!r} must look like name=value or stem:name=value"
        )
    target, raw = text.split("=", 1)
    stem, _, name = target.rpartition(":")
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError:
        value = raw
    return (stem or None), name.strip(), value


def plan(
    root: Path,
    profile: str,
    only: list[str] | None,
    assignments: list[str],
    check: Callable[[str, str, dict[str, Any]], None] | None = None,
) -> Plan:
    """Validate everything before any notebook runs: profile, chapter names,
    parameters and, with ``check`` (a registry's), the parameters' values against the
    chapters' declared settings."""
    try:
        check_profile(profile)
    except ValueError:
        raise BookError(
            f"unknown profile {profile!r}; valid profiles: {', '.join(PROFILES)}"
        ) from None
    every = chapters(root)
    by_stem = {c.stem: c for c in every}
    selected = every
    if only:
        names = [Path(o).stem for o in only]
        unknown = [n for n in names if n not in by_stem]
        if unknown:
            raise BookError(
                f"unknown notebook(s) {unknown}; "
                f"valid: {', '.join(by_stem) or '(none)'}"
            )
        selected = [by_stem[n] for n in names]
    result = Plan(profile, selected, {c.stem: {"profile": profile} for c in selected})
    declared = {c.stem: c.parameters() for c in selected}
    for stem, params in declared.items():
        if "profile" not in params:
            raise BookError(f"notebook {stem} has no 'profile' in its parameters cell")
    for text in assignments:
        stem, name, value = parse_assignment(text)
        if stem is not None and stem not in declared:
            raise BookError(
                f"parameter {text!r} names notebook {stem!r}, which is not selected; "
                f"selected: {', '.join(declared)}"
            )
        targets = [stem] if stem else [s for s, p in declared.items() if name in p]
        if name == "profile":
            raise BookError("set the profile with --profile, not as a parameter")
        if not targets or any(name not in declared[t] for t in targets):
            valid = sorted({p for s in (targets or declared) for p in declared[s]})
            raise BookError(
                f"unknown parameter {name!r}; valid parameters: {', '.join(valid)}"
            )
        for t in targets:
            result.parameters[t][name] = value
    for stem, params in result.parameters.items() if check is not None else ():
        try:
            check(stem, profile, params)
        except SettingError as err:
            raise BookError(f"notebook {stem}: parameter {err}") from None
    return result


#: terminal control sequences (cursor moves, colours) that progress bars write
ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")

#: the kernel's own log: errors only (its start-up notice about TCP transport is noise
#: on a local machine; a kernel that dies still fails the chapter)
KERNEL_ARGUMENTS = ["--IPKernelApp.log_level=ERROR"]


def quiet_kernel_manager():
    """A kernel manager that shuts a kernel down by request alone.

    jupyter_client interrupts a kernel (SIGINT) before asking it to shut down, so that
    a busy one stops; after papermill the kernel is idle, and the interrupt can land
    in ipykernel's event loop, which then logs a false ``ERROR | KeyboardInterrupt
    caught in kernel``. A kernel that does not exit is still terminated and killed.
    """
    from jupyter_client.manager import AsyncKernelManager

    class QuietShutdownKernelManager(AsyncKernelManager):
        async def _async_interrupt_kernel(self) -> None:
            if self.shutting_down:
                return
            await super()._async_interrupt_kernel()

    return QuietShutdownKernelManager


class ChapterProgress:
    """What a running chapter is doing: its current cell and its latest progress line.

    Papermill writes the kernel's stderr (where tqdm draws) to :meth:`write`; the
    engine below reports each cell as it starts.
    """

    def __init__(self, stem: str):
        self.stem, self.cell, self.n_cells, self.source = stem, 0, 0, ""
        self.latest, self.started = "", time.perf_counter()

    def write(self, text: str) -> None:
        for line in text.replace("\r", "\n").split("\n"):
            line = ANSI_ESCAPE.sub("", line).strip()  # nested bars move the cursor
            if line:
                self.latest = line

    def flush(self) -> None:
        pass

    def line(self) -> str:
        elapsed = time.perf_counter() - self.started
        first = (
            self.source.strip().splitlines()[0][:60]
            if self.source.strip()
            else "markdown"
        )
        where = (
            f"cell {self.cell}/{self.n_cells} ({first})" if self.n_cells else "starting"
        )
        shown = f"      … {self.stem}: {where}, "
        shown += f"{elapsed // 60:.0f}:{elapsed % 60:02.0f} elapsed"
        return shown + (f" | {self.latest[:110]}" if self.latest else "")


def _tracking_engine(progress_of):
    """A papermill engine that tells ``progress_of()`` which cell starts."""
    from papermill.engines import NBClientEngine

    class TrackingEngine(NBClientEngine):
        @classmethod
        def execute_managed_notebook(cls, nb_man, kernel_name, **kwargs):
            cell_start = nb_man.cell_start

            def tracked(cell, cell_index=None, **kw):
                progress = progress_of()
                progress.cell, progress.n_cells = (
                    (cell_index or 0) + 1,
                    len(nb_man.nb.cells),
                )
                progress.source = cell.source if cell.cell_type == "code" else ""
                return cell_start(cell, cell_index, **kw)

            nb_man.cell_start = tracked
            return super().execute_managed_notebook(nb_man, kernel_name, **kwargs)

    return TrackingEngine


def execute(
    root: Path,
    the_plan: Plan,
    site: Path,
    heartbeat_s: float = 30.0,
    background: FanOutInBackground | None = None,
    runs_alone: Callable[[str], bool] = lambda stem: False,
) -> dict[str, float]:
    """Run each chapter with papermill; stop at the first failure, naming notebook and
    cell. With a fan-out in the ``background``, each chapter first waits for its own
    units (a chapter that ``runs_alone`` for all of them)."""
    import jupytext
    import papermill
    from papermill.engines import papermill_engines
    from papermill.exceptions import PapermillExecutionError

    from .fanout import Heartbeat

    current: list[ChapterProgress] = []
    papermill_engines.register(
        "advmanifold-tracking", _tracking_engine(lambda: current[-1])
    )

    os.environ.setdefault("ADVMANIFOLD_RESULTS", str(paths.results_dir(root=root)))
    os.environ.setdefault("ADVMANIFOLD_FIGURES", str(root / "_build" / "figures"))
    out_dir = site / "notebooks"
    out_dir.mkdir(parents=True, exist_ok=True)
    times: dict[str, float] = {}
    total = len(the_plan.chapters)
    for i, chapter in enumerate(the_plan.chapters, 1):
        params = the_plan.parameters[chapter.stem]
        shown = ", ".join(f"{k}={v!r}" for k, v in params.items())
        print(
            f"[{i}/{total}] {chapter.source.relative_to(root)} ({shown}) ...",
            flush=True,
        )
        threads = contextlib.nullcontext()
        if background is not None:
            background.wait(chapter.stem, whole=runs_alone(chapter.stem))
            threads = background.kernel_environment()
        source = out_dir / f".{chapter.stem}.source.ipynb"
        target = out_dir / f"{chapter.stem}.ipynb"
        jupytext.write(chapter.notebook(), source)
        start = time.perf_counter()
        current.append(ChapterProgress(chapter.stem))
        try:
            with threads, Heartbeat(lambda: current[-1].line(), heartbeat_s):
                papermill.execute_notebook(
                    str(source),
                    str(target),
                    parameters=params,
                    cwd=str(chapter.source.parent),
                    kernel_name="python3",
                    engine_name="advmanifold-tracking",
                    progress_bar=False,
                    log_output=False,
                    stderr_file=current[-1],
                    extra_arguments=KERNEL_ARGUMENTS,
                    kernel_manager_class=quiet_kernel_manager(),
                )
        except PapermillExecutionError as err:
            raise BookError(
                f"{chapter.source.relative_to(root)} failed in cell {err.cell_index} "
                f"(execution count {err.exec_count}): {err.ename}: {err.evalue}\n"
                f"executed notebook with the traceback: {target}",
                status=1,
            ) from None
        finally:
            source.unlink(missing_ok=True)
        times[chapter.stem] = round(time.perf_counter() - start, 1)
        print(f"      done in {times[chapter.stem]:.1f} s", flush=True)
    return times


def record_times(
    root: Path,
    profile: str,
    times: dict[str, float],
    units_s: float | None = None,
    units: dict[str, dict[str, int]] | None = None,
    wall_s: float | None = None,
) -> Path:
    """Merge this run's chapter times into the runner's log
    (:func:`~advmanifold.book.results.write_book_run`); ``units_s``: the time the
    fan-out took to build units (the chapters run beside it), ``units`` its counts
    per chapter (:meth:`~advmanifold.book.fanout.FanOutReport.per_chapter`),
    ``wall_s`` the time from the fan-out's start to the last chapter's end."""
    return write_book_run(
        profile,
        times,
        units_s=units_s,
        units=units,
        wall_s=wall_s,
        directory=paths.results_dir(root=root),
    )


def record(root: Path, profile: str, stems: list[str]) -> Path:
    """Copy the chapters' results (``<stem>.json`` and ``<stem>__*.csv``) into the
    committed record ``results/<profile>/``, which outlives this machine."""
    source = paths.results_dir(root=root)
    target = root / "results" / profile
    target.mkdir(parents=True, exist_ok=True)
    for stem in stems:
        for path in [source / f"{stem}.json", *sorted(source.glob(f"{stem}__*.csv"))]:
            if path.is_file():
                atomic_write_text(target / path.name, path.read_text())
    # the chapters' times (and fan-out counts) of this tree's runs of the profile
    log = read_book_run(profile, source)
    done, counts = log["chapters_s"], log.get("units", {})
    write_book_run(
        profile,
        {s: done[s] for s in stems if s in done},
        units={s: counts[s] for s in stems if s in counts},
        directory=target,
    )
    print(f"recorded {', '.join(stems)} in {target}", flush=True)
    return target


def stub_page(chapter: Chapter) -> str:
    """A page standing in for a chapter never executed in this tree: its title and how
    to run it (a page without its glued numbers and figures would not compile)."""
    title = next(
        (
            line.lstrip("# ").strip()
            for line in chapter.source.read_text().splitlines()
            if line.startswith("# # ")
        ),
        chapter.stem,
    )
    return (
        f"# {title}\n\n:::{{note}}\nThis chapter was not executed in this build. "
        f"Run it with\n`python -m advmanifold.book --only {chapter.stem}`.\n:::\n"
    )


def stage(root: Path, site: Path, every: list[Chapter]) -> list[str]:
    """Copy the book's sources next to the executed notebooks and write the execution
    statistics (:mod:`advmanifold.book.execution`). A chapter never executed in this
    tree is staged as a short page saying so (links to it still resolve); their stems
    are returned."""
    site.mkdir(parents=True, exist_ok=True)
    for name in ("_config.yml", "_toc.yml"):
        shutil.copy2(root / name, site / name)
    for folder in ("book", "_static"):  # _static: the book's CSS (Jupyter Book adds it)
        shutil.rmtree(site / folder, ignore_errors=True)
        if (root / folder).is_dir():
            shutil.copytree(root / folder, site / folder)
    left_out = []
    for chapter in every:
        stub = site / "notebooks" / f"{chapter.stem}.md"
        if (site / "notebooks" / f"{chapter.stem}.ipynb").is_file():
            stub.unlink(missing_ok=True)
        else:
            left_out.append(chapter.stem)
            stub.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(stub, stub_page(chapter))
    if left_out:
        print(
            f"note: never executed here, so only a placeholder page in this build: "
            f"{', '.join(left_out)} (run them with --only {' '.join(left_out)})",
            flush=True,
        )
    figures = root / "_build" / "figures"
    if figures.is_dir():
        shutil.copytree(figures, site / "book" / "generated", dirs_exist_ok=True)
    # the appendix's execution statistics: this build's results and the paper record
    write_page(
        site,
        [c.stem for c in every],
        paths.results_dir(root=root),
        root / "results" / "paper",
    )
    return left_out


def build(root: Path, site: Path) -> None:
    beside = Path(sys.executable).parent / "jupyter-book"  # the same environment's CLI
    command = [
        str(beside) if beside.is_file() else "jupyter-book",
        "build",
        str(site),
        "--path-output",
        str(root),
        "-W",
        "-n",
        "--keep-going",
    ]
    print("$ " + " ".join(command), flush=True)
    start = time.perf_counter()
    status = subprocess.call(command)
    if status:
        raise BookError(
            f"jupyter-book build failed (exit {status}); see the warnings above",
            status=1,
        )
    print(
        f"book built in {time.perf_counter() - start:.1f} s: "
        f"{root / '_build' / 'html' / 'index.html'}"
    )


def parse_duration(text: str) -> float:
    """Seconds in ``"90s"``, ``"45m"``, ``"2h"`` or ``"1.5h"`` (a bare number: s)."""
    units = {"s": 1.0, "m": 60.0, "h": 3600.0}
    raw = text.strip().lower()
    scale = units.get(raw[-1:], None)
    number = raw[:-1] if scale else raw
    try:
        seconds = float(number) * (scale or 1.0)
    except ValueError:
        seconds = -1.0
    if not seconds > 0:
        raise BookError(
            f"--budget must be a positive duration such as 90m, 2h or 3600s, "
            f"got {text!r}"
        )
    return seconds


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``python -m advmanifold.book``."""
    parser = argparse.ArgumentParser(
        prog="python -m advmanifold.book",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_run_arguments(parser)
    add_fan_out_arguments(parser)
    return parser


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """What to run and how: profile, chapters, parameters, steps, record, plan."""
    parser.add_argument(
        "--profile",
        default="quick",
        help=f"one of {', '.join(PROFILES)} (default: quick)",
    )
    parser.add_argument(
        "--only",
        nargs="+",
        metavar="NOTEBOOK",
        help="execute only these chapters (stems)",
    )
    parser.add_argument(
        "-p",
        "--set",
        dest="assignments",
        action="append",
        default=[],
        metavar="[STEM:]NAME=VALUE",
        help=(
            "override a notebook parameter (all selected notebooks that declare it, "
            "or one)"
        ),
    )
    parser.add_argument(
        "--no-execute", action="store_true", help="compile without executing"
    )
    parser.add_argument(
        "--no-build", action="store_true", help="execute without compiling"
    )
    parser.add_argument(
        "--root",
        type=Path,
        default=None,
        help="the book's folder (default: found from cwd)",
    )
    parser.add_argument(
        "--record",
        action="store_true",
        help="copy the executed chapters' results into results/<profile>/ "
        "(the committed record of a profile's run)",
    )
    parser.add_argument(
        "--plan",
        action="store_true",
        help="list every unit of the selected chapters, cached or not, with its "
        "estimated cost here, and stop",
    )


def add_fan_out_arguments(parser: argparse.ArgumentParser) -> None:
    """Where and how long missing units are built first (Dask)."""
    parser.add_argument(
        "--workers",
        type=int,
        default=None,
        metavar="N",
        help="build missing units on a Dask LocalCluster of N processes first, each "
        "with cores/N torch threads (default: one per core; 1: the notebooks build "
        "them, with every core)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        metavar="T",
        help="torch threads of each Dask worker (default: cores / workers)",
    )
    parser.add_argument(
        "--budget",
        metavar="DURATION",
        help="stop building units after this long (e.g. 2h); chapters with an "
        "only_cached parameter then use what was built",
    )
    parser.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        help="build missing units on a running Dask scheduler first (its workers "
        "must share the cache folder)",
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse and check the command line; ``args.workers`` defaults to the cores and
    ``args.budget_s`` holds ``--budget`` in seconds (or None)."""
    args = build_parser().parse_args(argv)
    from ..science.compute import cores

    if args.workers is None:
        args.workers = cores()
    if args.workers < 1:
        raise BookError(f"--workers must be an integer >= 1, got {args.workers}")
    if args.threads is not None and args.threads < 1:
        raise BookError(f"--threads must be an integer >= 1, got {args.threads}")
    args.budget_s = parse_duration(args.budget) if args.budget else None
    return args


def plan_run(root: Path, args: argparse.Namespace, registry: Registry) -> Plan:
    """The validated plan; under a budget, chapters declaring ``only_cached`` use
    the units built so far."""
    the_plan = plan(root, args.profile, args.only, args.assignments, registry.check)
    if args.budget_s is not None:
        declared = {c.stem: c.parameters() for c in the_plan.chapters}
        for stem, params in declared.items():
            if "only_cached" in params:
                the_plan.parameters[stem]["only_cached"] = True
    return the_plan


def show_plan(
    root: Path, the_plan: Plan, profile: str, workers: int, registry: Registry
) -> None:
    """Print every unit of the planned chapters, cached or not, with its cost."""
    from .fanout import format_plan, plan_units

    times = read_book_run(profile, paths.results_dir(root=root))["chapters_s"]
    planned = plan_units(the_plan.parameters, profile, registry)
    print(f"profile {profile}: {len(the_plan.chapters)} chapter(s)")
    print(
        format_plan(
            planned,
            {c.stem: times[c.stem] for c in the_plan.chapters if c.stem in times},
            workers=workers,
        )
    )


def execute_and_record(
    root: Path,
    the_plan: Plan,
    site: Path,
    args: argparse.Namespace,
    registry: Registry,
    background: FanOutInBackground | None = None,
) -> None:
    """Execute the chapters (beside the fan-out in the ``background``, if any), log
    their times, the fan-out's time and counts and the wall time of both, and, with
    ``--record``, copy their results into the committed record."""
    start = time.perf_counter()
    times = execute(
        root, the_plan, site, background=background, runs_alone=registry.runs_alone
    )
    units_s, units = None, None
    if background is not None:
        units_s, units = background.counts(the_plan.parameters, args.profile, registry)
    wall_s = time.perf_counter() - (background.started if background else start)
    log = record_times(root, args.profile, times, units_s, units, wall_s)
    print(
        f"executed {len(times)} chapter(s) in "
        f"{time.perf_counter() - start:.1f} s; units and chapters took "
        f"{wall_s:.1f} s in all (times: {log})",
        flush=True,
    )
    if args.record:
        record(root, args.profile, list(times))


def main(registry: Registry, argv: list[str] | None = None) -> int:
    """``python -m advmanifold.book``: plan, build units, execute, record, build; the
    chapters are asked through ``registry`` (:mod:`advmanifold.book.__main__` passes
    :func:`advmanifold.chapters.registry`)."""
    args = parse_args(argv)
    from .paths import book_root

    root = (args.root or book_root()).resolve()
    the_plan = plan_run(root, args, registry)
    site = root / "_build" / "site"
    if args.plan:
        show_plan(root, the_plan, args.profile, args.workers, registry)
        return 0
    fan_out = args.workers > 1 or args.scheduler or args.budget_s is not None
    if not args.no_execute:
        background = None
        if fan_out:
            background = start_fan_out(root, the_plan.parameters, args, registry)
        execute_and_record(root, the_plan, site, args, registry, background)
    if not args.no_build:
        stage(root, site, chapters(root))
        build(root, site)
    return 0
