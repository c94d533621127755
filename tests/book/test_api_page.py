"""The appendix "Using the package": the API reference of the science wing
(``book/api.md``, Sphinx autodoc) and its worked example
(``notebooks/91_using_the_package.py``), both in the book's table of contents.

The book's build (``jupyter-book build -W -n``) is what proves that the page renders;
these tests keep it complete: every module of :mod:`advmanifold.science` is on the
page, the example is a chapter the runner executes at every profile, and it uses the
science wing alone.
"""

from __future__ import annotations

import ast
import pkgutil
import re
from pathlib import Path

import jupytext
import pytest
import yaml

import advmanifold.science
from advmanifold.book import runner as book
from advmanifold.book.profiles import PROFILES
from advmanifold.book.toc import toc_files

ROOT = Path(__file__).resolve().parents[2]
API_PAGE = ROOT / "book" / "api.md"
EXAMPLE = "91_using_the_package"
AUTOMODULE = re.compile(r"^\.\. automodule:: +(\S+)[ \t]*$", re.MULTILINE)


def science_modules() -> set[str]:
    """The science wing and every public module under it."""
    found = {
        m.name
        for m in pkgutil.walk_packages(
            advmanifold.science.__path__, advmanifold.science.__name__ + "."
        )
    }
    public = {n for n in found if not any(p.startswith("_") for p in n.split("."))}
    return public | {advmanifold.science.__name__}


def directives() -> dict[str, list[str]]:
    """Module → the option lines of its ``automodule`` directive on the API page."""
    text = API_PAGE.read_text()
    options: dict[str, list[str]] = {}
    for match in AUTOMODULE.finditer(text):
        assert match.group(1) not in options, f"{match.group(1)} documented twice"
        following = text[match.end() :].splitlines()[1:]
        lines = []
        for line in following:
            if not line.startswith("   :"):
                break
            lines.append(line.strip())
        options[match.group(1)] = lines
    return options


def config() -> dict:
    return yaml.safe_load((ROOT / "_config.yml").read_text())


def test_every_science_module_is_documented_and_nothing_else():
    assert science_modules() >= {
        "advmanifold.science.attacks",
        "advmanifold.science.alignment",
        "advmanifold.science.manifolds.linear",
        "advmanifold.science.verification",
    }
    assert set(directives()) == science_modules()


def test_every_module_lists_its_public_names():
    for module, options in directives().items():
        if module == advmanifold.science.__name__:
            continue  # the wing's overview: its modules follow
        assert ":members:" in options and ":undoc-members:" in options, module


def test_the_api_page_lives_in_the_folder_the_runner_stages(tmp_path):
    site = tmp_path / "site"
    book.stage(ROOT, site, book.chapters(ROOT))
    assert (site / "book" / "api.md").read_text() == API_PAGE.read_text()
    assert "book/api" in toc_files(site / "_toc.yml")


def test_appendix_lists_the_example_then_the_api_page():
    files = toc_files(ROOT / "_toc.yml")
    appendix = next(
        p["chapters"]
        for p in yaml.safe_load((ROOT / "_toc.yml").read_text())["parts"]
        if p["caption"] == "Appendix"
    )
    in_order = [c["file"] for c in appendix]
    assert in_order.index("notebooks/90_benchmarks") + 1 == in_order.index(
        f"notebooks/{EXAMPLE}"
    )
    assert in_order.index(f"notebooks/{EXAMPLE}") + 1 == in_order.index("book/api")
    assert in_order.index("book/api") < in_order.index("book/bibliography")
    assert f"notebooks/{EXAMPLE}" in files and "book/api" in files
    assert (ROOT / "notebooks" / f"{EXAMPLE}.py").is_file()
    assert (ROOT / "notebooks" / f"{EXAMPLE}.ipynb").is_file()


@pytest.mark.parametrize("profile", PROFILES)
def test_the_runner_executes_the_example_at_every_profile(profile):
    the_plan = book.plan(ROOT, profile, [EXAMPLE], [])
    assert [c.stem for c in the_plan.chapters] == [EXAMPLE]
    assert the_plan.parameters[EXAMPLE] == {"profile": profile}


def test_the_example_imports_only_the_science_wing():
    notebook = jupytext.read(ROOT / "notebooks" / f"{EXAMPLE}.py")
    imported = set()
    for cell in notebook.cells:
        if cell.cell_type != "code":
            continue
        for node in ast.walk(ast.parse(cell.source)):
            if isinstance(node, ast.Import):
                imported |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom):
                imported.add(node.module or "")
    ours = {m for m in imported if m.split(".")[0] == "advmanifold"}
    assert ours, "the example uses no advmanifold module"
    assert all(m.startswith("advmanifold.science") for m in ours), ours


def test_autodoc_is_on_without_mocks_and_science_references_stay_checked():
    sphinx = config()["sphinx"]
    assert "sphinx.ext.autodoc" in sphinx["extra_extensions"]
    settings = sphinx["config"]
    assert "autodoc_mock_imports" not in settings  # the installed package is imported
    assert "nitpick_ignore" not in settings
    ignored = settings.get("nitpick_ignore_regex", [])
    # no ignore rule may hide a broken reference to a documented science name
    for kind, target in ignored:
        assert kind.startswith("py:"), (kind, target)
        for name in science_modules() | {"advmanifold.science.attacks.pgd"}:
            assert not re.fullmatch(target, name), (target, name)
