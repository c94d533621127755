"""The claims of both papers, each with the rule that judges it from the results files.

A claim reads the chapters' results (``<stem>.json``, see :mod:`advmanifold.results`)
and returns a :class:`Verdict`. Rules compare effects with their spread where a
chapter trained several seeds (a metric ``m`` then comes with ``m_std`` and the
chapter's ``n_seeds``): an effect counts as *reproduced* only when it exceeds
``SPREAD_FACTOR`` standard errors of the difference, *partly* when it merely has the
claimed sign. Thresholds are this book's choices and are printed with each verdict.

A chapter that ran on a fallback (its results carry a flag of :data:`FALLBACKS`, e.g.
FONTS on fewer legible faces than its profile asks for) measures something else than
the paper: its claims are *not comparable*, whatever the rule says. A ``paper`` run on
part of the original grid (:data:`GRIDS`) is judged as usual, and each of its verdicts
says which part.

The ledger is judged twice: on this build's results (``_build/results``) and on the
committed paper-scale record (``results/paper/<stem>.json`` at the book's root,
:func:`paper_record`). :func:`ledger_markdown` and :func:`glance_markdown` render it
as MyST list tables, in which any cell text is escaped (a ``|`` in a rule cannot
shift a row).
"""

from __future__ import annotations

import importlib
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
SPREAD_FACTOR = 2.0
MODELS = ("baseline", "robust", "manifold", "manifold_robust")

#: chapter → (results flag, why its verdicts are then not comparable). The reason is
#: formatted with the chapter's record; a key it lacks gives the plain reason.
FALLBACKS: dict[str, tuple[str, str, str]] = {
    "01_fonts": (
        "fonts_fallback",
        "FONTS ran on fallback fonts: {n_fonts:.0f} legible faces, fewer than its "
        "profile asks for",
        "FONTS ran on fallback fonts, fewer legible faces than its profile asks for",
    ),
}

#: Chapters whose ``paper`` runs may cover part of the original grid, with the result
#: keys that say how much: (key, setting of the ``paper`` profile it is measured
#: against, what it counts). The setting is ``(module, name)``; a sequence means its
#: largest element.
GRIDS: dict[str, tuple[tuple[str, tuple[str, str], str], ...]] = {
    "06_generalization": (
        ("n_large", ("generalization", "sizes"), "largest N"),
        ("n_seeds", ("generalization", "n_seeds"), "seeds"),
    ),
}

#: modules defining further claims (a tuple ``CLAIMS``), imported by :func:`all_claims`
EXTRA_CLAIM_MODULES: tuple[str, ...] = ("advmanifold.generalization",)

#: the committed paper-scale record, relative to the book's root
RECORD_DIR = Path("results") / "paper"


@dataclass(frozen=True)
class Verdict:
    verdict: str
    measured: str
    rule: str
    note: str = ""


def fallback_reason(results: Results, stem: str) -> str:
    """Why chapter ``stem``'s results are not comparable with the paper ("" if so)."""
    record = results.get(stem)
    if stem not in FALLBACKS or not record:
        return ""
    flag, detailed, plain = FALLBACKS[stem]
    if not record.get(flag):
        return ""
    try:
        return detailed.format(**record)
    except (KeyError, ValueError, TypeError):
        return plain


def reduced_grid(results: Results, stem: str) -> str:
    """How a ``paper`` run of chapter ``stem`` falls short of the original grid, e.g.
    "reduced paper grid: largest N 1,000 of 40,000, seeds 2 of 5" ("" if it does not,
    or for other profiles)."""
    record = results.get(stem)
    if stem not in GRIDS or not record or record.get("profile") != "paper":
        return ""
    short = []
    for key, (module, name), label in GRIDS[stem]:
        full = importlib.import_module(f"advmanifold.{module}").SETTINGS["paper"][name]
        full = max(full) if isinstance(full, (tuple, list)) else full
        if key in record and float(record[key]) < full:
            short.append(f"{label} {float(record[key]):,.0f} of {full:,}")
    return "reduced paper grid: " + ", ".join(short) if short else ""


