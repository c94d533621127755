"""The claims ledger judges from results files, and its rules can say no."""

import json
import string
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest
from docutils.core import publish_string
from myst_parser.parsers.docutils_ import Parser

from advmanifold import claims


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
    assert good["fonts-test-on-manifold"] == claims.REPRODUCED
    assert good["fonts-regular-off"] == claims.REPRODUCED
    assert good["fonts-orthogonal"] == claims.REPRODUCED
    bad = by_key(fonts(test=2.0, reg=2.1, ratio=0.5))
    assert bad["fonts-test-on-manifold"] == claims.NOT_REPRODUCED
    assert bad["fonts-regular-off"] == claims.PARTLY
    assert bad["fonts-orthogonal"] == claims.NOT_REPRODUCED


def test_missing_chapter_is_not_run():
    verdicts = by_key(fonts())
    assert verdicts["pmnist-baseline-accuracy"] == claims.NOT_RUN
    assert verdicts["mnist-orthogonal"] == claims.NOT_RUN


def test_seed_spread_turns_a_small_effect_into_partly():
    record = {
        "alignment_cosine_median_robust": 0.30,
        "alignment_cosine_median_baseline": 0.28,
    }
    single = claims.greater(
        "03_pmnist",
        "alignment_cosine_median_robust",
        "alignment_cosine_median_baseline",
    )
    assert single({"03_pmnist": record}).verdict == claims.REPRODUCED
    noisy = {
        **record,
        "n_seeds": 4,
        "alignment_cosine_median_robust_std": 0.05,
        "alignment_cosine_median_baseline_std": 0.05,
    }
    assert single({"03_pmnist": noisy}).verdict == claims.PARTLY
    reversed_ = {**record, "alignment_cosine_median_robust": 0.2}
    assert single({"03_pmnist": reversed_}).verdict == claims.NOT_REPRODUCED


def test_ledger_has_one_row_per_claim():
    frame = claims.ledger(fonts())
    assert len(frame) == len(claims.all_claims())
    assert len(set(frame["key"])) == len(frame)
    assert set(frame["verdict"]) <= set(claims.VERDICTS)


# ------------------------------------------------------------ fallback runs


def test_fonts_fallback_run_is_not_comparable():
    record = fonts()
    record["01_fonts"].update(fonts_fallback=1, n_fonts=14)
    verdicts = {
        c.key: c.verdict(record) for c in claims.CLAIMS if c.chapter == "01_fonts"
    }
    assert {v.verdict for v in verdicts.values()} == {claims.NOT_COMPARABLE}
    v = verdicts["fonts-orthogonal"]
    assert "14 legible faces" in v.note and v.measured == "0.970"  # value still shown
    del record["01_fonts"]["n_fonts"]
    assert "fallback fonts" in claims.CLAIMS[0].verdict(record).note
    record["01_fonts"]["fonts_fallback"] = 0
    assert by_key(record)["fonts-orthogonal"] == claims.REPRODUCED
    assert by_key(record)["pmnist-baseline-accuracy"] == claims.NOT_RUN


# ------------------------------------------------------------ extra claims


def _write_module(folder, name, body):
    (folder / f"{name}.py").write_text(body)


