"""Run profiles shared by every notebook, and the chapters' settings, declared once.

``smoke`` exists for tests and CI (minutes for the whole book), ``quick`` is the
default book build on a laptop CPU, ``paper`` uses the papers' settings.

Each chapter module keeps a table of its settings per profile and declares every
setting once, as a :class:`Setting`: its name, the values it takes (a :class:`Kind`,
made by :func:`integer`, :func:`number`, :func:`one_of`, :func:`flag`,
:func:`integers`, :func:`numbers` or :func:`optional`) and whether a notebook parameter
of the same name may override it. The chapter's ``settings`` is a :class:`Settings`:

- ``settings(profile, **overrides)`` → the profile's settings with every non-None
  override applied, each value checked here, in this one place; a bad value raises
  :class:`SettingError`, which names the setting and the values it takes;
- ``settings.from_params(profile, params)`` → the same for the overrides that the
  notebook parameters ``params`` give (the names in ``settings.parameters``): the one
  way notebook parameters reach settings, for the notebook, the chapter's units and
  the runner's check before anything runs.

>>> table = {p: {"epochs": i + 1} for i, p in enumerate(PROFILES)}
>>> settings = Settings(table, Setting("epochs", integer(1), overridable=True))
>>> settings.from_params("quick", {"epochs": None, "seed": 3}).epochs
2
>>> settings("quick", epochs=0)
Traceback (most recent call last):
...
advmanifold.book.profiles.SettingError: epochs must be an integer >= 1, got 0
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from numbers import Integral, Real
from types import SimpleNamespace
from typing import Any, Callable, Iterable, Mapping

from ..science import checks

PROFILES = ("smoke", "quick", "paper")


def seeds(n_seeds: int, seed: int = 0) -> list[int]:
    """The training seeds ``seed, seed + 1, …, seed + n_seeds − 1``."""
    checks.integer("n_seeds", n_seeds, minimum=1)
    checks.integer("seed", seed)
    return list(range(int(seed), int(seed) + int(n_seeds)))


def check_profile(profile: str) -> str:
    if profile not in PROFILES:
        raise ValueError(f"profile must be one of {PROFILES}, got {profile!r}")
    return profile


# ------------------------------------------------------------------ kinds of values


class SettingError(ValueError):
    """A setting (or the notebook parameter of that name) given a value it does not
    take; ``name``, ``allowed`` (the values it takes, in words) and ``value``."""

    def __init__(self, name: str, allowed: str, value: Any):
        self.name, self.allowed, self.value = name, allowed, value
        super().__init__(f"{name} must be {allowed}, got {value!r}")


@dataclass(frozen=True)
class Kind:
    """The values a setting takes: ``allowed`` says which in words (errors quote it);
    ``convert`` returns a value as the chapter uses it, or raises ``ValueError`` or
    ``TypeError``."""

    allowed: str
    convert: Callable[[Any], Any]

    def check(self, name: str, value: Any) -> Any:
        """``value`` as the chapter uses it, or a :class:`SettingError` on ``name``."""
        try:
            return self.convert(value)
        except (TypeError, ValueError, OverflowError):
            raise SettingError(name, self.allowed, value) from None


def _whole(value: Any) -> int:
    """An int, a NumPy integer or a float without fraction (``3.0`` from YAML) as int;
    anything else (booleans, text, ``2.5``) is an error."""
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(value)
    if isinstance(value, Integral):
        return int(value)
    if not math.isfinite(value) or int(value) != value:
        raise ValueError(value)
    return int(value)


def _real(value: Any) -> Real:
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(value)
    if not math.isfinite(value):
        raise ValueError(value)
    return value


def _range(noun: str, gt=None, ge=None, lt=None, le=None) -> str:
    """``noun`` and its bounds in words: "a number > 0", "an integer in [1, 10]"."""
    low = (gt, "(", ">") if gt is not None else (ge, "[", ">=")
    high = (lt, ")", "<") if lt is not None else (le, "]", "<=")
    if low[0] is not None and high[0] is not None:
        return f"{noun} in {low[1]}{low[0]:g}, {high[0]:g}{high[1]}"
    if low[0] is not None:
        return f"{noun} {low[2]} {low[0]:g}"
    if high[0] is not None:
        return f"{noun} {high[2]} {high[0]:g}"
    return noun


def _within(value, gt=None, ge=None, lt=None, le=None):
    if (
        (gt is not None and not value > gt)
        or (ge is not None and not value >= ge)
        or (lt is not None and not value < lt)
        or (le is not None and not value <= le)
    ):
        raise ValueError(value)
    return value


def integer(low: int | None = 1, high: int | None = None) -> Kind:
    """A whole number in [``low``, ``high``] (None: no bound), as an int.

    >>> integer(1, 60_000).allowed
    'an integer in [1, 60000]'
    """
    noun = _range("an integer", ge=low, le=high)
    return Kind(noun, lambda v: _within(_whole(v), ge=low, le=high))


def number(gt=None, ge=None, lt=None, le=None) -> Kind:
    """A finite real number within the bounds given (``gt``: >, ``ge``: >=, ...),
    unchanged (so that 1 and 1.0 keep the cache keys they had).

    >>> number(gt=0, le=1).allowed
    'a number in (0, 1]'
    """
    bounds = dict(gt=gt, ge=ge, lt=lt, le=le)
    return Kind(_range("a number", **bounds), lambda v: _within(_real(v), **bounds))


def one_of(*values: Any) -> Kind:
    """One of ``values`` (compared with ``==``).

    >>> one_of("global", "per_class").allowed
    "one of 'global', 'per_class'"
    """

    def convert(value):
        if isinstance(value, bool) or value not in values:
            raise ValueError(value)
        return value

    return Kind("one of " + ", ".join(repr(v) for v in values), convert)


def flag() -> Kind:
    """``True`` or ``False``."""

    def convert(value):
        if not isinstance(value, bool):
            raise TypeError(value)
        return value

    return Kind("True or False", convert)


def optional(kind: Kind) -> Kind:
    """None, or a value of ``kind``.

    >>> optional(integer(1)).allowed
    'None or an integer >= 1'
    """
    return Kind(
        f"None or {kind.allowed}", lambda v: None if v is None else kind.convert(v)
    )


def _items(values: Any) -> list:
    if isinstance(values, (str, bytes, Mapping)) or not isinstance(values, Iterable):
        raise TypeError(values)
    found = list(values)
    if not found:
        raise ValueError(values)
    return found


def integers(low: int | None = 1, *, as_tuple: bool = False) -> Kind:
    """A non-empty list of whole numbers >= ``low``, as a list of ints (a tuple with
    ``as_tuple``).

    >>> integers(1).allowed
    'a non-empty list of integers >= 1'
    """

    def convert(values):
        found = [_within(_whole(v), ge=low) for v in _items(values)]
        return tuple(found) if as_tuple else found

    return Kind(_range("a non-empty list of integers", ge=low), convert)


def numbers(
    gt=None,
    ge=None,
    *,
    sort: bool = False,
    also: tuple[str, Callable[[list], bool]] | None = None,
) -> Kind:
    """A non-empty list of finite numbers within the bounds, unchanged; with ``sort``
    as floats, sorted, each once. ``also``: (words, test of the whole list) for a
    further condition, e.g. ``("holding 0", lambda v: 0 in v)``.

    >>> numbers(gt=0, sort=True).convert([2, 1, 2])
    [1.0, 2.0]
    """
    bounds = dict(gt=gt, ge=ge)

    def convert(values):
        found = [_within(_real(v), **bounds) for v in _items(values)]
        if sort:
            found = sorted({float(v) for v in found})
        if also is not None and not also[1](found):
            raise ValueError(values)
        return found

    noun = _range("a non-empty list of numbers", **bounds)
    return Kind(noun + (f", {also[0]}" if also else ""), convert)


# ------------------------------------------------------------- a chapter's settings


@dataclass(frozen=True)
class Setting:
    """One setting of a chapter: its ``name``, the values it takes (``kind``) and
    whether a notebook parameter of the same name may override it (``overridable``).

    A setting with ``sets`` is a shorthand, not in the table: given, it sets each of
    the settings it names to its value (``repeats`` sets every ``*_repeats``)."""

    name: str
    kind: Kind
    overridable: bool = False
    sets: tuple[str, ...] = ()


@dataclass(frozen=True)
class Rule:
    """A condition between settings: setting ``name`` must be ``allowed`` (words for
    the error), which ``holds(settings)`` tests, e.g. ``t_max`` above ``t_min``."""

    name: str
    allowed: str
    holds: Callable[[SimpleNamespace], bool]


class Settings:
    """A chapter's settings: its ``table`` (profile → name → value) and the
    declaration of each setting (:class:`Setting`, :class:`Rule`).

    Every setting of the table must be declared, every declared one be in the table
    of some profile (a profile may leave one out: then its settings lack it), and
    every value of the table be one its setting takes: all checked here, when the
    chapter is imported.
    Calling it selects a profile's settings with overrides, checked (module doc)."""

    def __init__(
        self,
        table: Mapping[str, Mapping[str, Any]],
        *declared: Setting,
        rules: Iterable[Rule] = (),
    ):
        missing = [p for p in PROFILES if p not in table]
        if missing:
            raise ValueError(f"settings table lacks profiles {missing}")
        self.table = table
        self.declared = {s.name: s for s in declared}
        self.rules = tuple(rules)
        if len(self.declared) != len(declared):
            raise ValueError("a setting is declared twice")
        names = {s.name for s in declared if not s.sets}
        undeclared = sorted(set().union(*map(set, table.values())) - names)
        if undeclared:
            raise ValueError(f"settings {undeclared} of the table are not declared")
        unused = sorted(names - set().union(*(set(table[p]) for p in PROFILES)))
        if unused:
            raise ValueError(f"declared settings {unused} are in no profile's table")
        for s in declared:
            unknown = set(s.sets) - names
            if unknown:
                raise ValueError(f"{s.name} sets undeclared settings {sorted(unknown)}")
        for profile in PROFILES:  # every value of the table is a valid one
            self(profile)

    @property
    def parameters(self) -> tuple[str, ...]:
        """The settings a notebook parameter of the same name may override."""
        return tuple(s.name for s in self.declared.values() if s.overridable)

    def allowed(self, name: str) -> str:
        """The values setting ``name`` takes, in words."""
        return self.declared[name].kind.allowed

    def __call__(self, profile: str, **overrides: Any) -> SimpleNamespace:
        """The settings of ``profile`` with every non-None override applied, each
        value checked (:class:`SettingError` names the setting and what it takes)."""
        check_profile(profile)
        given = {k: v for k, v in overrides.items() if v is not None}
        unknown = sorted(set(given) - set(self.declared))
        if unknown:
            raise ValueError(
                f"unknown setting(s) {unknown}; valid: {sorted(self.declared)}"
            )
        values = dict(self.table[profile])
        for name, value in given.items():
            setting = self.declared[name]
            for target in setting.sets:
                values[target] = setting.kind.check(name, value)
        values.update({k: v for k, v in given.items() if not self.declared[k].sets})
        checked = {k: self.declared[k].kind.check(k, v) for k, v in values.items()}
        found = SimpleNamespace(profile=profile, **checked)
        for rule in self.rules:
            if not rule.holds(found):
                raise SettingError(rule.name, rule.allowed, getattr(found, rule.name))
        return found

    def from_params(
        self, profile: str, params: Mapping[str, Any] | None = None
    ) -> SimpleNamespace:
        """The settings of ``profile`` with the overrides that the notebook parameters
        ``params`` give: those named in :attr:`parameters` (others are ignored)."""
        params = params or {}
        return self(profile, **{k: params.get(k) for k in self.parameters})

    def describe(self) -> list[dict[str, Any]]:
        """One row per setting: name, the values it takes, overridable or not."""
        return [
            {"setting": s.name, "allowed": s.kind.allowed, "overridable": s.overridable}
            for s in self.declared.values()
        ]
