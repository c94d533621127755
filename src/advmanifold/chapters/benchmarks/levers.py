"""The levers that make the FONTS ConvNet's attack step faster, timed one at a time
(:func:`attack_levers`, named by :func:`lever_names`): frozen weights, channels-last,
batch norm folded, oneDNN's input gradient in the first layer, ``torch.compile``
(:func:`compile_lever`, in a fresh process), larger batches, grouped models, two
threads, and processes against threads (:func:`processes_vs_threads`).

:func:`compile_run` and :func:`attack_rate` are the programs those fresh processes
run (:mod:`.fresh`)."""

from __future__ import annotations

import copy
import subprocess
import time
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...science import compute, models
from .harness import (
    PASSIVE,
    Timed,
    fresh_env,
    last_json,
    median_time,
    run_fresh,
    start_fresh,
    steps_per_second,
)
from .workloads import input_gradient_step, random_batch, trained_like_convnet


class _FoldedOnly(nn.Module):
    """:class:`~advmanifold.science.models.FoldedConvNet` with oneDNN's input gradient
    in the first layer (batch norm folded, nothing else): isolates the two levers."""

    def __init__(self, folded: models.FoldedConvNet):
        super().__init__()
        self.f = folded

    def forward(self, x):
        f = self.f
        h = F.conv2d(x.view(-1, 1, 28, 28), f.w0, f.b0, 2, 1).relu()
        h = F.conv2d(h, f.w1, f.b1, 2, 1).relu()
        h = F.conv2d(h, f.w2, f.b2, 2, 1).relu()
        h = F.linear(h.flatten(1), f.fc0_w, f.fc0_b).relu()
        return F.linear(h, f.fc1_w, f.fc1_b)


# ---------------------------------------- programs of fresh processes


def compile_run(repeats: int) -> dict[str, float]:
    """Program ``compile``: at one thread, the cold ``torch.compile`` of the attack
    view (seconds to the end of its first step) and the median seconds of a warm
    compiled step and of an eager step."""
    compute.set_threads(1)
    net = trained_like_convnet()
    x, y = random_batch(50)
    with models.frozen(net):
        view = models.attack_view(net)
        eager = input_gradient_step(view, x, y)
        start = time.perf_counter()
        compiled = input_gradient_step(torch.compile(view), x, y)
        compiled()
        cold = time.perf_counter() - start
        warm = median_time(compiled, repeats)
        eager_s = median_time(eager, repeats)
    return {"cold_s": cold, "warm_s": warm, "eager_s": eager_s}


def attack_rate(threads: int, seconds: float) -> dict[str, float]:
    """Program ``attack_rate``: attack steps per second (batch 50, attack view) at
    ``threads`` threads over about ``seconds``."""
    compute.set_threads(threads)
    net = trained_like_convnet()
    x, y = random_batch(50)
    with models.frozen(net):
        step = input_gradient_step(models.attack_view(net), x, y)
        return {"steps_per_s": steps_per_second(step, seconds)}


# ---------------------------------------- fresh processes


def compile_lever(repeats: int = 3, limit_s: float = 60.0) -> dict[str, Any]:
    """``torch.compile`` of the attack view in a fresh process at one thread: the cold
    compile (seconds, first call included; torch's on-disk caches as found) and the
    warm step against the eager view in the same process; ``{"note": ...}`` if it
    fails or takes over ``limit_s``."""
    try:
        done = run_fresh(
            "compile",
            {"repeats": repeats},
            timeout=limit_s + 30,  # the import and the warm rounds
        )
    except subprocess.TimeoutExpired:
        return {"note": f"torch.compile took over {limit_s:.0f} s: skipped"}
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no message"])[-1]
        return {"note": f"torch.compile failed here ({last[:200]})"}
    found = last_json(done.stdout)
    if found["cold_s"] > limit_s:
        return {"note": f"torch.compile took {found['cold_s']:.0f} s: skipped"}
    return found


