"""The claims ledger's machinery: claims, the rules that judge them from the chapters'
results files, and the ledger's tables. The claims themselves are declared in
:mod:`advmanifold.chapters.claims`; this module knows no chapter.

A claim reads the chapters' results (``<stem>.json``, see
:mod:`advmanifold.book.results`) and returns a :class:`Verdict`. Rules compare effects
with their spread where a chapter trained several seeds (a metric ``m`` then comes with
``m_std`` and the chapter's ``n_seeds``): an effect counts as *reproduced* only when it
exceeds ``SPREAD_FACTOR`` standard errors of the difference, *partly* when it merely
has the claimed sign. Thresholds are the book's choices and are printed with each
verdict. A compound claim (:func:`all_of`, :func:`at_every_size`) holds as far as its
weakest part.

A chapter that ran on a fallback (its results carry the claim's ``fallback`` flag,
e.g. FONTS on fewer legible faces than its profile asks for) measures something else
than the paper: its claims are *not comparable*, whatever the rule says. A ``paper``
run on part of the original grid (the claim's ``grid``) is judged as usual, and each
of its verdicts says which part.

The ledger is judged twice: on this build's results (``_build/results``) and on the
committed paper-scale record (``results/paper/<stem>.json`` at the book's root,
:func:`paper_record`). :func:`ledger_markdown` and :func:`glance_markdown` render it
as MyST list tables, in which any cell text is escaped (a ``|`` in a rule cannot
shift a row).
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Collection, Iterable, Mapping

Results = Mapping[str, Mapping[str, float]]

REPRODUCED, PARTLY, NOT_REPRODUCED = "reproduced", "partly", "not reproduced"
NOT_COMPARABLE, NOT_RUN = "not comparable", "not run"
VERDICTS = (REPRODUCED, PARTLY, NOT_REPRODUCED, NOT_COMPARABLE, NOT_RUN)
#: one number per verdict, for the results file (not run and not comparable < 0)
VERDICT_SCORE = {
    REPRODUCED: 1.0,
    PARTLY: 0.5,
    NOT_REPRODUCED: 0.0,
    NOT_COMPARABLE: -2.0,
    NOT_RUN: -1.0,
}
#: the verdicts a rule gives, weakest first
STRENGTH = (NOT_REPRODUCED, PARTLY, REPRODUCED)
SPREAD_FACTOR = 2.0

#: the committed paper-scale record, relative to the book's root
RECORD_DIR = Path("results") / "paper"


@dataclass(frozen=True)
class Verdict:
    verdict: str
    measured: str
    rule: str
    note: str = ""


Judge = Callable[[Results], Verdict]
#: (results flag, reason formatted with the chapter's record, plain reason)
Fallback = tuple[str, str, str]
#: per dimension of the paper grid: (result key, its full value, what it counts)
Grid = tuple[tuple[str, float, str], ...]


def fallback_reason(record: Mapping, fallback: Fallback | None) -> str:
    """Why a chapter's ``record`` is not comparable with the paper ("" if it is): the
    detailed reason formatted with the record, or the plain one if a key lacks."""
    if not fallback or not record.get(fallback[0]):
        return ""
    _, detailed, plain = fallback
    try:
        return detailed.format(**record)
    except (KeyError, ValueError, TypeError):
        return plain


def reduced_grid(record: Mapping, grid: Grid) -> str:
    """How a ``paper`` run falls short of its ``grid``, e.g. "reduced paper grid:
    largest N 1,000 of 40,000, seeds 2 of 5" ("" if it does not, or for other
    profiles)."""
    if record.get("profile") != "paper":
        return ""
    short = [
        f"{label} {float(record[key]):,.0f} of {full:,}"
        for key, full, label in grid
        if key in record and float(record[key]) < full
    ]
    return "reduced paper grid: " + ", ".join(short) if short else ""


@dataclass(frozen=True)
class Claim:
    key: str
    source: str  # bibtex key of the paper
    chapter: str  # notebook stem holding the evidence
    figure: str  # label of the figure showing it
    text: str
    paper_value: str  # what the paper reports ("" when it gives no number)
    judge: Judge
    fallback: Fallback | None = None  # the chapter's flag of a fallback run
    grid: Grid = ()  # the chapter's full paper grid

    def verdict(self, results: Results) -> Verdict:
        if self.chapter not in results:
            return Verdict(NOT_RUN, "", "", f"no results of {self.chapter}")
        try:
            found = self.judge(results)
        except KeyError as missing:
            return Verdict(NOT_RUN, "", "", f"missing result {missing}")
        record = results[self.chapter]
        reason = fallback_reason(record, self.fallback)
        if reason:
            return Verdict(NOT_COMPARABLE, found.measured, found.rule, reason)
        scope = reduced_grid(record, self.grid)
        note = "; ".join(x for x in (found.note, scope) if x)
        return replace(found, note=note) if scope else found


def value(results: Results, stem: str, key: str) -> float:
    """Metric ``key`` of chapter ``stem`` (a seed mean where it trained several)."""
    return float(results[stem][key])


def se(results: Results, stem: str, key: str) -> float:
    """Standard error of a seed mean, ``key_std``/√n with n = ``key_n`` where the
    chapter counted that value's seeds, else its ``n_seeds`` (0 for a single run)."""
    record = results[stem]
    n = int(record.get(f"{key}_n", record.get("n_seeds", 1)))
    return float(record.get(f"{key}_std", 0.0)) / math.sqrt(n) if n > 1 else 0.0