def test_all_claims_adds_extra_modules_and_skips_missing_ones(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    _write_module(
        tmp_path,
        "extra_claims_ok",
        (
            "from advmanifold import claims\n"
            "CLAIMS = (claims.Claim('extra-one', 'x', '06_generalization', 'fig-x',\n"
            "          'text', '', claims.at_least('06_generalization', 'gap',\n"
            "                                       good=1, fair=0)),)\n"
        ),
    )
    found = claims.all_claims(("extra_claims_ok", "advmanifold.no_such_chapter"))
    assert [c.key for c in found] == [c.key for c in claims.CLAIMS] + ["extra-one"]
    assert "06_generalization" in claims.chapters(found)
    frame = claims.ledger({"06_generalization": {"gap": 2.0}}, claims=found)
    assert frame.set_index("key").loc["extra-one", "verdict"] == claims.REPRODUCED
    # a module that exists but fails inside must not be skipped silently
    _write_module(tmp_path, "extra_claims_broken", "import no_such_dependency_xyz\n")
    with pytest.raises(ModuleNotFoundError, match="no_such_dependency_xyz"):
        claims.all_claims(("extra_claims_broken",))
    _write_module(
        tmp_path,
        "extra_claims_twice",
        ("from advmanifold import claims\nCLAIMS = claims.CLAIMS[:1]\n"),
    )
    with pytest.raises(ValueError, match="unique.*fonts-test-on-manifold"):
        claims.all_claims(("extra_claims_twice",))


def test_importing_claims_imports_no_chapter_module():
    code = (
        "import sys, advmanifold.claims as c\n"
        "assert not [m for m in c.EXTRA_CLAIM_MODULES if m in sys.modules]\n"
        "c.all_claims()\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# ------------------------------------------------------------ paper record


def test_paper_record_is_read_from_results_paper_at_book_root(tmp_path, monkeypatch):
    (tmp_path / "_toc.yml").write_text("root: intro\n")
    (tmp_path / "notebooks").mkdir()
    folder = tmp_path / "results" / "paper"
    folder.mkdir(parents=True)
    paper = {"profile": "paper", **fonts()["01_fonts"]}
    (folder / "01_fonts.json").write_text(json.dumps(paper))
    monkeypatch.chdir(tmp_path / "notebooks")  # where the executed notebook runs
    assert claims.record_dir() == folder
    record = claims.paper_record()
    assert list(record) == ["01_fonts"] and record["01_fonts"]["profile"] == "paper"
    build = fonts(reg=0.015)  # this build: regular examples not off the manifold
    frame = claims.ledger(build, record).set_index("key")
    assert frame.loc["fonts-regular-off", "verdict"] == claims.PARTLY
    assert frame.loc["fonts-regular-off", "record_verdict"] == claims.REPRODUCED
    assert frame.loc["pmnist-baseline-accuracy", "record_verdict"] == claims.NOT_RUN
    assert set(claims.differing(frame.reset_index())["key"]) == {
        "fonts-regular-off",
        "fonts-test-on-manifold",
        "fonts-onmanifold-adv",
    }
    flagged = {"01_fonts": {**paper, "fonts_fallback": 1}}  # not comparable: not judged
    assert claims.differing(claims.ledger(build, flagged)).empty
    assert claims.describe_records(record)["profile"].tolist() == ["paper"]
    (folder / "02_mnist.json").write_text("{not json")
    with pytest.raises(ValueError, match="02_mnist.json"):
        claims.paper_record()
    assert claims.paper_record(tmp_path / "elsewhere") == {}


def test_a_paper_run_on_part_of_the_grid_says_so_in_every_verdict():
    judge = lambda results: claims.Verdict(claims.REPRODUCED, "0.5", "a rule")  # noqa: E731
    claim = claims.Claim("k", "stutz", "06_generalization", "fig", "t", "", judge)
    full = {"profile": "paper", "n_large": 40_000, "n_seeds": 5}
    part = {**full, "n_large": 1000, "n_seeds": 2}
    found = claim.verdict({"06_generalization": part})
    assert found.verdict == claims.REPRODUCED and found.measured == "0.5"
    assert found.note == "reduced paper grid: largest N 1,000 of 40,000, seeds 2 of 5"
    assert claim.verdict({"06_generalization": full}).note == ""
    quick = {**part, "profile": "quick"}  # other profiles choose their own grid
    assert claim.verdict({"06_generalization": quick}).note == ""
    fewer_seeds = claim.verdict({"06_generalization": {**full, "n_seeds": 3}})
    assert fewer_seeds.note == "reduced paper grid: seeds 3 of 5"
    frame = claims.ledger({}, {"06_generalization": part}, [claim])
    glance = claims.glance_markdown(frame)  # the intro's table says it too
    assert r"reduced paper grid\: largest N 1,000 of 40,000" in glance


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
    """Problems of a parsed table: rows whose cell count differs from the header's, or
    cells not holding the expected text (``expected``: per row, per column, a string
    the cell must contain)."""
    problems = [
        f"row {i} has {len(r)} cells, header {len(rows[0])}"
        for i, r in enumerate(rows)
        if len(r) != len(rows[0])
    ]
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
        claims.Claim(
            "hostile",
            "src",
            "03_pmnist",
            "fig-x",
            HOSTILE,
            "1 | 2",
            lambda r: claims.Verdict(claims.PARTLY, "x|y $z$", "|v − 1| ≤ 2"),
        ),
        *[c for c in claims.CLAIMS if c.key == "pmnist-baseline-accuracy"],
    )


def test_ledger_table_keeps_every_cell_in_its_column():
    results = {"03_pmnist": {"accuracy_baseline": 0.91}}
    frame = claims.ledger(results, {}, claims=_hostile_claims())
    rows = table_rows(claims.ledger_markdown(frame, linked={"03_pmnist"}))
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
    frame = claims.ledger(
        {"03_pmnist": {"accuracy_baseline": 0.91}},
        {"03_pmnist": {"accuracy_baseline": 0.80}},
        claims=_hostile_claims(),
    )
    rows = table_rows(claims.glance_markdown(frame))
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
    rows = table_rows(claims.list_table(["x"], [[claims.escape(text)]]))
    assert rows == [["x"], [" ".join(text.split())]]
    with pytest.raises(ValueError, match="cells"):
        claims.list_table(["a", "b"], [["only one"]])


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
    in_book = claims.built_chapters(tmp_path)
    assert in_book == {"03_pmnist"} and claims.built_chapters(tmp_path / "x") == set()
    link = claims.figure_link
    assert link("03_pmnist", "fig-a", {"03_pmnist"}, in_book) == "{numref}`fig-a`"
    assert link("03_pmnist", "fig-a", set(), in_book) == "{doc}`/notebooks/03_pmnist`"
    assert link("01_fonts", "fig-b", {"01_fonts"}, in_book) == "01\\_fonts"  # no link


def test_intro_includes_the_glance_table_and_a_placeholder_exists():
    root = Path(__file__).resolve().parents[1]
    intro = (root / "book" / "intro.md").read_text()
    assert "```{include} generated/05_claims_glance.md" in intro
    placeholder = (root / "book" / "generated" / "05_claims_glance.md").read_text()
    assert "{" not in placeholder  # no role: it must compile in any partial build
