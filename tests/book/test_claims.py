"""The claims ledger judges from results files, and its rules can say no."""

import json
import string
import subprocess
import sys
from dataclasses import replace
from html.parser import HTMLParser
from pathlib import Path

import pytest
from docutils.core import publish_string
from myst_parser.parsers.docutils_ import Parser

from advmanifold.book import ledger
from advmanifold.book.toc import chapters as toc_chapters
from advmanifold.chapters import claims

ROOT = Path(__file__).resolve().parents[2]


def fonts(test=0.01, onm=0.02, reg=3.0, ratio=0.97):
    return {
        "01_fonts": {
            "distance_test_median": test,
            "distance_onmanifold_median": onm,
            "distance_regular_median": reg,
            "regular_distance_over_l2_median": ratio,
        }
    }


def by_key(results):
    return {c.key: c.verdict(results).verdict for c in claims.CLAIMS}


def test_fonts_rules_reproduce_and_refute():
    good = by_key(fonts())
    assert good["fonts-test-on-manifold"] == ledger.REPRODUCED
    assert good["fonts-regular-off"] == ledger.REPRODUCED
    assert good["fonts-orthogonal"] == ledger.REPRODUCED
    bad = by_key(fonts(test=2.0, reg=2.1, ratio=0.5))
    assert bad["fonts-test-on-manifold"] == ledger.NOT_REPRODUCED
    assert bad["fonts-regular-off"] == ledger.PARTLY
    assert bad["fonts-orthogonal"] == ledger.NOT_REPRODUCED


def test_missing_chapter_is_not_run():
    verdicts = by_key(fonts())
    assert verdicts["pmnist-baseline-accuracy"] == ledger.NOT_RUN
    assert verdicts["mnist-orthogonal"] == ledger.NOT_RUN


def test_seed_spread_turns_a_small_effect_into_partly():
    record = {
        "alignment_cosine_median_robust": 0.30,
        "alignment_cosine_median_baseline": 0.28,
    }
    single = ledger.greater(
        "03_pmnist",
        "alignment_cosine_median_robust",
        "alignment_cosine_median_baseline",
    )
    assert single({"03_pmnist": record}).verdict == ledger.REPRODUCED
    noisy = {
        **record,
        "n_seeds": 4,
        "alignment_cosine_median_robust_std": 0.05,
        "alignment_cosine_median_baseline_std": 0.05,
    }
    assert single({"03_pmnist": noisy}).verdict == ledger.PARTLY
    reversed_ = {**record, "alignment_cosine_median_robust": 0.2}
    assert single({"03_pmnist": reversed_}).verdict == ledger.NOT_REPRODUCED


def test_ledger_has_one_row_per_claim():
    frame = ledger.ledger(fonts(), claims=claims.CLAIMS)
    assert frame["key"].tolist() == [c.key for c in claims.CLAIMS]
    assert set(frame["verdict"]) <= set(ledger.VERDICTS)


# ------------------------------------------------------------ the declarations


def test_claim_keys_are_unique_and_those_of_the_record_kept():
    keys = [c.key for c in claims.CLAIMS]
    assert len(set(keys)) == len(keys)
    # the committed ledger record names each claim it judged: verdict_<key>
    record = json.loads((ROOT / "results" / "paper" / "05_claims.json").read_text())
    recorded = {k for k in record if k.startswith("verdict_")}
    assert recorded and recorded <= {f"verdict_{k.replace('-', '_')}" for k in keys}


def test_every_claim_points_at_a_chapter_and_figure_of_the_book():
    in_toc = {c.stem: c.source for c in toc_chapters(ROOT)}
    assert set(claims.chapters()) <= set(in_toc)
    for claim in claims.CLAIMS:
        assert f":name: {claim.figure}\n" in in_toc[claim.chapter].read_text(), claim