def _noise(results: Results, stem: str, a: str, b: str) -> float:
    """SPREAD_FACTOR · SE of the difference a − b: 2·√(SE_a² + SE_b²)."""
    return SPREAD_FACTOR * math.hypot(se(results, stem, a), se(results, stem, b))


def greater(
    stem: str, big: str, small: str, *, margin: float = 0.0, what: str = ""
) -> Judge:
    """Claim: ``big`` > ``small``; reproduced if big − small > max(margin, 2·SE),
    partly if > 0."""

    def judge(results: Results) -> Verdict:
        a, b = value(results, stem, big), value(results, stem, small)
        noise = _noise(results, stem, big, small)
        diff = a - b
        verdict = (
            REPRODUCED
            if diff > max(margin, noise)
            else PARTLY
            if diff > 0
            else NOT_REPRODUCED
        )
        return Verdict(
            verdict,
            f"{what}{a:.3f} vs {b:.3f} (difference {diff:+.3f})",
            f"difference > max({margin:g}, {SPREAD_FACTOR:g}·SE = "
            f"{noise:.3f}); partly if > 0",
        )

    return judge


def not_greater(stem: str, a_key: str, b_key: str, what: str = "") -> Judge:
    """Claim: ``a`` does not exceed ``b`` beyond the seed spread, a − b ≤ 2·SE."""

    def judge(results: Results) -> Verdict:
        a, b = value(results, stem, a_key), value(results, stem, b_key)
        noise = _noise(results, stem, a_key, b_key)
        verdict = REPRODUCED if a - b <= noise else NOT_REPRODUCED
        return Verdict(
            verdict,
            f"{what}{a:.3f} vs {b:.3f} (difference {a - b:+.3f})",
            f"difference ≤ {SPREAD_FACTOR:g}·SE = {noise:.3f}",
        )

    return judge


def small_relative(
    stem: str, key: str, reference: str, *, good: float, fair: float
) -> Judge:
    """Claim: ``key`` is near zero, key/reference ≤ good (partly: ≤ fair)."""

    def judge(results: Results) -> Verdict:
        a, ref = value(results, stem, key), value(results, stem, reference)
        ratio = a / ref if ref > 0 else math.inf
        verdict = (
            REPRODUCED if ratio <= good else PARTLY if ratio <= fair else NOT_REPRODUCED
        )
        return Verdict(
            verdict,
            f"{a:.3f} ({ratio:.2f} × reference {ref:.3f})",
            f"ratio ≤ {good:g}; partly if ≤ {fair:g}",
        )

    return judge


def ratio_between(
    stem: str,
    key: str,
    reference: str,
    *,
    good: tuple[float, float],
    fair: tuple[float, float],
) -> Judge:
    """Claim: key/reference lies in the interval ``good`` (partly: in ``fair``), e.g.
    two distributions match."""

    def judge(results: Results) -> Verdict:
        a, ref = value(results, stem, key), value(results, stem, reference)
        ratio = a / ref if ref > 0 else math.inf
        inside = lambda lo_hi: lo_hi[0] <= ratio <= lo_hi[1]  # noqa: E731
        verdict = (
            REPRODUCED if inside(good) else PARTLY if inside(fair) else NOT_REPRODUCED
        )
        return Verdict(
            verdict,
            f"{a:.3f} / {ref:.3f} = {ratio:.2f}",
            f"ratio in [{good[0]:g}, {good[1]:g}]; "
            f"partly in [{fair[0]:g}, {fair[1]:g}]",
        )

    return judge


