"""Chapters run beside the fan-out: each waits for its own units only."""

import os
import threading
from types import SimpleNamespace

import pytest

from advmanifold.book.fanout import FanOutReport
from advmanifold.book.overlap import FanOutInBackground
from advmanifold.book.toc import BookError


class Scripted:
    """A fake fan-out that ends the units one by one when the test says so."""

    def __init__(self, keys, failing=()):
        self.keys, self.failing = list(keys), dict(failing)
        self.go = {k: threading.Event() for k in self.keys}

    def __call__(self, on_done):
        report = FanOutReport()
        for key in self.keys:
            self.go[key].wait(5)
            if key in self.failing:
                unit = SimpleNamespace(
                    key=key, chapter=self.failing[key], describe=lambda k=key: k
                )
                report.failed.append((unit, "diverged"))
            else:
                report.built.append(key)
            on_done(key)
        return report


def test_a_chapter_starts_when_its_own_units_are_built():
    fake = Scripted(["a1", "b1", "b2"])
    bg = FanOutInBackground({"A": {"a1"}, "B": {"b1", "b2"}, "C": set()}, fake)
    bg.wait("C")  # nothing to build: no wait
    fake.go["a1"].set()
    bg.wait("A")
    assert bg.running  # B's units are not built yet
    fake.go["b1"].set()
    fake.go["b2"].set()
    bg.wait("B")
    assert bg.finish().built == ["a1", "b1", "b2"] and not bg.running
    assert bg.seconds is not None and bg.seconds >= 0


def test_a_failed_unit_stops_only_the_chapters_that_need_it(capsys):
    fake = Scripted(["a1", "b1"], failing={"b1": "B"})
    bg = FanOutInBackground({"A": {"a1"}, "B": {"b1"}}, fake)
    for key in fake.go:
        fake.go[key].set()
    bg.wait("A")
    with pytest.raises(BookError):
        bg.wait("B")
    said = capsys.readouterr().err  # a BookError prints its message
    assert "unit failed: b1" in said and "B needs it" in said
    with pytest.raises(BookError):
        bg.finish()
    assert "fix the failing ones" in capsys.readouterr().err


def test_a_chapter_that_runs_alone_waits_for_every_unit():
    fake = Scripted(["a1", "b1"])
    bg = FanOutInBackground({"A": {"a1"}, "Z": set()}, fake)
    done = threading.Event()
    waiter = threading.Thread(target=lambda: (bg.wait("Z", whole=True), done.set()))
    waiter.start()
    fake.go["a1"].set()
    assert not done.wait(0.2)  # b1 is still being built
    fake.go["b1"].set()
    assert done.wait(5)
    waiter.join()


def test_kernels_started_during_the_fan_out_get_one_thread(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    fake = Scripted(["a1"])
    bg = FanOutInBackground({"A": {"a1"}}, fake)
    with bg.kernel_environment():
        assert os.environ["OMP_NUM_THREADS"] == "1"
    assert "OMP_NUM_THREADS" not in os.environ
    fake.go["a1"].set()
    bg.finish()
    with bg.kernel_environment():  # the fan-out is over: every core again
        assert "OMP_NUM_THREADS" not in os.environ


def test_an_error_of_the_fan_out_itself_reaches_the_waiting_chapter():
    def broken(on_done):
        raise RuntimeError("no scheduler")

    bg = FanOutInBackground({"A": {"a1"}}, broken)
    with pytest.raises(RuntimeError, match="no scheduler"):
        bg.wait("A")