def test_importing_the_ledger_imports_no_chapter():
    code = (
        "import sys, advmanifold.book.ledger\n"
        "assert not [m for m in sys.modules if m.startswith('advmanifold.chapters')]\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def _pmnist(**values):
    keys = {
        "accuracy_baseline": 0.92,
        "pgd_accuracy_robust_eps0.1": 0.7,
        "pgd_accuracy_manifold_eps0.1": 0.1,
        "fgsm_accuracy_robust_eps0.1": 0.75,
        "fgsm_accuracy_manifold_eps0.1": 0.2,
    }
    return {"03_pmnist": {**keys, **values}}


def test_a_compound_claim_takes_its_weakest_parts_verdict():
    part = {v: ledger.Verdict(v, f"m {v}", f"r {v}") for v in ledger.STRENGTH}
    judge = lambda verdict: lambda results: part[verdict]  # noqa: E731
    both = ledger.all_of(a=judge(ledger.REPRODUCED), b=judge(ledger.PARTLY))({})
    assert both.verdict == ledger.PARTLY
    assert both.measured == "a: m reproduced; b: m partly"
    assert both.rule == "a: r reproduced; b: r partly"
    worst = ledger.all_of(a=judge(ledger.NOT_REPRODUCED), b=judge(ledger.REPRODUCED))
    assert worst({}).verdict == ledger.NOT_REPRODUCED
    # the declared two-part claim: Robust beats Manifold by > 0.1 under FGSM and PGD
    claim = {c.key: c for c in claims.CLAIMS}["robust-much-more-than-manifold"]
    assert claim.verdict(_pmnist()).verdict == ledger.REPRODUCED
    one_short = _pmnist(**{"fgsm_accuracy_manifold_eps0.1": 0.7})
    assert claim.verdict(one_short).verdict == ledger.PARTLY
    assert "FGSM: accuracy 0.750 vs 0.700" in claim.verdict(one_short).measured
    lacking = _pmnist()
    del lacking["03_pmnist"]["pgd_accuracy_manifold_eps0.1"]
    assert claim.verdict(lacking).verdict == ledger.NOT_RUN


def test_the_pmnist_chapter_shows_the_ledgers_verdicts():
    metrics = _pmnist(**{"pgd_accuracy_baseline_eps0.1": 0.05})["03_pmnist"]
    shown = claims.verdicts("03_pmnist", metrics)
    full = ledger.ledger({"03_pmnist": metrics}, claims=claims.CLAIMS)
    full = full[full.chapter == "03_pmnist"].set_index("key")
    assert shown.index.tolist() == [c.key for c in claims.of_chapter("03_pmnist")]
    for column in ("claim", "verdict", "measured", "rule"):
        assert shown[column].tolist() == full[column].tolist()
    assert shown.loc["robust-much-more", "verdict"] == ledger.REPRODUCED
    assert shown.loc["robust-aligned", "verdict"] == ledger.NOT_RUN  # no cosines


def test_at_every_size_reads_the_sizes_from_the_record():
    record = {
        "e_a_n250": 0.3,
        "e_a_n250_std": 0.01,
        "e_b_n250": 0.3,
        "e_a_n1000": 0.2,
        "e_b_n1000": 0.5,
        "n_small": 250,
    }
    judge = ledger.at_every_size("s", ledger.not_greater, "e_a_n{n}", "e_b_n{n}")
    found = judge({"s": record})
    assert found.verdict == ledger.REPRODUCED
    assert (
        found.measured.startswith("N=250: 0.300 vs 0.300")
        and "N=1,000" in found.measured
    )
    record["e_a_n1000"] = 0.9
    assert judge({"s": record}).verdict == ledger.NOT_REPRODUCED
    del record["e_b_n1000"]  # a size without the other key cannot be judged
    with pytest.raises(KeyError):
        judge({"s": record})
    at_small = ledger.at_size("s", "n_small", ledger.greater, "e_b_n{n}", "e_a_n{n}")
    assert at_small({"s": record}).verdict == ledger.NOT_REPRODUCED  # 0.3 vs 0.3


# ------------------------------------------------------------ paper record


def test_paper_record_is_read_from_results_paper_at_book_root(tmp_path, monkeypatch):
    (tmp_path / "_toc.yml").write_text("root: intro\n")
    (tmp_path / "notebooks").mkdir()
    folder = tmp_path / "results" / "paper"
    folder.mkdir(parents=True)
    paper = {"profile": "paper", **fonts()["01_fonts"]}
    (folder / "01_fonts.json").write_text(json.dumps(paper))
    monkeypatch.chdir(tmp_path / "notebooks")  # where the executed notebook runs
    assert ledger.record_dir() == folder
    stems = claims.chapters()
    record = ledger.paper_record(stems)
    assert list(record) == ["01_fonts"] and record["01_fonts"]["profile"] == "paper"
    build = fonts(reg=0.015)  # this build: regular examples not off the manifold
    frame = ledger.ledger(build, record, claims=claims.CLAIMS).set_index("key")
    assert frame.loc["fonts-regular-off", "verdict"] == ledger.PARTLY
    assert frame.loc["fonts-regular-off", "record_verdict"] == ledger.REPRODUCED
    assert frame.loc["pmnist-baseline-accuracy", "record_verdict"] == ledger.NOT_RUN
    assert set(ledger.differing(frame.reset_index())["key"]) == {
        "fonts-regular-off",
        "fonts-test-on-manifold",
        "fonts-onmanifold-adv",
    }
    flagged = {"01_fonts": {**paper, "fonts_fallback": 1}}  # not comparable: not judged
    assert ledger.differing(ledger.ledger(build, flagged, claims=claims.CLAIMS)).empty
    assert ledger.describe_records(record)["profile"].tolist() == ["paper"]
    (folder / "02_mnist.json").write_text("{not json")
    with pytest.raises(ValueError, match="02_mnist.json"):
        ledger.paper_record(stems)
    assert ledger.paper_record(stems, tmp_path / "elsewhere") == {}


def test_a_paper_run_on_part_of_the_grid_says_so_in_every_verdict():
    judge = lambda results: ledger.Verdict(ledger.REPRODUCED, "0.5", "a rule")  # noqa: E731
    grid = (("n_large", 40_000, "largest N"), ("n_seeds", 5, "seeds"))
    claim = ledger.Claim("k", "stutz", "06_generalization", "fig", "t", "", judge)
    claim = replace(claim, grid=grid)
    full = {"profile": "paper", "n_large": 40_000, "n_seeds": 5}
    part = {**full, "n_large": 1000, "n_seeds": 2}
    found = claim.verdict({"06_generalization": part})
    assert found.verdict == ledger.REPRODUCED and found.measured == "0.5"
    assert found.note == "reduced paper grid: largest N 1,000 of 40,000, seeds 2 of 5"
    assert claim.verdict({"06_generalization": full}).note == ""
    quick = {**part, "profile": "quick"}  # other profiles choose their own grid
    assert claim.verdict({"06_generalization": quick}).note == ""
    fewer_seeds = claim.verdict({"06_generalization": {**full, "n_seeds": 3}})
    assert fewer_seeds.note == "reduced paper grid: seeds 3 of 5"
    frame = ledger.ledger({}, {"06_generalization": part}, claims=[claim])
    glance = ledger.glance_markdown(frame)  # the intro's table says it too
    assert r"reduced paper grid\: largest N 1,000 of 40,000" in glance
    # the chapter's claims carry its paper grid: the profile's largest N and seeds
    declared = {c.key: c for c in claims.of_chapter("06_generalization")}
    rho = {**part, "rank_corr_onmanifold_success_vs_test_error": 0.8}
    judged = declared["onmanifold-is-generalization"].verdict(
        {"06_generalization": rho}
    )
    assert judged.verdict == ledger.REPRODUCED and judged.note == found.note
    assert {c.grid for c in declared.values()} == {claims.GENERALIZATION_GRID}
    # the original four's extent is named beside that of all six methods
    grown = {**part, "n_large_original": 20_000, "n_seeds_original": 3}
    judged = declared["onmanifold-is-generalization"].verdict(
        {"06_generalization": {**grown, **rho}}
    )
    assert judged.note == (
        "reduced paper grid: largest N 1,000 of 40,000, seeds 2 of 5, original "
        "four's largest N 20,000 of 40,000, original four's seeds 3 of 5"
    )


def test_a_correlation_spread_counts_the_seeds_that_gave_it():
    key = "rank_corr_onmanifold_success_vs_test_error"
    record = {"n_seeds": 1, key: 0.8, f"{key}_std": 0.3}
    results = {"06_generalization": record}
    assert ledger.se(results, "06_generalization", key) == 0.0  # one seed: no SE
    record[f"{key}_n"] = 4  # four per-seed ρ behind the spread
    assert ledger.se(results, "06_generalization", key) == pytest.approx(0.15)


# ------------------------------------------------------------ rendering


class _Tables(HTMLParser):
    """The cells' text of every <table> row (header and body) in an HTML page."""

    def __init__(self):
        super().__init__()
        self.rows, self.cell = [], None

    def handle_starttag(self, tag, attrs):
        if tag == "tr":
            self.rows.append([])
        elif tag in ("td", "th"):
            self.cell = []

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self.cell is not None:
            self.rows[-1].append(" ".join("".join(self.cell).split()))
            self.cell = None

    def handle_data(self, data):
        if self.cell is not None:
            self.cell.append(data)


def table_rows(markdown: str) -> list[list[str]]:
    """Render MyST ``markdown`` as the book does (myst-parser, the book's extensions)
    and parse its table back into rows of cell texts."""
    settings = {
        "myst_enable_extensions": [
            "amsmath",
            "dollarmath",
            "colon_fence",
            "deflist",
            "substitution",
        ],
        "report_level": 5,
        "halt_level": 5,
        "output_encoding": "unicode",
    }
    html = publish_string(
        markdown, parser=Parser(), writer_name="html5", settings_overrides=settings
    )
    parser = _Tables()
    parser.feed(html)
    return parser.rows


def misplaced(rows, expected):
    """Problems of a parsed table: a body of another length than ``expected``, rows
    whose cell count differs from the header's, or cells not holding the expected text
    (``expected``: per row, per column, a string the cell must contain)."""
    problems = [
        f"row {i} has {len(r)} cells, header {len(rows[0])}"
        for i, r in enumerate(rows)
        if len(r) != len(rows[0])
    ]
    if len(rows) - 1 != len(expected):  # zip below would skip rows that went missing
        problems.append(f"{len(rows) - 1} body rows, expected {len(expected)}")
    for i, (row, wanted) in enumerate(zip(rows[1:], expected), 1):
        problems += [
            f"row {i} column {j}: {text!r} not in {cell!r}"
            for j, (cell, text) in enumerate(zip(row, wanted))
            if text not in cell
        ]
    return problems


HOSTILE = "a | b *c* _d_ `e` {f} $g$ <h> [i](j) \\k #l ~m~ 1. n"


def _hostile_claims():
    return (
        ledger.Claim(
            "hostile",
            "src",
            "03_pmnist",
            "fig-x",
            HOSTILE,
            "1 | 2",
            lambda r: ledger.Verdict(ledger.PARTLY, "x|y $z$", "|v − 1| ≤ 2"),
        ),
        *[c for c in claims.CLAIMS if c.key == "pmnist-baseline-accuracy"],
    )


def test_ledger_table_keeps_every_cell_in_its_column():
    results = {"03_pmnist": {"accuracy_baseline": 0.91}}
    frame = ledger.ledger(results, {}, claims=_hostile_claims())
    rows = table_rows(ledger.ledger_markdown(frame, linked={"03_pmnist"}))
    assert rows[0] == ["claim", "paper", "this build", "paper-scale record"]
    expected = [
        [HOSTILE, "1 | 2", "partly: x|y $z$ (rule: |v − 1| ≤ 2)", "not run"],
        [
            "A baseline MLP reaches about 92%",
            "92%",
            "reproduced: 0.910 (rule: |value − 0.92| ≤ 0.02; partly if ≤ 0.05)",
            "not run (no results of 03_pmnist)",
        ],
    ]
    assert len(rows) == 3 and misplaced(rows, expected) == []


def test_glance_table_keeps_every_cell_in_its_column():
    frame = ledger.ledger(
        {"03_pmnist": {"accuracy_baseline": 0.91}},
        {"03_pmnist": {"accuracy_baseline": 0.80}},
        claims=_hostile_claims(),
    )
    rows = table_rows(ledger.glance_markdown(frame))
    assert rows[0] == ["claim", "paper", "this build", "paper-scale record", "figure"]
    expected = [
        [HOSTILE, "1 | 2", "partly: x|y $z$", "partly: x|y $z$"],
        ["A baseline MLP", "92%", "reproduced: 0.910", "not reproduced: 0.800"],
    ]
    assert misplaced(rows, expected) == []


def test_the_check_catches_a_shifted_row_of_a_pipe_table():
    # the old ledger's pipe table: the rule's "|" splits its cell and shifts the row
    pipe = (
        "| claim | paper | verdict | rule |\n|---|---|---|---|\n"
        "| A baseline MLP | 92% | **reproduced** | |value − 0.92| ≤ 0.02 |\n"
    )
    problems = misplaced(
        table_rows(pipe),
        [["A baseline MLP", "92%", "reproduced", "|value − 0.92| ≤ 0.02"]],
    )
    assert problems and "column 3" in problems[0]


def test_escape_renders_any_text_literally():
    text = string.punctuation + " plain ‖δ‖₂ ≥ 0.9 — " + string.punctuation[::-1]
    rows = table_rows(ledger.list_table(["x"], [[ledger.escape(text)]]))
    assert rows == [["x"], [" ".join(text.split())]]
    with pytest.raises(ValueError, match="cells"):
        ledger.list_table(["a", "b"], [["only one"]])


def test_links_only_to_chapters_compiled_into_the_book(tmp_path):
    (tmp_path / "_toc.yml").write_text(
        "format: jb-book\nroot: intro\nchapters:\n"
        "  - file: notebooks/01_fonts\n  - file: notebooks/03_pmnist\n"
    )
    (tmp_path / "notebooks").mkdir()
    for stem in ("01_fonts", "03_pmnist"):
        (tmp_path / "notebooks" / f"{stem}.py").write_text("# %%\n")
    site = tmp_path / "_build" / "site" / "notebooks"
    site.mkdir(parents=True)
    (site / "03_pmnist.ipynb").write_text("{}")  # only 03_pmnist was executed
    in_book = ledger.built_chapters(tmp_path)
    assert in_book == {"03_pmnist"} and ledger.built_chapters(tmp_path / "x") == set()
    link = ledger.figure_link
    assert link("03_pmnist", "fig-a", {"03_pmnist"}, in_book) == "{numref}`fig-a`"
    assert link("03_pmnist", "fig-a", set(), in_book) == "{doc}`/notebooks/03_pmnist`"
    assert link("01_fonts", "fig-b", {"01_fonts"}, in_book) == "01\\_fonts"  # no link


def test_intro_includes_the_glance_table_and_a_placeholder_exists():
    intro = (ROOT / "book" / "intro.md").read_text()
    assert "```{include} generated/05_claims_glance.md" in intro
    placeholder = (ROOT / "book" / "generated" / "05_claims_glance.md").read_text()
    assert "{" not in placeholder  # no role: it must compile in any partial build