def at_least(stem: str, key: str, *, good: float, fair: float, unit: str = "") -> Judge:
    """Claim: ``key`` ≥ good (partly: ≥ fair)."""

    def judge(results: Results) -> Verdict:
        a = value(results, stem, key)
        verdict = REPRODUCED if a >= good else PARTLY if a >= fair else NOT_REPRODUCED
        return Verdict(
            verdict, f"{a:.3f}{unit}", f"≥ {good:g}{unit}; partly if ≥ {fair:g}{unit}"
        )

    return judge


def close_to(stem: str, key: str, target: float, *, good: float, fair: float) -> Judge:
    """Claim: |key − target| ≤ good (partly: ≤ fair)."""

    def judge(results: Results) -> Verdict:
        a = value(results, stem, key)
        gap = abs(a - target)
        verdict = (
            REPRODUCED if gap <= good else PARTLY if gap <= fair else NOT_REPRODUCED
        )
        return Verdict(
            verdict,
            f"{a:.3f}",
            f"|value − {target:g}| ≤ {good:g}; partly if ≤ {fair:g}",
        )

    return judge


def correlation(stem: str, key: str, *, positive: bool, good: float) -> Judge:
    """Claim on a correlation ρ = ``key`` with the SE of its per-seed values:
    ``positive``: ρ ≥ good and ρ − 2·SE > 0 (partly: ρ > 0); otherwise no positive
    association, ρ ≤ good (partly: ρ − 2·SE ≤ good)."""

    def judge(results: Results) -> Verdict:
        rho, spread = value(results, stem, key), se(results, stem, key)
        noise = SPREAD_FACTOR * spread
        if positive:
            holds, roughly = rho >= good and rho - noise > 0, rho > 0
            rule = f"ρ ≥ {good:g} and ρ − {SPREAD_FACTOR:g}·SE > 0; partly if ρ > 0"
        else:
            holds, roughly = rho <= good, rho - noise <= good
            rule = f"ρ ≤ {good:g}; partly if ρ − {SPREAD_FACTOR:g}·SE ≤ {good:g}"
        verdict = REPRODUCED if holds else PARTLY if roughly else NOT_REPRODUCED
        return Verdict(verdict, f"ρ = {rho:.2f} (per-seed SE {spread:.2f})", rule)

    return judge


def weakest(parts: Mapping[str, Verdict], what: str = "") -> Verdict:
    """The verdict of a claim whose labelled ``parts`` must all hold: the weakest
    part's (reproduced > partly > not reproduced), with every part's measured value
    (after ``what``) and rule."""

    def joined(field: str) -> str:
        return "; ".join(f"{label}: {getattr(v, field)}" for label, v in parts.items())

    verdict = min((v.verdict for v in parts.values()), key=STRENGTH.index)
    return Verdict(verdict, what + joined("measured"), joined("rule"))


def all_of(**parts: Judge) -> Judge:
    """Claim: every part holds; verdict = min over the parts (:func:`weakest`)."""
    return lambda results: weakest({k: judge(results) for k, judge in parts.items()})


def _keys(templates: Iterable[str], n: int) -> list[str]:
    return [t.format(n=n) for t in templates]


def at_size(stem: str, size: str, rule, *templates: str, **kwargs) -> Judge:
    """Claim: ``rule(stem, *keys, **kwargs)`` holds for the keys ``templates`` with
    ``{n}`` = N, the chapter's result ``size`` (e.g. ``n_small``)."""

    def judge(results: Results) -> Verdict:
        n = int(value(results, stem, size))
        return rule(stem, *_keys(templates, n), **kwargs)(results)

    return judge


def _sizes(record: Mapping, template: str) -> list[int]:
    """The N of the keys ``template`` (with ``{n}`` = N) in ``record``, ascending."""
    before, _, after = template.partition("{n}")
    pattern = re.compile(re.escape(before) + r"(\d+)" + re.escape(after))
    return sorted(int(m[1]) for m in map(pattern.fullmatch, record) if m)


def at_every_size(stem: str, rule, *templates: str, what: str = "", **kwargs) -> Judge:
    """Claim: ``rule(stem, *keys, **kwargs)`` holds at every N, the keys being
    ``templates`` with ``{n}`` = N for each N of the first template's keys; verdict =
    min over N (:func:`weakest`)."""

    def judge(results: Results) -> Verdict:
        found = _sizes(results[stem], templates[0])
        if not found:
            raise KeyError(templates[0])
        parts = {
            f"N={n:,}": rule(stem, *_keys(templates, n), **kwargs)(results)
            for n in found
        }
        return weakest(parts, what)

    return judge


