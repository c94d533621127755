"""Tests see the same fonts on every machine: the chapters' default font source is the
system folders (``"google"`` only where a test asks for it), whether or not
``make fonts`` installed the Google fonts here."""

import pytest


@pytest.fixture(autouse=True)
def system_font_source(monkeypatch):
    monkeypatch.setenv("ADVMANIFOLD_FONT_SOURCE", "system")
