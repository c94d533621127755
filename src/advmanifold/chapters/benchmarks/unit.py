"""The generalization chapter's OnAdvTrain unit at N = 2,500 with the paper's
settings, before (attack views off, one thread, as main built it) and after (views
on: one thread; every core in fresh processes with spinning and with sleeping idle
OpenMP threads; a GPU if there is one): :func:`unit_time`.

:func:`unit_run` is the program of its fresh processes (:mod:`.fresh`)."""

from __future__ import annotations

import copy
import os
import subprocess
import time
from types import SimpleNamespace
from typing import Any

import torch

from ...science import compute, models
from .harness import PASSIVE, Timed, fresh_env, last_json, run_fresh
from .levers import attack_rate


class _OutOfTime(Exception):
    """Raised by a bounded objective when its time is up."""


def train_unit(
    device: str, method, data, decoder, s, seed, budget_s: float | None = None
) -> tuple[int, float]:
    """:func:`advmanifold.chapters.generalization.train_model` on ``device`` (data,
    decoder and model moved there; batches and attack starts still drawn on the CPU).
    With ``budget_s`` it stops at the first batch that starts after ``budget_s``
    seconds. Returns (batches trained, seconds they took)."""
    from dataclasses import replace

    from .. import generalization as G

    if device != "cpu":
        data = replace(data, **{k: getattr(data, k).to(device) for k in vars(data)})
        decoder = copy.deepcopy(decoder).to(device)
    done = [0, 0.0]

    def bounded(objective):
        def step(model, idx, y):
            elapsed = time.perf_counter() - start
            if budget_s is not None and done[0] and elapsed > budget_s:
                done[1] = elapsed
                raise _OutOfTime
            done[0] += 1
            return objective(model, idx, y)

        return step

    start = time.perf_counter()
    try:
        G.train_model(
            method, data, decoder, s, seed, progress=False, device=device, wrap=bounded
        )
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        done[1] = time.perf_counter() - start
    except _OutOfTime:
        pass
    return done[0], done[1]


def _warm_train_unit(
    device: str, method, data, decoder, s, seed, budget_s: float | None = None
) -> tuple[int, float]:
    """:func:`train_unit` after an untimed batch on ``device`` (lazy set-up). The
    warm-up batch attacks with one PGD step instead of ``s.train_steps``: the same
    operations on the same shapes set up what a first batch sets up (at one thread
    the batch after it costs what the batches after a full warm-up batch cost), at a
    fraction of a full batch's time, which at two threads on busy cores is seconds."""
    warm = SimpleNamespace(**{**vars(s), "train_steps": 1})
    train_unit(device, method, data, decoder, warm, seed, 0.0)  # warm-up batch
    return train_unit(device, method, data, decoder, s, seed, budget_s)


def _unit_inputs(
    epochs: int, n: int, seed: int, bundled_fonts: bool, train_steps: int = 40
):
    """Settings (paper, ``epochs``, ``train_steps``), decoder and training split."""
    from .. import fonts
    from .. import generalization as G
    from ...science import glyphs

    files = glyphs.matplotlib_font_files() if bundled_fonts else None
    proto = fonts.prototypes_unit(files=files)
    s = G.settings("paper", epochs=epochs, train_steps=train_steps)
    decoder = G.load_decoder(proto, s.n_fonts)
    return s, decoder, G.train_split(decoder, n, seed)


def unit_run(
    threads: int,
    epochs: int,
    n: int,
    seed: int,
    bundled_fonts: bool,
    method: str,
    budget_s: float | None,
    train_steps: int,
    attack_s: float | None = None,
) -> dict[str, Any]:
    """Program ``unit``: :func:`train_unit` with attack views at ``threads`` threads
    after an untimed batch; the batches trained and the seconds they took. With
    ``attack_s``, first (before the unit's inputs load) the attack steps per second at
    two threads over about ``attack_s`` seconds (:func:`~.levers.attack_rate`, one
    process with two threads of processes against threads)."""
    found = {}
    if attack_s is not None:
        found["attack_steps_per_s"] = attack_rate(2, attack_s)["steps_per_s"]
    compute.set_threads(threads)
    s, decoder, data = _unit_inputs(epochs, n, seed, bundled_fonts, train_steps)
    with models.attack_views(True):
        done, seconds = _warm_train_unit(
            "cpu", method, data, decoder, s, seed, budget_s
        )
    return {"batches": done, "seconds": seconds, **found}


def _unit_in_process(
    args: dict, env, limit_s: float | None, rates: dict[str, float], key: str
) -> tuple[int, float, bool]:
    """:func:`unit_run` at ``args["threads"]`` in a fresh process with ``env``;
    killed after ``limit_s``. Returns (batches, seconds, finished); the attack rate it
    measured first, if any, goes into ``rates[key]``."""
    try:
        done = run_fresh("unit", args, env=fresh_env(env), timeout=limit_s)
    except subprocess.TimeoutExpired:
        return 1, float(limit_s), False  # its first batch did not end in time
    if done.returncode != 0:
        raise RuntimeError(f"unit process failed:\n{done.stderr}")
    found = last_json(done.stdout)
    if "attack_steps_per_s" in found:
        rates[key] = found["attack_steps_per_s"]
    return found["batches"], found["seconds"], True