@dataclass(frozen=True)
class Claim:
    key: str
    source: str  # bibtex key of the paper
    chapter: str  # notebook stem holding the evidence
    figure: str  # label of the figure showing it
    text: str
    paper_value: str  # what the paper reports ("" when it gives no number)
    judge: Callable[[Results], Verdict]

    def verdict(self, results: Results) -> Verdict:
        if self.chapter not in results:
            return Verdict(NOT_RUN, "", "", f"no results of {self.chapter}")
        try:
            found = self.judge(results)
        except KeyError as missing:
            return Verdict(NOT_RUN, "", "", f"missing result {missing}")
        reason = fallback_reason(results, self.chapter)
        if reason:
            return Verdict(NOT_COMPARABLE, found.measured, found.rule, reason)
        scope = reduced_grid(results, self.chapter)
        note = "; ".join(x for x in (found.note, scope) if x)
        return replace(found, note=note) if scope else found


def _value(results: Results, stem: str, key: str) -> float:
    return float(results[stem][key])


def _se(results: Results, stem: str, key: str) -> float:
    """Standard error of a seed-averaged metric (0 for a single run)."""
    record = results[stem]
    n = int(record.get("n_seeds", 1))
    return float(record.get(f"{key}_std", 0.0)) / math.sqrt(n) if n > 1 else 0.0


def _noise(results: Results, stem: str, a: str, b: str) -> float:
    return SPREAD_FACTOR * math.hypot(_se(results, stem, a), _se(results, stem, b))


def greater(
    stem: str, big: str, small: str, *, margin: float = 0.0, what: str = ""
) -> Callable[[Results], Verdict]:
    """Claim: metric ``big`` exceeds ``small`` (by > ``margin`` for *reproduced*)."""

    def judge(results: Results) -> Verdict:
        a, b = _value(results, stem, big), _value(results, stem, small)
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


def not_greater(
    stem: str, a_key: str, b_key: str, what: str = ""
) -> Callable[[Results], Verdict]:
    """Claim: ``a`` does not exceed ``b`` beyond the seed spread."""

    def judge(results: Results) -> Verdict:
        a, b = _value(results, stem, a_key), _value(results, stem, b_key)
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
) -> Callable[[Results], Verdict]:
    """Claim: ``key`` is near zero, i.e. small relative to ``reference``."""

    def judge(results: Results) -> Verdict:
        a, ref = _value(results, stem, key), _value(results, stem, reference)
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
) -> Callable[[Results], Verdict]:
    """Claim: ``key`` / ``reference`` lies in an interval (e.g. distributions match)."""

    def judge(results: Results) -> Verdict:
        a, ref = _value(results, stem, key), _value(results, stem, reference)
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


def at_least(
    stem: str, key: str, *, good: float, fair: float, unit: str = ""
) -> Callable[[Results], Verdict]:
    def judge(results: Results) -> Verdict:
        a = _value(results, stem, key)
        verdict = REPRODUCED if a >= good else PARTLY if a >= fair else NOT_REPRODUCED
        return Verdict(
            verdict, f"{a:.3f}{unit}", f"≥ {good:g}{unit}; partly if ≥ {fair:g}{unit}"
        )

    return judge


def close_to(
    stem: str, key: str, target: float, *, good: float, fair: float
) -> Callable[[Results], Verdict]:
    def judge(results: Results) -> Verdict:
        a = _value(results, stem, key)
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


F, M, P = "01_fonts", "02_mnist", "03_pmnist"
STUTZ, GEYER = "stutz2019disentangling", "geyer2023relationship"

