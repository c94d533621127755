"""Every chapter declares its settings once (advmanifold.book.profiles.Settings): each
profile's settings are valid, every setting a notebook may override is a parameter of
that notebook, and a bad value (in the notebook or from the runner's ``-p``) stops
before any work with an error naming the parameter and the values it takes."""

import ast
from pathlib import Path

import pytest

from advmanifold.book import runner as book
from advmanifold.book.profiles import PROFILES, Settings, SettingError
from advmanifold.chapters import CHAPTERS, registry

ROOT = Path(__file__).resolve().parents[2]
#: (chapter, overridable setting) for every chapter
OVERRIDABLE = [
    (stem, name)
    for stem, module in CHAPTERS.items()
    for name in module.settings.parameters
]


@pytest.fixture(scope="module")
def notebook_parameters() -> dict[str, dict]:
    """Each chapter's parameters cell: name → default (a Python value)."""
    return {
        c.stem: {k: ast.literal_eval(v) for k, v in c.parameters().items()}
        for c in book.chapters(ROOT)
        if c.stem in CHAPTERS
    }


def test_every_chapter_declares_its_settings_and_what_a_notebook_may_override():
    assert set(CHAPTERS) == {
        "01_fonts", "02_mnist", "03_pmnist", "04_bridge", "06_generalization",
        "07_dimpled", "08_init_scale", "90_benchmarks",
    }
    for stem, module in CHAPTERS.items():
        assert isinstance(module.settings, Settings), stem
        assert module.settings.parameters, f"{stem}: no setting a notebook may set"
        for profile in PROFILES:
            s = module.settings(profile)
            assert s.profile == profile
            assert set(vars(s)) - {"profile"} <= set(module.settings.declared)


def test_the_notebooks_declare_exactly_their_overridable_settings(notebook_parameters):
    assert set(notebook_parameters) == set(CHAPTERS)
    for stem, params in notebook_parameters.items():
        settings = CHAPTERS[stem].settings
        # each setting a notebook may override is a parameter the runner can set ...
        assert set(settings.parameters) <= set(params), stem
        # ... and no parameter named like a setting is silently ignored
        named_like = set(params) & set(settings.declared)
        assert named_like == set(settings.parameters), stem
        # the parameters' defaults leave the profile's settings as they are
        for profile in PROFILES:
            assert settings.from_params(profile, params) == settings(profile), stem


@pytest.mark.parametrize(("stem", "name"), OVERRIDABLE)
def test_a_bad_parameter_names_itself_and_the_values_it_takes(stem, name):
    settings = CHAPTERS[stem].settings
    allowed = settings.allowed(name)
    with pytest.raises(SettingError) as err:
        settings.from_params("smoke", {name: "nonsense"})
    assert str(err.value) == f"{name} must be {allowed}, got 'nonsense'"
    # the chapter's units check the same way, before building anything
    with pytest.raises(SettingError, match=f"^{name} must be"):
        CHAPTERS[stem].units("smoke", {name: "nonsense"})


@pytest.mark.parametrize(
    ("stem", "assignment", "message"),
    [
        ("01_fonts", "n_fonts=0", "n_fonts must be None or an integer >= 1, got 0"),
        ("02_mnist", "attempts=1.5", "attempts must be an integer >= 1, got 1.5"),
        ("03_pmnist", "pca_mode=local", "pca_mode must be one of 'global', 'per_cl"),
        ("04_bridge", "n_verify=-1", "n_verify must be an integer >= 1, got -1"),
        ("06_generalization", "sizes=[]", "sizes must be a non-empty list of integers"),
        ("06_generalization", "order=shuffled", "order must be one of 'iid', 'orig"),
        ("07_dimpled", "gen_n=0", "gen_n must be an integer >= 1, got 0"),
        ("08_init_scale", "n_train=70000", "n_train must be None or an integer in [1,"),
        ("90_benchmarks", "repeats=0", "repeats must be None or an integer >= 1"),
    ],
)
def test_the_runner_stops_on_a_bad_value_before_any_work(
    stem, assignment, message, capsys
):
    with pytest.raises(SystemExit) as err:
        book.plan(ROOT, "smoke", [stem], [assignment], registry().check)
    assert err.value.code == 2
    assert f"error: notebook {stem}: parameter {message}" in capsys.readouterr().err
    # without the registry's check the plan takes the value (the notebook would fail)
    assert book.plan(ROOT, "smoke", [stem], [assignment]).chapters
