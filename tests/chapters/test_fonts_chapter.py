"""The FONTS chapter module: settings, units, fallback warning, and a chapter run on
three fonts (the fallback acceptance check of issue 10)."""

import json
import shutil
from pathlib import Path

import pytest
import torch

from advmanifold.book import runner as book, cache
from advmanifold import chapters as registry
from advmanifold.science import glyphs, models
from advmanifold.chapters import fonts, fonts_record
from advmanifold.book.results import Results

ROOT = Path(__file__).resolve().parents[2]
THREE = ("DejaVuSans.ttf", "DejaVuSerif.ttf", "DejaVuSansMono.ttf")


@pytest.fixture
def three_fonts(tmp_path, monkeypatch):
    """A folder with three of matplotlib's bundled fonts, and an empty cache."""
    folder = tmp_path / "fonts"
    folder.mkdir()
    for name in THREE:
        shutil.copy(glyphs.matplotlib_font_dir() / name, folder / name)
    monkeypatch.setenv("ADVMANIFOLD_CACHE", str(tmp_path / "cache"))
    return folder


def test_settings_take_overrides_and_reject_bad_values():
    assert fonts.settings("quick").n_fonts == 500
    assert fonts.settings("paper").n_fonts is None  # every legible face
    assert fonts.settings("paper").train_per_prototype == 96  # the paper's 96 + 16
    assert fonts.settings("smoke", epochs=3, n_fonts=None).epochs == 3
    with pytest.raises(ValueError, match="profile"):
        fonts.settings("huge")
    with pytest.raises(ValueError, match="unknown setting"):
        fonts.settings("smoke", width=3)
    with pytest.raises(ValueError, match="n_fonts"):
        fonts.settings("smoke", n_fonts=0)
    with pytest.raises(ValueError, match="font_dirs"):
        fonts.prototypes_unit("/usr/share/fonts")


def test_units_are_listed_without_building_and_configs_hold_dependency_keys(
    three_fonts,
):
    params = {"font_dirs": [str(three_fonts)], "seed": 0, "device": "cpu"}
    listed = registry.chapter_units("01_fonts", "smoke", params)
    names = ["fonts-prototypes", "fonts-convnet", "fonts-attacks", "fonts-distances"]
    assert [u.name for u in listed] == names
    protos, net, attack, search = listed
    assert attack.deps == (protos, net) and search.deps == (protos, attack)
    assert search.config["attacks"] == attack.key
    assert net.deps == (protos,) and net.config["prototypes"] == protos.key
    assert "device" not in net.config and all(u.estimate_s > 0 for u in listed)
    assert not any(u.is_cached() for u in listed)
    assert not list(Path(cache.paths.cache_dir()).glob("*.json"))  # nothing built
    # the prototypes unit is the cache entry of glyphs.load_prototypes
    files = glyphs.find_font_files([three_fonts])
    assert protos.config == glyphs.prototypes_config(files)
    # training settings change the classifier's key; attack settings do not
    again = {u.name: u.key for u in fonts.units("smoke", {**params, "n_attack": 5})}
    assert again["fonts-convnet"] == net.key
    assert again["fonts-attacks"] != attack.key
    assert again["fonts-distances"] != search.key
    other = {u.name: u.key for u in fonts.units("smoke", {**params, "epochs": 2})}
    assert other["fonts-convnet"] != net.key and other["fonts-prototypes"] == protos.key


def test_classifier_unit_does_not_depend_on_the_callers_random_state(three_fonts):
    S = fonts.settings("smoke", train_per_prototype=None)
    S.train_per_prototype, S.test_per_prototype = 2, 1
    unit = fonts.classifier_unit(S, seed=3, font_dirs=[three_fonts])
    torch.manual_seed(0)
    first = unit.build()
    torch.manual_seed(1)
    torch.rand(10)
    second = unit.build()
    assert first.keys() == second.keys()
    assert all(torch.equal(first[k], second[k]) for k in first)
    model = fonts.classifier(unit)
    assert not model.training and not any(p.requires_grad for p in model.parameters())