def unit_time(
    *,
    epochs: int = 1,
    n: int = 2500,
    method: str = "OnAdvTrain",
    seed: int = 0,
    bundled_fonts: bool = False,
    budget_s: float | None = None,
    train_steps: int = 40,
    gpu: bool | None = None,
    attack_s: float | None = None,
) -> Timed:
    """Seconds to train the generalization chapter's ``method`` unit at ``n`` with the
    paper's settings for ``epochs`` of its 20 epochs: before (attack views off, one
    thread, as main built it) and after (views on): one thread in this process, and
    every core in a fresh process, once with OpenMP's default wait policy and once
    with ``OMP_WAIT_POLICY=PASSIVE``; on the GPU too when ``gpu`` (default: if CUDA is
    available). Each timed run follows an untimed batch in its process (lazy set-up;
    its attack takes one PGD step). Every run stops after the first batch that ends
    past ``budget_s`` (None: never; a fresh process is killed at 4 · ``budget_s`` +
    30 s, which bounds its time from below) and is scaled from the b batches it
    trained to all B, t · B / b: the batches cost alike. Fonts: the chapter's, or
    matplotlib's; ``train_steps``: PGD steps per batch (the paper's 40; fewer only
    to test). With ``attack_s``, each fresh process first measures the attack steps
    per second of one process with two threads under its wait policy
    (:func:`unit_run`), returned as ``one_process_attack_rates`` ({"default": ...,
    "passive": ...}, for :func:`~.levers.processes_vs_threads`; a process killed
    before it ended gives none)."""
    s, decoder, data = _unit_inputs(epochs, n, seed, bundled_fonts, train_steps)
    batches = epochs * -(-n // s.batch_size)
    cores = compute.cores()
    rows = []

    def row(name, done, seconds, finished=True):
        rows.append(_unit_row(name, done, seconds, finished, batches, epochs))

    unit = (method, data, decoder, s, seed)
    for name, views in (("before, 1 thread", False), ("after, 1 thread", True)):
        with compute.threads(1), models.attack_views(views):
            row(name, *_warm_train_unit("cpu", *unit, budget_s))
    args = {
        "threads": cores,
        "epochs": epochs,
        "n": n,
        "seed": seed,
        "bundled_fonts": bundled_fonts,
        "method": method,
        "budget_s": budget_s,
        "train_steps": train_steps,
        "attack_s": attack_s,
    }
    limit = None if budget_s is None else 4 * budget_s + 30 + (attack_s or 0)
    rates: dict[str, float] = {}
    for name, env, key in (
        (f"after, {cores} threads", None, "default"),
        (f"after, {cores} threads, passive wait", PASSIVE, "passive"),
    ):
        row(name, *_unit_in_process(args, env, limit, rates, key))
    if torch.cuda.is_available() if gpu is None else gpu:
        with models.attack_views(True):
            row("after, cuda", *_warm_train_unit("cuda", *unit, budget_s))
    sizes = {"epochs": epochs, "n": n, "pgd_steps": train_steps, "batches": batches}
    metrics = _unit_metrics(rows, cores, sizes)
    if attack_s is not None:
        metrics["one_process_attack_rates"] = rates
    return metrics, rows


def _unit_row(
    name: str,
    done: int,
    seconds: float,
    finished: bool,
    batches: int,
    epochs: int,
) -> dict[str, Any]:
    """A row of :func:`unit_time`: a run that trained ``done`` batches in ``seconds``,
    scaled to all ``batches``, with the load average now."""
    return {
        "piece": "unit",
        "candidate": name,
        "batches_timed": done,
        "seconds_timed": seconds,
        "seconds": seconds * batches / done,
        "finished": finished,
        "epochs": epochs,
        "load": os.getloadavg()[0],
    }


def _unit_metrics(
    rows: list[dict[str, Any]], cores: int, sizes: dict[str, int]
) -> dict[str, Any]:
    """:func:`unit_time`'s metrics from its rows (one thread before and after, every
    core spinning and passive, the GPU if timed): ``sizes`` (epochs, n, PGD steps,
    batches) first, then seconds, speed-ups and the 20 epochs' estimates."""
    t = {r["candidate"]: r["seconds"] for r in rows}
    before, after_1 = t["before, 1 thread"], t["after, 1 thread"]
    after_all = t[f"after, {cores} threads"]
    after_passive = t[f"after, {cores} threads, passive wait"]
    full = 20 / sizes["epochs"]  # the unit's 20 epochs cost alike
    metrics = {
        **{f"unit_{key}": value for key, value in sizes.items()},
        "unit_before_batches_timed": rows[0]["batches_timed"],
        "unit_after_1t_batches_timed": rows[1]["batches_timed"],
        "unit_all_batches_timed": rows[2]["batches_timed"],
        "unit_all_finished": int(rows[2]["finished"]),
        "unit_passive_batches_timed": rows[3]["batches_timed"],
        "unit_before_s": before,
        "unit_after_1t_s": after_1,
        "unit_after_all_s": after_all,
        "unit_after_all_passive_s": after_passive,
        "unit_speedup_1t": before / after_1,
        "unit_speedup_all": before / after_all,
        "unit_speedup_all_passive": before / after_passive,
        "unit_speedup": before / min(after_1, after_all, after_passive),
        "unit_full_before_s": before * full,
        "unit_full_after_1t_s": after_1 * full,
        "unit_full_after_all_s": after_all * full,
        "unit_full_after_all_passive_s": after_passive * full,
        "unit_load": os.getloadavg()[0],
    }
    if "after, cuda" in t:
        metrics["unit_after_cuda_s"] = t["after, cuda"]
        metrics["unit_speedup_cuda"] = before / t["after, cuda"]
    return metrics
