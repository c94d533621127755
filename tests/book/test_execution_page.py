"""The appendix page "Execution statistics" (advmanifold.book.execution): written by
the runner when it stages the book, a row per chapter for this build and for the
committed paper record."""

import json
import re
from pathlib import Path

import yaml

from advmanifold.book import execution, runner as book
from advmanifold.book.fanout import FanOutReport
from advmanifold.book.results import (
    Results,
    book_run_path,
    read_book_run,
    write_book_run,
)
from advmanifold.book.toc import toc_files

ROOT = Path(__file__).resolve().parents[2]


def rows(text: str, heading: str) -> list[list[str]]:
    """The body rows of the table under ``## heading``, as lists of cells."""
    section = text.split(f"## {heading}\n", 1)[1].split("\n## ", 1)[0]
    lines = [line for line in section.splitlines() if line.startswith("| ")]
    return [[c.strip() for c in line.strip("|").split(" | ")] for line in lines[1:]]


def test_a_row_per_chapter_from_the_results_and_the_runners_log(tmp_path):
    build, record = tmp_path / "build", tmp_path / "record"
    res = Results("01_a", profile="quick", seed=0, directory=build)
    res.add("x", 1.0, glue=False)
    res.write()
    write_book_run(
        "quick",
        {"01_a": 125.0},
        units={"01_a": {"listed": 3, "built": 2, "found": 1, "failed": 0, "left": 0}},
        directory=build,
    )
    text = execution.page(["01_a", "02_b"], build, record)
    assert text.startswith("# Execution statistics\n")
    here = rows(text, "This build")
    assert [r[0] for r in here] == [
        "{doc}`01_a </notebooks/01_a>`",
        "{doc}`02_b </notebooks/02_b>`",
    ]
    first = dict(zip(execution.COLUMNS, here[0]))
    assert first["Profile"] == "quick" and first["Wall time"] == "2.1 min"
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d", first["Finished"])
    assert first["Machine"] == json.loads((build / "01_a.json").read_text())["machine"]
    assert first["Units (fan-out)"] == "2 built, 1 found"
    assert first["Cache hits / misses"] == "0 / 0"
    assert here[1][1] == "not run" and set(here[1][2:]) == {execution.MISSING}
    assert "1 of 2 chapters ran, in 2.1 min together." in text
    recorded = rows(text, "The paper-scale record")
    assert [r[1] for r in recorded] == ["not run", "not run"]
    assert "0 of 2 chapters ran." in text


def test_a_chapter_without_results_of_its_own_shows_the_runners_log(tmp_path):
    write_book_run("smoke", {"03_c": 4.0}, directory=tmp_path)
    write_book_run("paper", {"03_c": 9.0}, directory=tmp_path)
    older = book_run_path("smoke", tmp_path)  # the paper run is the later one
    older.write_text(older.read_text().replace('"finished": "2', '"finished": "1'))
    (row,) = rows(execution.page(["03_c"], tmp_path, tmp_path), "This build")
    found = dict(zip(execution.COLUMNS, row))
    assert (found["Profile"], found["Wall time"]) == ("paper", "9 s")
    finished = read_book_run("paper", tmp_path)["finished"]
    assert found["Finished"] == finished[:16].replace("T", " ")
    assert found["Machine"] == found["Cache hits / misses"] == execution.MISSING


def test_a_later_run_without_fan_out_drops_the_old_counts(tmp_path):
    counts = {"listed": 1, "built": 1, "found": 0, "failed": 0, "left": 0}
    both = {"01_a": counts, "02_b": counts}
    write_book_run("smoke", {"01_a": 1.0, "02_b": 2.0}, units=both, directory=tmp_path)
    write_book_run("smoke", {"01_a": 3.0}, directory=tmp_path)  # notebooks built them
    assert read_book_run("smoke", tmp_path)["units"] == {"02_b": counts}


def test_fan_out_counts_each_chapter_s_units():
    report = FanOutReport(built=["a", "b"], left=["d"])
    counts = report.per_chapter({"01_x": ["a", "c"], "02_y": ["a", "b", "d", "e"]})
    assert counts["01_x"] == dict(listed=2, built=1, failed=0, left=0, found=1)
    assert counts["02_y"] == dict(listed=4, built=2, failed=0, left=1, found=1)


def test_the_runner_stages_the_page_with_every_chapter_and_the_paper_record(
    tmp_path, monkeypatch
):
    monkeypatch.setenv("ADVMANIFOLD_RESULTS", str(tmp_path / "results"))
    site = tmp_path / "site"
    every = book.chapters(ROOT)
    book.stage(ROOT, site, every)
    text = (site / execution.PAGE).read_text()
    stems = [c.stem for c in every]
    links = [f"{{doc}}`{s} </notebooks/{s}>`" for s in stems]
    for heading in ("This build", "The paper-scale record"):
        assert [r[0] for r in rows(text, heading)] == links
    # nothing ran in this (empty) results folder; the committed record did run
    assert {r[1] for r in rows(text, "This build")} == {"not run"}
    recorded = {
        s: r[1] for s, r in zip(stems, rows(text, "The paper-scale record"))
    }
    assert recorded["02_mnist"] == "paper"
    assert {s for s, p in recorded.items() if p == "paper"} == {
        p.stem for p in (ROOT / "results" / "paper").glob("[0-9]*.json")
    }


def test_the_page_is_in_the_appendix_of_every_build():
    page = execution.PAGE.with_suffix("").as_posix()
    assert (ROOT / execution.PAGE).is_file()  # the placeholder, for builds without it
    appendix = next(
        p["chapters"]
        for p in yaml.safe_load((ROOT / "_toc.yml").read_text())["parts"]
        if p["caption"] == "Appendix"
    )
    assert {"file": page} in appendix
    assert page in toc_files(ROOT / "_toc.yml")