CLAIMS: tuple[Claim, ...] = (
    Claim(
        "fonts-test-on-manifold",
        STUTZ,
        F,
        "fig-fonts-distances",
        "FONTS test examples lie on the manifold (distance ≈ 0)",
        "0 (by construction)",
        small_relative(
            F, "distance_test_median", "distance_regular_median", good=0.1, fair=0.3
        ),
    ),
    Claim(
        "fonts-onmanifold-adv",
        STUTZ,
        F,
        "fig-fonts-distances",
        "FONTS on-manifold adversarial examples have distance ≈ 0",
        "0 (by construction)",
        small_relative(
            F,
            "distance_onmanifold_median",
            "distance_regular_median",
            good=0.1,
            fair=0.3,
        ),
    ),
    Claim(
        "fonts-regular-off",
        STUTZ,
        F,
        "fig-fonts-distances",
        "FONTS regular adversarial examples lie clearly off the manifold",
        "clearly > 0",
        greater(
            F,
            "distance_regular_median",
            "distance_test_median",
            margin=0.5,
            what="median distance ",
        ),
    ),
    Claim(
        "fonts-orthogonal",
        STUTZ,
        F,
        "fig-fonts-distances",
        "On FONTS the distance nearly equals ‖δ‖₂: δ leaves the manifold orthogonally",
        "≈ 1",
        at_least(F, "regular_distance_over_l2_median", good=0.9, fair=0.7),
    ),
    Claim(
        "mnist-onmanifold-matches-test",
        STUTZ,
        M,
        "fig-mnist-distances",
        "On MNIST on-manifold adversarial examples are as far from the k-NN manifold "
        "as test examples",
        "distributions nearly match",
        ratio_between(
            M,
            "knn_distance_onmanifold_median",
            "knn_distance_test_median",
            good=(0.67, 1.5),
            fair=(0.5, 2.0),
        ),
    ),
    Claim(
        "mnist-regular-off",
        STUTZ,
        M,
        "fig-mnist-distances",
        "On MNIST regular adversarial examples are clearly farther from the manifold "
        "than test examples",
        "clearly larger",
        greater(
            M,
            "knn_distance_regular_median",
            "knn_distance_test_median",
            margin=0.5,
            what="median distance ",
        ),
    ),
    Claim(
        "mnist-orthogonal",
        STUTZ,
        M,
        "fig-mnist-distances",
        "On MNIST regular perturbations are nearly orthogonal to the manifold",
        "≈ 90°",
        at_least(M, "regular_angle_deg_median", good=75.0, fair=60.0, unit="°"),
    ),
    Claim(
        "pmnist-baseline-accuracy",
        GEYER,
        P,
        "fig-pmnist-images",
        "A baseline MLP reaches about 92% test accuracy on PMNIST",
        "92%",
        close_to(P, "accuracy_baseline", 0.92, good=0.02, fair=0.05),
    ),
    Claim(
        "robust-aligned",
        GEYER,
        P,
        "fig-pmnist-alignment",
        "Adversarial training aligns gradients with the manifold (Robust > Baseline)",
        "Fig. 1",
        greater(
            P,
            "alignment_cosine_median_robust",
            "alignment_cosine_median_baseline",
            what="cosine ",
        ),
    ),
    Claim(
        "manifold-aligned",
        GEYER,
        P,
        "fig-pmnist-alignment",
        "The alignment loss aligns gradients (Manifold > Baseline)",
        "Fig. 1",
        greater(
            P,
            "alignment_cosine_median_manifold",
            "alignment_cosine_median_baseline",
            what="cosine ",
        ),
    ),
    Claim(
        "robust-less-than-manifold",
        GEYER,
        P,
        "fig-pmnist-alignment",
        "Robust is slightly less aligned than Manifold",
        "Fig. 1",
        greater(
            P,
            "alignment_cosine_median_manifold",
            "alignment_cosine_median_robust",
            what="cosine ",
        ),
    ),
    Claim(
        "manifold-fgsm",
        GEYER,
        P,
        "fig-pmnist-robustness",
        "Manifold is slightly more robust than Baseline under FGSM (ε = 0.1)",
        "Fig. 3",
        greater(
            P,
            "fgsm_accuracy_manifold_eps0.1",
            "fgsm_accuracy_baseline_eps0.1",
            what="accuracy ",
        ),
    ),
    Claim(
        "manifold-pgd",
        GEYER,
        P,
        "fig-pmnist-robustness",
        "Manifold is slightly more robust than Baseline under PGD (ε = 0.1)",
        "Fig. 3",
        greater(
            P,
            "pgd_accuracy_manifold_eps0.1",
            "pgd_accuracy_baseline_eps0.1",
            what="accuracy ",
        ),
    ),
    Claim(
        "robust-much-more",
        GEYER,
        P,
        "fig-pmnist-robustness",
        "Robust is much more robust than Baseline under PGD (ε = 0.1)",
        "Fig. 3",
        greater(
            P,
            "pgd_accuracy_robust_eps0.1",
            "pgd_accuracy_baseline_eps0.1",
            margin=0.2,
            what="accuracy ",
        ),
    ),
    Claim(
        "manifold-robust-fgsm",
        GEYER,
        P,
        "fig-pmnist-robustness",
        "Manifold Robust beats Robust under FGSM (ε = 0.1)",
        "Fig. 3",
        greater(
            P,
            "fgsm_accuracy_manifold_robust_eps0.1",
            "fgsm_accuracy_robust_eps0.1",
            what="accuracy ",
        ),
    ),
    Claim(
        "manifold-robust-not-pgd",
        GEYER,
        P,
        "fig-pmnist-robustness",
        "… but not under PGD (ε = 0.1)",
        "Fig. 3",
        not_greater(
            P,
            "pgd_accuracy_manifold_robust_eps0.1",
            "pgd_accuracy_robust_eps0.1",
            what="accuracy ",
        ),
    ),
    Claim(
        "alignment-orthogonal-boundaries",
        GEYER,
        P,
        "fig-pmnist-crossing",
        "Alignment makes data more orthogonal to decision boundaries "
        "(crossing angle Manifold > Baseline)",
        "Fig. 2",
        greater(
            P,
            "crossing_angle_deg_median_manifold",
            "crossing_angle_deg_median_baseline",
            what="angle ",
        ),
    ),
)


