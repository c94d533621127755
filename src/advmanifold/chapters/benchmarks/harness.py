"""The one timing harness of the benchmarks: what a piece returns, the loops that
time it, and the fresh processes some pieces run in.

Loops:

- :func:`interleaved`: candidates compared with each other, one call each per round in
  a rotating order, so that load from other processes hits both sides of a ratio alike
  (:func:`ratios` per round, :func:`summary` as median, min and max);
- :func:`per_call_times` (and :func:`median_time`): one callable alone, each round of
  as many calls as fill a target time (or a fixed number of calls);
- :func:`steps_per_second`: as many calls as fit in a number of seconds;
- :func:`windowed_rates`: a fixed number of calls, the rate measured per window.

Fresh processes (:func:`run_fresh`, :func:`start_fresh`) run a program of
:mod:`advmanifold.chapters.benchmarks.fresh` with ``python -m``: arguments go in as
JSON, the result comes back as the JSON of the last line of its output.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from typing import Any, Callable, Mapping

#: what each benchmark returns: flat metrics and rows of raw timings
Timed = tuple[dict[str, Any], list[dict[str, Any]]]

#: the module whose programs run in fresh processes (``python -m``)
FRESH_MODULE = "advmanifold.chapters.benchmarks.fresh"

#: the environment of a fresh process whose idle OpenMP threads sleep instead of
#: spinning (libgomp reads it once, when torch loads it)
PASSIVE = {"OMP_WAIT_POLICY": "PASSIVE"}


# ---------------------------------------- loops


def interleaved(
    candidates: Mapping[str, Callable[[], Any]], *, repeats: int, warmup: int = 1
) -> dict[str, list[float]]:
    """Wall-clock seconds of each candidate over ``repeats`` rounds after ``warmup``.

    Within a round every candidate runs once; the order rotates from round to round so
    that no candidate always runs first (or right after another)."""
    if int(repeats) != repeats or repeats < 1:
        raise ValueError(f"repeats must be an integer >= 1, got {repeats!r}")
    if int(warmup) != warmup or warmup < 0:
        raise ValueError(f"warmup must be an integer >= 0, got {warmup!r}")
    names = list(candidates)
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(warmup + repeats):
        order = names[r % len(names) :] + names[: r % len(names)]
        for name in order:
            start = time.perf_counter()
            candidates[name]()
            elapsed = time.perf_counter() - start
            if r >= warmup:
                times[name].append(elapsed)
    return times


def per_call_times(
    fn: Callable[[], Any],
    repeats: int,
    target_s: float = 0.05,
    *,
    inner: int | None = None,
    warmup: bool = True,
) -> list[float]:
    """Seconds per call of ``fn`` over ``repeats`` rounds, each of ``inner`` calls or,
    by default, of as many calls as fill about ``target_s`` (judged from a first
    call). The first call, a warm-up, is never counted; without ``warmup`` (for a
    ``fn`` whose operations have just run on the same shapes) there is none, and
    ``inner`` must be given."""
    if not warmup and inner is None:
        raise ValueError("per_call_times without a warm-up needs inner")
    if warmup:
        start = time.perf_counter()
        fn()
        first = time.perf_counter() - start
        if inner is None:
            inner = max(1, min(1000, round(target_s / max(first, 1e-6))))
    out = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(inner):
            fn()
        out.append((time.perf_counter() - start) / inner)
    return out


def median_time(fn: Callable[[], Any], repeats: int, *, warmup: bool = True) -> float:
    """The median of :func:`per_call_times` (rounds of about 50 ms; without
    ``warmup``, rounds of one call and no warm-up call)."""
    if not warmup:
        return statistics.median(per_call_times(fn, repeats, inner=1, warmup=False))
    return statistics.median(per_call_times(fn, repeats))


def steps_per_second(fn: Callable[[], Any], seconds: float) -> float:
    """Calls per second of ``fn`` over about ``seconds`` (after an untimed call)."""
    fn()
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        fn()
        n += 1
    return n / (time.perf_counter() - start)


def windowed_rates(
    fn: Callable[[], Any],
    steps: int,
    window: int,
    probe: Callable[[], dict[str, Any]] = dict,
) -> list[dict[str, Any]]:
    """``steps`` calls of ``fn``; after every ``window`` calls a row of the step
    number, the calls per second over the window and what ``probe`` returns then
    (its time not counted in the next window)."""
    rows, start = [], time.perf_counter()
    for step in range(1, steps + 1):
        fn()
        if step % window == 0:
            rate = window / (time.perf_counter() - start)
            rows.append({"step": step, "steps_per_s": rate, **probe()})
            start = time.perf_counter()
    return rows


# ---------------------------------------- summaries


def summary(values: list[float], prefix: str) -> dict[str, float]:
    """``{prefix: median, prefix_min: min, prefix_max: max}``."""
    return {
        prefix: statistics.median(values),
        f"{prefix}_min": min(values),
        f"{prefix}_max": max(values),
    }


def ratios(numerator: list[float], denominator: list[float]) -> list[float]:
    """Per-round ratios of two interleaved timing lists."""
    return [a / b for a, b in zip(numerator, denominator)]


def timing_rows(piece: str, times: Mapping[str, list[float]]) -> list[dict[str, Any]]:
    """One row per candidate and round: piece, candidate, round, seconds."""
    return [
        {"piece": piece, "candidate": name, "round": i, "seconds": t}
        for name, values in times.items()
        for i, t in enumerate(values)
    ]


# ---------------------------------------- fresh processes


def fresh_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """This process's environment without an OpenMP wait policy, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    return {**env, **(extra or {})}


def _command(program: str, args: Mapping[str, Any]) -> list[str]:
    return [sys.executable, "-m", FRESH_MODULE, program, json.dumps(dict(args))]


def run_fresh(
    program: str,
    args: Mapping[str, Any],
    *,
    env: Mapping[str, str] | None = None,
    timeout: float | None = None,
) -> subprocess.CompletedProcess:
    """Run ``program`` of :mod:`~advmanifold.chapters.benchmarks.fresh` with ``args``
    in a fresh process (environment ``env``, default this one's) and wait for it, at
    most ``timeout`` seconds (then ``subprocess.TimeoutExpired``); its output is
    captured, the result is :func:`last_json` of its stdout."""
    return subprocess.run(
        _command(program, args),
        capture_output=True,
        text=True,
        check=False,
        env=None if env is None else dict(env),
        timeout=timeout,
    )


def start_fresh(
    program: str, args: Mapping[str, Any], *, env: Mapping[str, str] | None = None
) -> subprocess.Popen:
    """Start ``program`` as :func:`run_fresh` does, without waiting (stdout piped)."""
    return subprocess.Popen(
        _command(program, args),
        stdout=subprocess.PIPE,
        text=True,
        env=None if env is None else dict(env),
    )


def last_json(stdout: str) -> Any:
    """The result a fresh program printed: the JSON of its last line of output."""
    return json.loads(stdout.strip().splitlines()[-1])
