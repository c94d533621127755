"""A chapter's units are exactly the cache entries its run creates (smoke profile).

Each chapter with units is executed at ``smoke`` into an empty cache; the cache
entries afterwards must be the keys of ``registry.chapter_units(stem, "smoke",
params)``: no expensive work outside a unit (the Dask fan-out would miss it), no listed
unit the chapter does not use (the plan would overstate the work). The chapter's results
must count one cache miss per unit.
"""

import json
from pathlib import Path

import pytest

from advmanifold.book import runner as book
from advmanifold import chapters as registry

ROOT = Path(__file__).resolve().parents[2]
STEMS = [c.stem for c in book.chapters(ROOT) if c.stem in registry.CHAPTERS]


def test_every_chapter_module_is_importable_and_has_settings_and_units():
    assert STEMS, "no chapter with units in _toc.yml"
    for stem in STEMS:
        module = registry.chapter_module(stem)
        assert callable(getattr(module, "units", None)), f"{stem}: module lacks units()"
        assert callable(getattr(module, "settings", None)), (
            f"{stem}: module lacks settings()"
        )


@pytest.mark.parametrize("stem", STEMS)
def test_units_are_exactly_the_cache_entries_of_a_smoke_run(
    stem, tmp_path, monkeypatch
):
    cache_dir = tmp_path / "cache"
    monkeypatch.setenv("ADVMANIFOLD_CACHE", str(cache_dir))
    monkeypatch.setenv("ADVMANIFOLD_RESULTS", str(tmp_path / "results"))
    monkeypatch.setenv("ADVMANIFOLD_FIGURES", str(tmp_path / "figures"))
    the_plan = book.plan(ROOT, "smoke", [stem], [])
    params = the_plan.parameters[stem]
    listed = {u.key for u in registry.chapter_units(stem, "smoke", params)}
    assert listed, f"{stem} lists no units"
    book.execute(ROOT, the_plan, tmp_path / "site")
    created = {p.stem for p in cache_dir.glob("*.json")}
    assert created == listed, (
        f"{stem}: created but not listed {sorted(created - listed)}; "
        f"listed but not created {sorted(listed - created)}"
    )
    record = json.loads((tmp_path / "results" / f"{stem}.json").read_text())
    assert record["cache_misses"] == len(listed)