def grid_lever(repeats: int = 20, n: int = 50, seed: int = 0) -> dict[str, float]:
    """Milliseconds of the decoder's warp of ``n`` images and its θ-gradient at one
    thread, the grid by ``F.affine_grid`` (a batched ``bmm``) against the closed form
    A·(p, 1) for all pixels in one product
    (:func:`advmanifold.science.decoders.affine_grid`), which the OnAdvTrain attack
    keeps (attack views on); and the ratio."""
    from ...science import decoders

    gen = torch.Generator().manual_seed(seed)
    images = torch.rand(n, 1, 28, 28, generator=gen)
    theta = decoders.sample_theta(n, generator=gen)

    def step(closed_form: bool):
        def run():
            t = theta.clone().requires_grad_(True)
            out = decoders.warp(images, t, closed_form=closed_form)
            return torch.autograd.grad(out.sum(), t)[0]

        return run

    with compute.threads(1):
        old, new = (median_time(step(c), repeats) for c in (False, True))
    return {
        "lever_grid_affine_ms": old * 1e3,
        "lever_grid_closed_form_ms": new * 1e3,
        "lever_grid_speedup": old / new,
    }


def processes_vs_threads(
    seconds: float = 4.0, known: dict[str, float] | None = None
) -> dict[str, float]:
    """Attack steps per second (batch 50, attack view) of one fresh process with two
    threads (OpenMP's default wait policy, then ``OMP_WAIT_POLICY=PASSIVE``), then of
    two single-threaded processes running at the same time. ``known``: the one-process
    rates (``"default"``, ``"passive"``) that fresh processes of that policy already
    measured before their other work (:func:`~.unit.unit_time`'s), not measured
    again."""
    rates = dict(known or {})
    for key, env in (("default", None), ("passive", PASSIVE)):
        if key in rates:
            continue
        one = start_fresh(
            "attack_rate", {"threads": 2, "seconds": seconds}, env=fresh_env(env)
        )
        rates[key] = last_json(one.communicate()[0])["steps_per_s"]
    single = {"threads": 1, "seconds": seconds}
    pair = [start_fresh("attack_rate", single, env=fresh_env()) for _ in range(2)]
    processes_rate = sum(last_json(p.communicate()[0])["steps_per_s"] for p in pair)
    return {
        "attack_steps_per_s_1proc_2threads": rates["default"],
        "attack_steps_per_s_1proc_2threads_passive": rates["passive"],
        "attack_steps_per_s_2procs_1thread": processes_rate,
        "processes_over_threads": processes_rate / rates["default"],
        "processes_over_threads_passive": processes_rate / rates["passive"],
    }


def lever_names(batches=(200, 1000)) -> tuple[str, ...]:
    """The levers of :func:`attack_levers`, in the order of its table."""
    big = max(batches)
    return (
        "plain",
        "frozen weights",
        "frozen + channels-last",
        "BN folded",
        "BN folded + col2im first layer",
        "torch.compile of the attack view",
        *(f"batch {b} (per 50)" for b in batches),
        "3 models grouped (features, per model)",
        "plain, 2 threads",
        "attack view, 2 threads",
        f"batch {big} (per 50), 2 threads",
        "1 process × 2 threads",
        "1 process × 2 threads, passive wait",
        "2 processes × 1 thread",
    )


def attack_levers(
    *,
    repeats: int = 5,
    compile_s: float | None = None,
    parallel_s: float | None = None,
    batches=(200, 1000),
    seed: int = 0,
    one_process: dict[str, float] | None = None,
) -> Timed:
    """Seconds of one attack step (∇ₓ of 50 images of a trained-like ConvNet in eval
    mode; per 50 images for larger batches) under each lever of :func:`lever_names`, one
    at a time, mostly at one thread; ``speedup`` = t(plain, 1 thread) / t. Each row
    says whether the package keeps the lever and why, from this run's numbers.
    ``compile_s``: limit of :func:`compile_lever` (None: not run); ``parallel_s``:
    seconds of :func:`processes_vs_threads` (None, or one core: not run), which takes
    the one-process rates ``one_process`` as measured elsewhere. The grouped
    lever times the convolution stacks only
    (:func:`advmanifold.science.models.conv_stack` with ``groups=3`` on 3 channels
    against one stack on 1), per model."""
    x, y = random_batch(max(150, *batches), seed)
    timed = _step_timer(x[:50], y[:50], repeats)
    notes: list[str] = []
    with compute.threads(1):
        net = trained_like_convnet(seed)
        t: dict[str, float] = {"plain": timed(net)}
        with models.frozen(net):
            folded = _view_levers(t, net, x[:50], timed)
            for b in batches:
                t[f"batch {b} (per 50)"] = timed(folded, x[:b], y[:b]) * 50 / b
            t_grouped, t_single = _grouped_lever(x, repeats)
            t["3 models grouped (features, per model)"] = t_grouped
    compiled = _compile_levers(t, repeats, compile_s, notes)
    parallel = {}
    if compute.cores() > 1:
        parallel = _two_thread_levers(
            t, net, folded, x, y, max(batches), timed, parallel_s, one_process
        )
    kept = _lever_verdicts(t, batches, t_single / t_grouped, compiled, parallel)
    rows, metrics = _lever_table(t, kept, batches)
    metrics = {"lever_notes": notes, **parallel, **metrics}
    metrics["lever_attack_view_speedup"] = t["plain"] / t[_ATTACK_VIEW]
    metrics["lever_grouped_speedup"] = t_single / t_grouped
    if compiled is not None:
        metrics["lever_compile_cold_s"] = compiled["cold_s"]
    return metrics, rows


