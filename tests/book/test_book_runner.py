"""The papermill runner: validation before any work, execution, failure reporting."""

import json
import textwrap
from pathlib import Path

import pytest

from advmanifold.book import runner as book

NOTEBOOK = textwrap.dedent("""\
    # %% [markdown]
    # # A tiny chapter

    # %% tags=["parameters"]
    profile = "quick"
    seed = 0
    n = 3

    # %%
    from advmanifold.book.results import Results
    res = Results("{stem}", profile=profile, seed=seed)
    res.add("n_squared", n * n)
    assert n != 13, "thirteen is unlucky"
    res.write()
    """)


@pytest.fixture
def tiny_book(tmp_path: Path) -> Path:
    (tmp_path / "notebooks").mkdir()
    (tmp_path / "book").mkdir()
    (tmp_path / "book" / "intro.md").write_text("# Intro\n")
    for stem in ("01_alpha", "02_beta"):
        (tmp_path / "notebooks" / f"{stem}.py").write_text(NOTEBOOK.format(stem=stem))
    (tmp_path / "_toc.yml").write_text(
        textwrap.dedent("""\
        format: jb-book
        root: book/intro
        parts:
          - caption: Chapters
            chapters:
              - file: notebooks/01_alpha
              - file: notebooks/02_beta
        """)
    )
    return tmp_path


def test_toc_lists_chapters_in_order(tiny_book):
    assert [c.stem for c in book.chapters(tiny_book)] == ["01_alpha", "02_beta"]


def test_unknown_profile_lists_valid_ones(tiny_book, capsys):
    with pytest.raises(SystemExit) as err:
        book.plan(tiny_book, "fast", None, [])
    assert err.value.code == 2
    message = capsys.readouterr().err
    assert "'fast'" in message and "smoke, quick, paper" in message


def test_unknown_notebook_lists_valid_ones(tiny_book, capsys):
    with pytest.raises(SystemExit):
        book.plan(tiny_book, "smoke", ["03_gamma"], [])
    message = capsys.readouterr().err
    assert "03_gamma" in message and "01_alpha, 02_beta" in message


def test_unknown_parameter_lists_valid_ones(tiny_book, capsys):
    with pytest.raises(SystemExit):
        book.plan(tiny_book, "smoke", None, ["epochs=3"])
    message = capsys.readouterr().err
    assert "'epochs'" in message and "n" in message and "seed" in message


def test_parameters_are_typed_and_targeted(tiny_book):
    the_plan = book.plan(tiny_book, "smoke", None, ["n=5", "02_beta:seed=7"])
    assert the_plan.parameters["01_alpha"] == {"profile": "smoke", "n": 5}
    assert the_plan.parameters["02_beta"] == {"profile": "smoke", "n": 5, "seed": 7}
    with pytest.raises(SystemExit):
        book.plan(tiny_book, "smoke", ["01_alpha"], ["02_beta:seed=7"])


def test_execute_writes_outputs_results_and_times(tiny_book, monkeypatch):
    monkeypatch.setenv("ADVMANIFOLD_RESULTS", str(tiny_book / "_build" / "results"))
    the_plan = book.plan(tiny_book, "smoke", ["02_beta"], ["n=4"])
    site = tiny_book / "_build" / "site"
    times = book.execute(tiny_book, the_plan, site)
    assert set(times) == {"02_beta"}
    executed = json.loads((site / "notebooks" / "02_beta.ipynb").read_text())
    assert any(
        c.get("outputs") is not None
        for c in executed["cells"]
        if c["cell_type"] == "code"
    )
    record = json.loads((tiny_book / "_build" / "results" / "02_beta.json").read_text())
    assert record["n_squared"] == 16 and record["profile"] == "smoke"
    # the committed source stays untouched and output-free
    assert "outputs" not in (tiny_book / "notebooks" / "02_beta.py").read_text()
    log = book.record_times(tiny_book, "smoke", times)
    assert json.loads(log.read_text())["chapters_s"]["02_beta"] == times["02_beta"]


