"""CITATION.cff: the keys CFF 1.2.0 requires, and facts it shares with the rest of the
repository (version and license of pyproject.toml, the repository the notebooks
install from, the two papers of book/references.bib). The schema itself is checked
by ``cffconvert --validate`` (CONTRIBUTING.md)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
REQUIRED = ("cff-version", "message", "title", "authors")
PAPERS = ("stutz2019disentangling", "geyer2023relationship")


@pytest.fixture(scope="module")
def citation() -> dict:
    return yaml.safe_load((ROOT / "CITATION.cff").read_text())


def project_field(name: str) -> str:
    """A string field of pyproject.toml's [project] table (no TOML reader needed on
    Python 3.10)."""
    text = (ROOT / "pyproject.toml").read_text()
    table = re.search(r"^\[project\]\n(.*?)(?=^\[|\Z)", text, re.M | re.S)
    assert table, "pyproject.toml has no [project] table"
    found = re.search(rf'^{name}\s*=\s*"([^"]+)"', table.group(1), re.M)
    assert found, f"pyproject.toml's [project] has no {name}"
    return found.group(1)


def bib_entry(key: str) -> dict[str, str]:
    """The fields of one entry of book/references.bib (one field per line)."""
    text = (ROOT / "book" / "references.bib").read_text()
    entry = re.search(rf"@\w+\{{{key},\n(.*?)\n\}}", text, re.S)
    assert entry, f"{key} not in book/references.bib"
    return dict(re.findall(r"^\s*(\w+)\s*=\s*\{(.*)\},?$", entry.group(1), re.M))


def test_the_keys_cff_requires_are_there(citation):
    missing = [k for k in REQUIRED if not citation.get(k)]
    assert not missing, f"CITATION.cff lacks {missing}"
    assert citation["cff-version"] == "1.2.0"
    for author in citation["authors"]:
        assert author.get("name") or author.get("family-names"), author


def test_version_and_license_are_pyprojects(citation):
    assert str(citation["version"]) == project_field("version")
    assert citation["license"] == project_field("license")


def test_repository_is_the_one_the_notebooks_install_from(citation):
    source = (ROOT / "notebooks" / "01_fonts.py").read_text()
    found = re.search(r'"git\+(https://github\.com/[^"]+?)(?:\.git)?"', source)
    assert found, "no git+https install URL in notebooks/01_fonts.py"
    assert citation["repository-code"] == found.group(1)


@pytest.mark.parametrize("key", PAPERS)
def test_references_are_the_two_papers_of_the_bibliography(citation, key):
    bib = bib_entry(key)
    cited = {r["title"]: r for r in citation.get("references", [])}
    assert bib["title"] in cited, f"{key}: {bib['title']!r} not under references"
    reference = cited[bib["title"]]
    assert reference["year"] == int(bib["year"])
    family = [a["family-names"] for a in reference["authors"]]
    assert family == [name.split()[-1] for name in bib["author"].split(" and ")]
