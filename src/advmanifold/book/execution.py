"""The appendix page *Execution statistics*: how each chapter ran.

Per chapter of the table of contents, for this build (``<results>/<stem>.json``, which
:class:`~advmanifold.book.results.Results` writes, and the runner's log
``book_run_<profile>.json``) and for the committed paper-scale record
(``results/paper/``): when it finished, on which machine, its wall time, its units as
the fan-out left them (built there or found in the cache) and the cache hits and
misses of the notebook itself.

The runner writes the page into the staged site (:data:`PAGE`) just before
``jupyter-book build``; the file of that name in the repository is a placeholder for
builds without the runner.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Iterable

from .profiles import PROFILES
from .results import read_book_run
from .units import format_seconds

#: the page, relative to the book's root (and to the staged site)
PAGE = Path("book") / "generated" / "execution.md"
COLUMNS = (
    "Chapter",
    "Profile",
    "Finished",
    "Machine",
    "Wall time",
    "Units (fan-out)",
    "Cache hits / misses",
)
MISSING = "–"


def _read(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text()) if path.is_file() else None
    except json.JSONDecodeError:
        return None


def _units(counts: dict[str, int] | None) -> str:
    """``"3 built, 2 found"`` (failed and left where any) or :data:`MISSING`."""
    if not counts:
        return MISSING
    words = [f"{counts.get('built', 0)} built", f"{counts.get('found', 0)} found"]
    words += [f"{counts[k]} {k}" for k in ("failed", "left") if counts.get(k)]
    return ", ".join(words)


def chapter_row(stem: str, directory: Path) -> dict[str, str]:
    """One chapter's row from the results folder ``directory``: its results file and
    the runner's log of the profile the chapter ran with."""
    record = _read(directory / f"{stem}.json")
    link = f"{{doc}}`{stem} </notebooks/{stem}>`"
    if record is None:  # a chapter without results of its own: the runner's log
        logs = [read_book_run(p, directory) for p in PROFILES]
        logs = [log for log in logs if stem in log["chapters_s"]]
        if not logs:
            return dict.fromkeys(COLUMNS, MISSING) | {
                "Chapter": link,
                "Profile": "not run",
            }
        log = max(logs, key=lambda log: log.get("finished", ""))
        record = {"profile": log["profile"], "finished": log.get("finished")}
    profile = record.get("profile", MISSING)
    log = read_book_run(profile, directory) if profile in PROFILES else {}
    seconds = (log.get("chapters_s") or {}).get(stem, record.get("wall_time_s"))
    finished = str(record.get("finished") or MISSING)[:16].replace("T", " ")
    hits, misses = record.get("cache_hits"), record.get("cache_misses")
    return {
        "Chapter": link,
        "Profile": profile,
        "Finished": finished,
        "Machine": record.get("machine", MISSING),
        "Wall time": MISSING if seconds is None else format_seconds(float(seconds)),
        "Units (fan-out)": _units((log.get("units") or {}).get(stem)),
        "Cache hits / misses": MISSING if hits is None else f"{hits} / {misses}",
    }


def table(stems: Iterable[str], directory: Path) -> str:
    """A Markdown table, a row per chapter of ``stems`` (:func:`chapter_row`), and
    the chapters' total wall time below it."""
    stems = list(stems)
    rows = [chapter_row(stem, Path(directory)) for stem in stems]
    lines = [
        "| " + " | ".join(COLUMNS) + " |",
        "|" + "|".join("---" for _ in COLUMNS) + "|",
    ]
    for row in rows:
        cells = (str(row[c]).replace("|", "/") for c in COLUMNS)
        lines.append("| " + " | ".join(cells) + " |")
    ran = [r for r in rows if r["Profile"] != "not run"]
    total = sum(_seconds(directory, stem, r["Profile"]) for stem, r in zip(stems, rows))
    lines += [
        "",
        f"{len(ran)} of {len(rows)} chapters ran"
        + (f", in {format_seconds(total)} together." if ran else "."),
    ]
    return "\n".join(lines)


def _seconds(directory: Path, stem: str, profile: str) -> float:
    """The chapter's wall time as the table shows it (0 where it did not run)."""
    if profile not in PROFILES:
        return 0.0
    log = read_book_run(profile, directory)["chapters_s"]
    if stem in log:
        return float(log[stem])
    record = _read(Path(directory) / f"{stem}.json") or {}
    return float(record.get("wall_time_s") or 0.0)


def page(stems: list[str], build: Path, record: Path) -> str:
    """The page: this build's table (results folder ``build``) and the paper record's
    (``record``), each with a row per chapter of ``stems``."""
    return "\n".join(
        [
            "# Execution statistics",
            "",
            f"Generated on {time.strftime('%Y-%m-%d %H:%M')} when this book was "
            "compiled. Per chapter: the profile it ran with, when it finished, on "
            "which machine, its wall time (the notebook's execution as the runner "
            "timed it), the units the runner's fan-out built or found in the cache "
            "before the notebook ran (– where it built none: the notebook then "
            "built them itself), and the notebook's own cache hits and misses, "
            "each miss a unit built.",
            "",
            "## This build",
            "",
            table(stems, build),
            "",
            "## The paper-scale record",
            "",
            "The committed record `results/paper/`: the runs at the `paper` profile "
            "that the claims ledger judges beside this build (`python -m "
            "advmanifold.book --profile paper --record` writes it).",
            "",
            table(stems, record),
            "",
        ]
    )


def write_page(site: Path, stems: list[str], build: Path, record: Path) -> Path:
    """Write :func:`page` to ``site / PAGE``; returns its path."""
    from .cache import atomic_write_text

    path = Path(site) / PAGE
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, page(stems, Path(build), Path(record)))
    return path