def test_failing_chapter_names_notebook_and_cell(tiny_book, monkeypatch, capsys):
    monkeypatch.setenv("ADVMANIFOLD_RESULTS", str(tiny_book / "_build" / "results"))
    the_plan = book.plan(tiny_book, "smoke", None, ["n=13"])
    with pytest.raises(SystemExit) as err:
        book.execute(tiny_book, the_plan, tiny_book / "_build" / "site")
    assert err.value.code == 1
    message = capsys.readouterr()
    assert "notebooks/01_alpha.py failed in cell" in message.err
    assert "thirteen is unlucky" in message.err
    assert "02_beta" not in message.out  # stopped at the first failure


def test_heartbeat_shows_cell_and_progress_bar(tiny_book, monkeypatch, capsys):
    slow = textwrap.dedent("""\
        # %% tags=["parameters"]
        profile = "quick"
        seed = 0

        # %%
        import time
        from tqdm import tqdm
        for _ in tqdm(range(12), desc="training", mininterval=0.1):
            time.sleep(0.1)
        """)
    (tiny_book / "notebooks" / "01_alpha.py").write_text(slow)
    monkeypatch.setenv("ADVMANIFOLD_RESULTS", str(tiny_book / "_build" / "results"))
    the_plan = book.plan(tiny_book, "smoke", ["01_alpha"], [])
    book.execute(tiny_book, the_plan, tiny_book / "_build" / "site", heartbeat_s=0.3)
    out = capsys.readouterr().out
    beats = [line for line in out.splitlines() if line.strip().startswith("… 01_alpha")]
    assert any("cell 3/3 (import time)" in b and "training:" in b for b in beats), out


def test_never_executed_chapters_are_staged_as_placeholder_pages(tiny_book, capsys):
    (tiny_book / "_config.yml").write_text("title: tiny\n")
    site = tiny_book / "_build" / "site"
    (site / "notebooks").mkdir(parents=True)
    (site / "notebooks" / "02_beta.ipynb").write_text("{}")
    (site / "notebooks" / "02_beta.md").write_text("# stale placeholder\n")
    left_out = book.stage(tiny_book, site, book.chapters(tiny_book))
    assert left_out == ["01_alpha"]
    stub = (site / "notebooks" / "01_alpha.md").read_text()
    assert stub.startswith("# A tiny chapter") and "--only 01_alpha" in stub
    assert not (site / "notebooks" / "02_beta.md").exists()  # executed: no placeholder
    assert "01_alpha" in capsys.readouterr().out


def test_record_copies_results_and_times_into_results_profile(tiny_book, monkeypatch):
    monkeypatch.setenv("ADVMANIFOLD_RESULTS", str(tiny_book / "_build" / "results"))
    the_plan = book.plan(tiny_book, "smoke", ["02_beta"], ["n=6"])
    times = book.execute(tiny_book, the_plan, tiny_book / "_build" / "site")
    book.record_times(tiny_book, "smoke", times)
    target = book.record(tiny_book, "smoke", ["02_beta"])
    assert target == tiny_book / "results" / "smoke"
    assert json.loads((target / "02_beta.json").read_text())["n_squared"] == 36
    assert set(
        json.loads((target / "book_run_smoke.json").read_text())["chapters_s"]
    ) == {"02_beta"}


def test_heartbeat_shows_the_progress_text_not_terminal_control_codes():
    from advmanifold.book.runner import ChapterProgress

    progress = ChapterProgress("06_generalization")
    progress.write("models:  40%|████      | 4/10\r\x1b[A")  # a nested bar moved up
    assert progress.latest == "models:  40%|████      | 4/10"
    progress.write("\x1b[A\x1b[2K\n")  # control codes only: the last text stays
    assert progress.latest == "models:  40%|████      | 4/10"


def test_the_kernel_is_not_interrupted_while_it_shuts_down():
    import asyncio

    manager = book.quiet_kernel_manager()()
    with pytest.raises(RuntimeError, match="No kernel is running"):
        asyncio.run(manager._async_interrupt_kernel())  # an interrupt still goes out
    manager.shutting_down = True
    asyncio.run(manager._async_interrupt_kernel())  # nothing sent, nothing raised