#: the lever that is the package's attack view (:func:`models.attack_view`)
_ATTACK_VIEW = "BN folded + col2im first layer"


def _step_timer(x50: Tensor, y50: Tensor, repeats: int):
    """``timed(forward, xb=x50, yb=y50)``: median seconds of one attack step."""

    def timed(forward, xb=x50, yb=y50):
        return median_time(input_gradient_step(forward, xb, yb), repeats)

    return timed


def _view_levers(t: dict[str, float], net: nn.Module, x50: Tensor, timed) -> nn.Module:
    """Time the frozen, channels-last and BN-folded levers of the frozen ``net``
    into ``t``; returns the folded net (the attack view)."""
    folded = models.FoldedConvNet(net)
    t["frozen weights"] = timed(net)
    last = copy.deepcopy(net).to(memory_format=torch.channels_last)
    xc = x50.contiguous(memory_format=torch.channels_last)
    t["frozen + channels-last"] = timed(last, xc)
    t["BN folded"] = timed(_FoldedOnly(folded))
    t[_ATTACK_VIEW] = timed(folded)
    return folded


def _grouped_lever(x: Tensor, repeats: int) -> tuple[float, float]:
    """Seconds per model of the input gradient of 3 grouped convolution stacks, and of
    one stack alone."""
    grouped, single = models.conv_stack(groups=3), models.conv_stack()
    for stack in (grouped, single):
        models.freeze(stack)
    x3 = x[:150].reshape(50, 3, 28, 28)  # model g sees channel g

    def stack_step(stack, xb):
        def step():
            v = xb.detach().requires_grad_(True)
            return torch.autograd.grad(stack(v).square().sum(), v)[0]

        return step

    t_grouped = median_time(stack_step(grouped, x3), repeats) / 3
    t_single = median_time(stack_step(single, x[:50]), repeats)
    return t_grouped, t_single


def _compile_levers(
    t: dict[str, float], repeats: int, compile_s: float | None, notes: list[str]
) -> dict[str, float] | None:
    """The ``torch.compile`` lever into ``t`` (a failure into ``notes``); what
    :func:`compile_lever` found, or None if it was not run or failed."""
    if compile_s is None:
        return None
    found = compile_lever(repeats, compile_s)
    if "note" in found:
        notes.append(found["note"])
        return None
    t["torch.compile of the attack view"] = found["warm_s"]
    return found


def _two_thread_levers(
    t: dict[str, float],
    net: nn.Module,
    folded: nn.Module,
    x: Tensor,
    y: Tensor,
    big: int,
    timed,
    parallel_s: float | None,
    one_process: dict[str, float] | None = None,
) -> dict[str, float]:
    """Time the levers at two threads into ``t`` and, with ``parallel_s``, processes
    against threads (:func:`processes_vs_threads` with the rates ``one_process``
    known, returned; else ``{}``)."""
    with compute.threads(2):
        t["plain, 2 threads"] = timed(net)
        with models.frozen(net):
            t["attack view, 2 threads"] = timed(folded)
            t[f"batch {big} (per 50), 2 threads"] = (
                timed(folded, x[:big], y[:big]) * 50 / big
            )
    if parallel_s is None:
        return {}
    parallel = processes_vs_threads(parallel_s, one_process)
    t["1 process × 2 threads"] = 1 / parallel["attack_steps_per_s_1proc_2threads"]
    t["1 process × 2 threads, passive wait"] = (
        1 / parallel["attack_steps_per_s_1proc_2threads_passive"]
    )
    t["2 processes × 1 thread"] = 1 / parallel["attack_steps_per_s_2procs_1thread"]
    return parallel