# ------------------------------------------------------------------------ results files


def read_results_folder(
    folder: str | os.PathLike, stems: Iterable[str]
) -> dict[str, dict]:
    """The records ``<folder>/<stem>.json`` that exist (a missing one is left out)."""
    found = {}
    for stem in stems:
        path = Path(folder) / f"{stem}.json"
        if path.is_file():
            try:
                found[stem] = json.loads(path.read_text())
            except json.JSONDecodeError as err:
                raise ValueError(f"{path} is not valid JSON: {err}") from None
    return found


def record_dir(root: str | os.PathLike | None = None) -> Path:
    """``results/paper`` under the book's root ``root`` (default: found from the working
    directory, :func:`advmanifold.book.paths.book_root`): the paper-scale record."""
    from . import paths

    return (Path(root) if root is not None else paths.book_root()) / RECORD_DIR


def paper_record(
    stems: Iterable[str], root: str | os.PathLike | None = None
) -> dict[str, dict]:
    """The paper-scale record of the chapters ``stems``: ``results/paper/<stem>.json``
    under the book's root ``root``; chapters it lacks are left out (their claims are
    then *not run* at paper scale)."""
    return read_results_folder(record_dir(root), stems)


def built_chapters(root: str | os.PathLike | None = None) -> set[str]:
    """The chapters the compiled book will contain: those of ``_toc.yml`` under the
    book's root ``root`` (default: found from the working directory) whose executed
    notebook the runner has left in ``_build/site/notebooks`` (it leaves the others
    out of the build, so links to them would break). Empty outside a book."""
    from . import paths
    from .toc import chapters as toc_chapters

    root = Path(root) if root is not None else paths.book_root()
    site = root / "_build" / "site" / "notebooks"
    if not (root / "_toc.yml").is_file():
        return set()
    return {c.stem for c in toc_chapters(root) if (site / f"{c.stem}.ipynb").is_file()}


def describe_records(records: Mapping[str, Mapping]) -> "pd.DataFrame":  # noqa: F821
    """One row per chapter record: profile, and when it was made, where and how long."""
    import pandas as pd

    shown = (
        "profile",
        "finished",
        "date",
        "machine",
        "cpu_model",
        "device",
        "wall_time_s",
    )
    rows = [
        {"chapter": stem, **{k: record[k] for k in shown if k in record}}
        for stem, record in sorted(records.items())
    ]
    return pd.DataFrame(
        rows, columns=["chapter", *[k for k in shown if any(k in r for r in rows)]]
    )


# ------------------------------------------------------------------------- the ledger


def ledger(results: Results, record: Results | None = None, *, claims: Iterable[Claim]):
    """One row per claim of ``claims``: paper, claim, the paper's value, and the
    measured value, verdict, rule and note judged on ``results``; with a paper-scale
    ``record``, the same judged on it in columns ``record_*``."""
    import pandas as pd

    rows = []
    for claim in claims:
        v = claim.verdict(results)
        row = {
            "key": claim.key,
            "source": claim.source,
            "chapter": claim.chapter,
            "figure": claim.figure,
            "claim": claim.text,
            "paper": claim.paper_value,
            "measured": v.measured,
            "verdict": v.verdict,
            "rule": v.rule,
            "note": v.note,
        }
        if record is not None:
            r = claim.verdict(record)
            row.update(
                {
                    "record_measured": r.measured,
                    "record_verdict": r.verdict,
                    "record_rule": r.rule,
                    "record_note": r.note,
                }
            )
        rows.append(row)
    return pd.DataFrame(rows)


def differing(frame) -> "pd.DataFrame":  # noqa: F821
    """The ledger's rows whose verdict differs between this build and the record,
    among the claims judged at both scales (neither *not run* nor *not comparable*)."""
    unjudged = [NOT_RUN, NOT_COMPARABLE]
    judged = ~frame["verdict"].isin(unjudged) & ~frame["record_verdict"].isin(unjudged)
    return frame[judged & frame["verdict"].ne(frame["record_verdict"])]


# -------------------------------------------------------------------------- rendering

#: ASCII characters that Markdown/MyST may read as markup (``|`` splits pipe tables,
#: ``$`` starts math, braces and backticks make roles); each is backslash-escaped
_MARKUP = re.compile(r"([\\`*_{}\[\]<>()#+\-!|~$&^:=])")