def all_claims(modules: Iterable[str] | None = None) -> tuple[Claim, ...]:
    """:data:`CLAIMS` and the ``CLAIMS`` of each module in ``modules`` (default
    :data:`EXTRA_CLAIM_MODULES`), imported now so that no import cycle arises; a module
    that does not exist (yet) is skipped. Keys must be unique."""
    found = list(CLAIMS)
    for name in EXTRA_CLAIM_MODULES if modules is None else modules:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as err:
            if err.name != name:  # the module exists but an import inside it fails
                raise
            continue
        extra = tuple(getattr(module, "CLAIMS", ()))
        wrong = [c for c in extra if not isinstance(c, Claim)]
        if wrong:
            raise TypeError(
                f"{name}.CLAIMS must hold claims.Claim objects, got {wrong[0]!r}"
            )
        found.extend(extra)
    keys = [c.key for c in found]
    twice = sorted({k for k in keys if keys.count(k) > 1})
    if twice:
        raise ValueError(f"claim keys must be unique; repeated: {', '.join(twice)}")
    return tuple(found)


def chapters(claims: Iterable[Claim] | None = None) -> list[str]:
    """The chapters holding the evidence of ``claims`` (default :func:`all_claims`)."""
    return sorted({c.chapter for c in (all_claims() if claims is None else claims)})


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
    directory, :func:`advmanifold.paths.book_root`): the paper-scale record."""
    from . import paths

    return (Path(root) if root is not None else paths.book_root()) / RECORD_DIR


def paper_record(
    root: str | os.PathLike | None = None, stems: Iterable[str] | None = None
) -> dict[str, dict]:
    """The paper-scale record of the chapters ``stems`` (default :func:`chapters`):
    ``results/paper/<stem>.json`` under the book's root ``root``; chapters it lacks
    are left out (their claims are then *not run* at paper scale)."""
    return read_results_folder(record_dir(root), chapters() if stems is None else stems)


def built_chapters(root: str | os.PathLike | None = None) -> set[str]:
    """The chapters the compiled book will contain: those of ``_toc.yml`` under the
    book's root ``root`` (default: found from the working directory) whose executed
    notebook the runner has left in ``_build/site/notebooks`` (it leaves the others
    out of the build, so links to them would break). Empty outside a book."""
    from . import paths
    from .book import chapters as toc_chapters

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


def ledger(
    results: Results,
    record: Results | None = None,
    claims: Iterable[Claim] | None = None,
):
    """One row per claim (default :func:`all_claims`): paper, claim, the paper's value,
    and the measured value, verdict, rule and note judged on ``results``; with a
    paper-scale ``record``, the same judged on it in columns ``record_*``."""
    import pandas as pd

    rows = []
    for claim in all_claims() if claims is None else claims:
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