def test_attack_and_distance_units_keep_their_constraints_and_repeat(three_fonts):
    params = {"font_dirs": [str(three_fonts)], "seed": 0, "n_attack": 12}
    protos, net, attack, search = fonts.units("smoke", params)
    a = fonts.attacked(attack)
    assert 0 < len(a.index) == len(a.x) <= 12 and fonts.EPS == 0.3
    model = fonts.classifier(net)
    assert torch.equal(models.predict(model, a.x), a.y)  # only correct ones attacked
    # regular: ‖x̃ − x‖∞ ≤ ε in the pixel box; on the manifold: ‖θ̃ − θ‖∞ ≤ ε
    delta = (a.regular.adversarial - a.x).abs().amax(dim=(1, 2, 3))
    assert bool((delta <= fonts.EPS + 1e-6).all())
    assert 0 <= a.regular.adversarial.min() and a.regular.adversarial.max() <= 1
    step = (a.onmanifold.adversarial - a.theta).abs().amax(1)
    assert bool((step <= fonts.EPS + 1e-6).all())
    rates = (a.regular_success_rate_original, a.onmanifold_success_rate_original)
    assert all(0 <= r <= 1 for r in rates)
    # a second build with the same seed gives the same attacks
    again = attack.build()
    assert torch.equal(again["x_on"], a.x_on)
    assert torch.equal(again["regular"]["adversarial"], a.regular.adversarial)
    frame = fonts.distances(search)
    assert list(frame.columns)[:3] == ["distance", "delta_l2", "angle_deg"]
    assert (frame.set == "test").sum() == len(a.x)
    n_on, n_reg = int(a.onmanifold.success.sum()), int(a.regular.success.sum())
    assert (frame.set == "on-manifold adversarial").sum() == n_on
    assert (frame.set == "regular adversarial").sum() == n_reg
    # the true θ is one of the search's starts: never farther than ‖δ‖₂
    assert bool((frame.distance <= frame.delta_l2 + 1e-5).all())


def test_fallback_is_flagged_and_warned_only_below_what_the_profile_asks(
    three_fonts, tmp_path
):
    every = fonts.prototypes(fonts.prototypes_unit([three_fonts]))
    assert len(every) == 3
    cases = [("smoke", None, 1), ("smoke", 3, 0), ("paper", None, 1)]
    for profile, n_fonts, flag in cases:
        res = Results("01_fonts", profile=profile, seed=0, directory=tmp_path)
        S = fonts.settings(profile, n_fonts=n_fonts)
        manifest = fonts_record.record_fonts(res, every, S)
        assert len(manifest) == res.metrics["n_fonts"] == 3
        assert res.metrics["fonts_fallback"] == flag
        text = fonts_record.fallback_warning(3, fonts.fonts_wanted(S), profile)
        assert (text is None) == (flag == 0)
    text = fonts_record.fallback_warning(3, fonts.MIN_FONTS, "paper")
    assert text.startswith(":::{admonition}") and ":class: warning" in text
    assert "**3**" in text and f"**{fonts.MIN_FONTS}**" in text
    assert "debian-font-packages.txt" in text and "font_dirs" in text
    assert text.rstrip().endswith(":::")


def test_chapter_runs_on_three_fonts_warns_and_creates_exactly_its_units(
    three_fonts, tmp_path, monkeypatch
):
    """Smoke run with ``font_dirs`` = three fonts: the page opens with the warning box,
    the results flag the fallback, and the cache holds exactly the listed units."""
    monkeypatch.setenv("ADVMANIFOLD_RESULTS", str(tmp_path / "results"))
    monkeypatch.setenv("ADVMANIFOLD_FIGURES", str(tmp_path / "figures"))
    the_plan = book.plan(
        ROOT, "smoke", ["01_fonts"], [f"font_dirs={json.dumps([str(three_fonts)])}"]
    )
    params = the_plan.parameters["01_fonts"]
    assert params["font_dirs"] == [str(three_fonts)]
    listed = {u.key for u in registry.chapter_units("01_fonts", "smoke", params)}
    book.execute(ROOT, the_plan, tmp_path / "site")
    created = {p.stem for p in (tmp_path / "cache").glob("*.json")}
    assert created == listed
    record = json.loads((tmp_path / "results" / "01_fonts.json").read_text())
    assert record["fonts_fallback"] == 1 and record["n_fonts"] == 3
    assert record["n_fonts_wanted"] == 10 and record["cache_misses"] == len(listed)
    site = tmp_path / "site" / "notebooks" / "01_fonts.ipynb"
    executed = json.loads(site.read_text())
    markdown = [
        o["data"]["text/markdown"]
        for c in executed["cells"]
        for o in c.get("outputs", [])
        if "text/markdown" in o.get("data", {})
    ]
    warnings = [m for m in markdown if "".join(m).startswith(":::{admonition}")]
    assert len(warnings) == 1
    text = "".join(warnings[0])
    assert "**3**" in text and "**10**" in text
    # the page says which fonts it ran on: here the folders given, so the fallback
    assert any("**Source: the fonts installed here**" in "".join(m) for m in markdown)
    cells = executed["cells"]
    first = next(
        i
        for i, c in enumerate(cells)
        if any("text/markdown" in o.get("data", {}) for o in c.get("outputs", []))
    )
    sections = [
        i
        for i, c in enumerate(cells)
        if c["cell_type"] == "markdown" and "".join(c["source"]).startswith("## ")
    ]
    assert first < sections[0]  # the warning comes before the first section
