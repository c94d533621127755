"""The shared argument check names the parameter and what it may be."""

import pytest

from advmanifold.science import checks


@pytest.mark.parametrize("value", [0, 3, 3.0])
def test_whole_numbers_pass_as_int(value):
    assert checks.integer("n", value) == int(value)
    assert isinstance(checks.integer("n", value, minimum=0), int)


@pytest.mark.parametrize(
    ("value", "minimum", "message"),
    [
        (True, None, "n must be an integer, got True"),
        (1.5, 1, "n must be an integer >= 1, got 1.5"),
        ("3", 1, "n must be an integer >= 1, got '3'"),
        (None, None, "n must be an integer, got None"),
        (1, 2, "n must be an integer >= 2, got 1"),
    ],
)
def test_bad_values_are_named_with_what_is_allowed(value, minimum, message):
    with pytest.raises(ValueError, match=message.replace("'", ".")):
        checks.integer("n", value, minimum=minimum)
