"""Settings declared once (advmanifold.book.profiles): kinds of values, the checks of
a declaration against its table, and errors that name the setting and its values."""

import pytest

from advmanifold.book import profiles
from advmanifold.book.profiles import (
    Rule,
    Setting,
    SettingError,
    Settings,
    flag,
    integer,
    integers,
    number,
    numbers,
    one_of,
    optional,
)


def table(**values):
    """The same values in every profile, ``epochs`` growing with the profile."""
    return {p: {**values, "epochs": i + 1} for i, p in enumerate(profiles.PROFILES)}


def declared(**extra):
    return Settings(
        table(n=None, mode="a", lr=0.1, sizes=[2, 1], **extra),
        Setting("epochs", integer(1), overridable=True),
        Setting("n", optional(integer(1, 100)), overridable=True),
        Setting("mode", one_of("a", "b")),
        Setting("lr", number(gt=0, le=1)),
        Setting("sizes", integers(1, as_tuple=True)),
        *(Setting(k, number()) for k in extra),
    )


@pytest.mark.parametrize(
    ("kind", "good", "converted"),
    [
        (integer(1), 3.0, 3),
        (integer(0, 5), 0, 0),
        (optional(integer(1)), None, None),
        (number(gt=0), 2, 2),
        (one_of("x", "y"), "y", "y"),
        (flag(), False, False),
        (integers(1, as_tuple=True), [3, 1], (3, 1)),
        (integers(1), (3, 1), [3, 1]),
        (numbers(gt=0, sort=True), [2, 0.5, 2], [0.5, 2.0]),
        (numbers(ge=0), [0, 1], [0, 1]),
    ],
)
def test_kinds_take_their_values(kind, good, converted):
    assert kind.check("x", good) == converted


@pytest.mark.parametrize(
    ("kind", "bad", "allowed"),
    [
        (integer(1), 0, "an integer >= 1"),
        (integer(1), 2.5, "an integer >= 1"),
        (integer(1), True, "an integer >= 1"),
        (integer(1), "3", "an integer >= 1"),
        (integer(1, 9), 10, "an integer in [1, 9]"),
        (optional(integer(1)), 0, "None or an integer >= 1"),
        (number(gt=0), 0, "a number > 0"),
        (number(ge=0, lt=1), 1, "a number in [0, 1)"),
        (number(gt=0), float("nan"), "a number > 0"),
        (one_of("x", "y"), "z", "one of 'x', 'y'"),
        (flag(), 1, "True or False"),
        (integers(1), [], "a non-empty list of integers >= 1"),
        (integers(1), "12", "a non-empty list of integers >= 1"),
        (numbers(gt=0), [1, -1], "a non-empty list of numbers > 0"),
        (
            numbers(ge=0, also=("holding 0", lambda v: 0 in v)),
            [1.0],
            "a non-empty list of numbers >= 0, holding 0",
        ),
    ],
)
def test_bad_values_name_the_setting_and_its_values(kind, bad, allowed):
    assert kind.allowed == allowed
    with pytest.raises(SettingError) as err:
        kind.check("width", bad)
    assert str(err.value) == f"width must be {allowed}, got {bad!r}"
    assert (err.value.name, err.value.allowed) == ("width", allowed)


def test_settings_select_a_profile_with_checked_overrides():
    settings = declared()
    s = settings("paper", n=7, mode=None)
    assert (s.profile, s.epochs, s.n, s.mode, s.sizes) == ("paper", 3, 7, "a", (2, 1))
    assert settings.parameters == ("epochs", "n")
    assert settings.allowed("n") == "None or an integer in [1, 100]"
    with pytest.raises(SettingError) as err:
        settings("smoke", n=101)
    assert str(err.value) == "n must be None or an integer in [1, 100], got 101"
    with pytest.raises(SettingError, match="mode must be one of 'a', 'b'"):
        settings("smoke", mode="c")  # not a notebook parameter, still checked
    with pytest.raises(ValueError, match=r"unknown setting\(s\) \['width'\]"):
        settings("smoke", width=3)
    with pytest.raises(ValueError, match="profile must be one of"):
        settings("huge")


def test_notebook_parameters_reach_only_overridable_settings():
    settings = declared()
    params = {"epochs": 9, "mode": "b", "seed": 4, "n": None}
    s = settings.from_params("quick", params)
    assert (s.epochs, s.mode, s.n) == (9, "a", None)  # mode is not a parameter
    with pytest.raises(SettingError, match="epochs must be an integer >= 1, got 0"):
        settings.from_params("quick", {"epochs": 0})


def test_a_declaration_must_cover_its_table_with_valid_values():
    with pytest.raises(ValueError, match=r"\['extra'\] of the table are not declared"):
        Settings(table(extra=1), Setting("epochs", integer(1)))
    with pytest.raises(ValueError, match=r"declared settings \['gone'\] are in no"):
        Settings(table(), Setting("epochs", integer(1)), Setting("gone", flag()))
    with pytest.raises(SettingError, match="epochs must be an integer >= 2"):
        Settings(table(), Setting("epochs", integer(2)))  # smoke's 1 is not valid
    with pytest.raises(ValueError, match="declared twice"):
        Settings(table(), Setting("epochs", integer(1)), Setting("epochs", flag()))
    with pytest.raises(ValueError, match="lacks profiles"):
        Settings({"smoke": {}}, Setting("epochs", integer(1)))


def test_a_profile_may_leave_a_setting_out():
    rows = table(warmup=1)
    del rows["smoke"]["warmup"]
    settings = Settings(
        rows, Setting("epochs", integer(1)), Setting("warmup", integer(0))
    )
    assert not hasattr(settings("smoke"), "warmup")
    assert settings("smoke", warmup=2).warmup == 2
    assert settings("paper").warmup == 1


def test_a_shorthand_sets_every_setting_it_names_and_rules_relate_settings():
    settings = Settings(
        table(a_rounds=1, b_rounds=2, low=0.1, high=1.0),
        Setting("epochs", integer(1)),
        Setting("a_rounds", integer(1)),
        Setting("b_rounds", integer(1)),
        Setting(
            "rounds",
            optional(integer(1)),
            overridable=True,
            sets=("a_rounds", "b_rounds"),
        ),
        Setting("low", number(gt=0)),
        Setting("high", number(gt=0)),
        rules=[Rule("high", "a number > low", lambda s: s.high > s.low)],
    )
    s = settings.from_params("smoke", {"rounds": 4})
    assert (s.a_rounds, s.b_rounds) == (4, 4) and not hasattr(s, "rounds")
    assert settings("smoke", rounds=4, b_rounds=5).b_rounds == 5  # the named one wins
    with pytest.raises(SettingError, match="rounds must be None or an integer >= 1"):
        settings("smoke", rounds=0)
    with pytest.raises(SettingError, match="high must be a number > low, got 0.05"):
        settings("smoke", high=0.05)
    with pytest.raises(ValueError, match="sets undeclared settings"):
        Settings(
            table(),
            Setting("epochs", integer(1)),
            Setting("all", integer(1), sets=("nothing",)),
        )
