"""Argument checks shared by the science modules: a bad value is named, with what it
may be, before any work starts."""

from __future__ import annotations

from typing import Any


def integer(name: str, value: Any, minimum: int | None = None) -> int:
    """``value`` as an ``int`` if it is a whole number (not a bool) and at least
    ``minimum`` (None: any); else a :class:`ValueError` naming ``name``."""
    whole = not isinstance(value, bool)
    try:
        whole = whole and int(value) == value
    except (TypeError, ValueError):
        whole = False
    if not whole or (minimum is not None and value < minimum):
        allowed = "an integer" + (f" >= {minimum}" if minimum is not None else "")
        raise ValueError(f"{name} must be {allowed}, got {value!r}")
    return int(value)
