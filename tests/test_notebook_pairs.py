"""Every notebooks/*.py has a paired, output-free .ipynb with the same cells."""

import json
from pathlib import Path

import jupytext
import pytest

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
SOURCES = sorted(NOTEBOOKS.glob("*.py"))


def test_there_are_notebooks():
    assert SOURCES, f"no notebooks/*.py in {NOTEBOOKS}"


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.stem)
def test_pair_in_sync_and_output_free(source):
    paired = source.with_suffix(".ipynb")
    assert paired.is_file(), (
        f"{source.name} has no paired {paired.name}: run jupytext --to ipynb {source}"
    )
    stored = json.loads(paired.read_text())
    assert not any(c.get("outputs") for c in stored["cells"]), (
        f"{paired.name} carries outputs"
    )
    assert not any(
        c.get("execution_count") for c in stored["cells"] if c["cell_type"] == "code"
    )
    expected = jupytext.read(source)
    assert [(c.cell_type, c.source) for c in expected.cells] == [
        (c["cell_type"], "".join(c["source"])) for c in stored["cells"]
    ], (
        f"{paired.name} differs from {source.name}: "
        f"run jupytext --to ipynb --update {source}"
    )


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.stem)
def test_notebook_declares_the_standard_parameters(source):
    notebook = jupytext.read(source)
    cells = [c for c in notebook.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(cells) == 1, f"{source.name} needs exactly one cell tagged 'parameters'"
    for name in ("profile", "seed", "device"):
        assert f"{name} =" in cells[0].source, (
            f"{source.name}'s parameters cell lacks {name!r}"
        )


MAX_LINE = 88  # the theme's code cells show about 88 characters without scrolling


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.stem)
def test_no_code_line_is_wider_than_the_page(source):
    notebook = jupytext.read(source)
    long = [
        (i, line)
        for i, cell in enumerate(notebook.cells)
        if cell.cell_type == "code"
        for line in cell.source.splitlines()
        if len(line) > MAX_LINE
    ]
    assert not long, (
        f"{source.name}: {len(long)} code line(s) over {MAX_LINE} characters, "
        f"e.g. cell {long[0][0]}: {long[0][1]!r}"
    )