VERDICT_MARKUP = {
    REPRODUCED: "**reproduced**",
    PARTLY: "*partly*",
    NOT_REPRODUCED: "**not reproduced**",
    NOT_COMPARABLE: "*not comparable*",
    NOT_RUN: "not run",
}


def escape(text: object) -> str:
    """``text`` as literal Markdown on one line: markup characters escaped."""
    return _MARKUP.sub(r"\\\1", " ".join(str(text).split()))


def figure_link(
    chapter: str,
    figure: str,
    linked: Collection[str],
    in_book: Collection[str] | None = None,
) -> str:
    """A numbered reference to ``figure`` when its chapter ran (is in ``linked``), else
    a link to the chapter (whose figure does not exist in this build), or only the
    chapter's name when it is not among the book's chapters ``in_book`` (None: all)."""
    if in_book is not None and chapter not in in_book:
        return escape(chapter)
    if chapter in linked:
        return f"{{numref}}`{figure}`"
    return f"{{doc}}`/notebooks/{chapter}`"


def verdict_cell(verdict: str, measured: str, rule: str = "", note: str = "") -> str:
    """'**verdict**: measured (rule: ...; note)' with every measured text escaped."""
    cell = VERDICT_MARKUP.get(verdict, escape(verdict))
    if measured:
        cell += f": {escape(measured)}"
    details = "; ".join(x for x in (f"rule: {rule}" if rule else "", note) if x)
    return f"{cell} ({escape(details)})" if details else cell


def list_table(
    header: list[str],
    rows: list[list[str]],
    *,
    widths: list[int] | None = None,
    name: str = "",
) -> str:
    """A MyST ``list-table`` of Markdown cells (one line each): unlike a pipe table,
    a ``|`` in a cell is plain text, and long cells wrap."""
    if any(len(row) != len(header) for row in rows):
        raise ValueError(f"every row must have {len(header)} cells")
    if any("\n" in cell for row in [header, *rows] for cell in row):
        raise ValueError("list-table cells must be single lines (use escape())")
    lines = ["````{list-table}", ":header-rows: 1"]
    if widths:
        lines.append(":widths: " + " ".join(str(int(w)) for w in widths))
    if name:
        lines.append(f":name: {name}")
    lines.append("")
    for row in [header, *rows]:
        lines += [f"{'*' if i == 0 else ' '} - {cell}" for i, cell in enumerate(row)]
    lines.append("````")
    return "\n".join(lines)


def ledger_markdown(
    frame, linked: Collection[str] = (), in_book: Collection[str] | None = None
) -> str:
    """The ledger as a list table: claim (with its source and figure), the paper's
    value, and the verdict with measured value and rule in this build and, where the
    frame has ``record_*`` columns, in the paper-scale record (:func:`figure_link`)."""
    record = "record_verdict" in frame
    header = ["claim", "paper", "this build"] + ["paper-scale record"] * record
    rows = []
    for row in frame.itertuples():
        claim = (
            f"{escape(row.claim)} ({{cite:t}}`{row.source}`; "
            f"{figure_link(row.chapter, row.figure, linked, in_book)})"
        )
        cells = [
            claim,
            escape(row.paper) or "–",
            verdict_cell(row.verdict, row.measured, row.rule, row.note),
        ]
        if record:
            cells.append(
                verdict_cell(
                    row.record_verdict,
                    row.record_measured,
                    row.record_rule,
                    row.record_note,
                )
            )
        rows.append(cells)
    widths = [34, 12, 27, 27] if record else [40, 15, 45]
    return list_table(header, rows, widths=widths)


def glance_markdown(
    frame, linked: Collection[str] = (), in_book: Collection[str] | None = None
) -> str:
    """The intro's results at a glance: claim, the paper's value, ours (this build),
    the paper-scale record (both with their verdicts and notes, e.g. a reduced grid),
    and the figure."""
    record = "record_verdict" in frame
    header = (
        ["claim", "paper", "this build"] + ["paper-scale record"] * record + ["figure"]
    )
    rows = []
    for row in frame.itertuples():
        cells = [
            escape(row.claim),
            escape(row.paper) or "–",
            verdict_cell(row.verdict, row.measured, note=row.note),
        ]
        if record:
            cells.append(
                verdict_cell(
                    row.record_verdict, row.record_measured, note=row.record_note
                )
            )
        cells.append(figure_link(row.chapter, row.figure, linked, in_book))
        rows.append(cells)
    widths = [36, 10, 22, 22, 10] if record else [45, 12, 30, 13]
    return list_table(header, rows, widths=widths)