def _lever_verdicts(
    t: dict[str, float],
    batches,
    grouped_speedup: float,
    compiled: dict[str, float] | None,
    parallel: dict[str, float],
) -> dict[str, tuple[str, str]]:
    """Lever → (whether the package keeps it, why), from this run's numbers.

    (Over 60 lines: one table, an entry per lever, read best from top to bottom.)"""

    def over(a: str, b: str) -> float:
        """Speed-up of lever a over lever b."""
        return t[b] / t[a]

    view = _ATTACK_VIEW
    kept = {
        "plain": ("", "the reference: weights requiring gradients, BN unfolded"),
        "frozen weights": (
            "yes",
            f"{over('frozen weights', 'plain'):.2f}× over plain (models.frozen)",
        ),
        "frozen + channels-last": (
            "no",
            (
                f"{over('frozen + channels-last', 'frozen weights'):.2f}× over "
                "frozen weights alone"
            ),
        ),
        "BN folded": (
            "yes",
            f"{over('BN folded', 'frozen weights'):.2f}× over frozen weights",
        ),
        view: (
            "yes",
            (
                f"{over(view, 'BN folded'):.2f}× over BN folded alone: the attack "
                "view (models.attack_view)"
            ),
        ),
        **{
            f"batch {b} (per 50)": (
                "no",
                (
                    f"{over(f'batch {b} (per 50)', view):.2f}× per example; "
                    "training attacks half of each batch of 100"
                ),
            )
            for b in batches
        },
        "3 models grouped (features, per model)": (
            "no",
            (
                f"{grouped_speedup:.2f}× per model over one stack; one model "
                "per unit lets the runner spread units over processes"
            ),
        ),
    }
    if compiled is not None:
        kept["torch.compile of the attack view"] = (
            "no",
            (
                f"warm {compiled['eager_s'] / compiled['warm_s']:.2f}× over the "
                "attack view (both in the compiling process), after a cold compile "
                f"of {compiled['cold_s']:.0f} s per process"
            ),
        )
    kept.update(_thread_verdicts(t, over, max(batches), parallel))
    return kept


def _thread_verdicts(
    t: dict[str, float], over, big: int, parallel: dict[str, float]
) -> dict[str, tuple[str, str]]:
    """The verdicts of the two-thread and process levers that ran."""
    kept = {}
    if "plain, 2 threads" in t:
        for two, one in (
            ("plain, 2 threads", "plain"),
            ("attack view, 2 threads", _ATTACK_VIEW),
            (f"batch {big} (per 50), 2 threads", f"batch {big} (per 50)"),
        ):
            kept[two] = ("", f"{over(two, one):.2f}× over one thread")
    if parallel:
        kept["1 process × 2 threads"] = (
            "no",
            "throughput of the attack view; idle OpenMP threads spin (the default)",
        )
        passive = "1 process × 2 threads, passive wait"
        kept[passive] = (
            "no",
            (
                f"{over(passive, '1 process × 2 threads'):.2f}× over spinning: "
                "OMP_WAIT_POLICY=PASSIVE, set before torch loads"
            ),
        )
        kept["2 processes × 1 thread"] = (
            "yes",
            (
                f"{parallel['processes_over_threads']:.2f}× the throughput of one "
                "process with two threads: the runner builds units in one "
                "single-threaded worker per core"
            ),
        )
    return kept


def _lever_table(
    t: dict[str, float], kept: dict[str, tuple[str, str]], batches
) -> tuple[list[dict[str, Any]], dict[str, float]]:
    """The rows of the levers that ran, in :func:`lever_names` order, and their
    ``lever_<name>_ms`` metrics."""
    rows, metrics = [], {}
    for name in [n for n in lever_names(batches) if n in t]:
        comparable = not name.startswith("3 models")
        speedup = t["plain"] / t[name] if comparable else float("nan")
        threads = 2 if ("2 thread" in name or "× 1 thread" in name) else 1
        threads = 1 if name.startswith("2 processes") else threads
        rows.append(
            {
                "piece": "levers",
                "candidate": name,
                "threads": threads,
                "seconds": t[name],
                "speedup": speedup,
                "kept": kept[name][0],
                "reason": kept[name][1],
            }
        )
        key = "".join(c if c.isalnum() else "_" for c in name).strip("_")
        metrics[f"lever_{key}_ms"] = 1e3 * t[name]
    return rows, metrics
