"""Denormal floats at two threads: Adam in fresh processes without a flush, with the
flag of the calling thread only, and with
:func:`advmanifold.science.compute.flush_denormals` (:func:`denormal_comparison`);
:func:`adam_run` is the program of those processes (:mod:`.fresh`)."""

from __future__ import annotations

import os
import statistics
from collections.abc import Iterable
from typing import Any

import torch

from ...science import compute, models
from .harness import PASSIVE, Timed, fresh_env, last_json, run_fresh, windowed_rates

DENORMAL_SETTINGS = ("no flush", "main thread only", "every thread")


def adam_run(
    setting: str, steps: int, window: int, sizes: list[int], scale: float
) -> dict[str, Any]:
    """Program ``denormals``: at two threads, with the flush of ``setting`` (the
    OpenMP team created before it), ``steps`` Adam steps of an MLP of ``sizes`` on a
    loss of ``scale`` · Σ f(x) at step 1 and 0 after it; per ``window`` steps the rate,
    the denormals in the weights and Adam's state, and the load average."""
    torch.set_num_threads(2)
    (torch.ones(1 << 22) * 2).sum()  # the OpenMP team exists before any flush
    if setting == "main thread only":
        torch.set_flush_denormal(True)
    elif setting == "every thread":
        compute.flush_denormals()
    flushed = compute.denormals_flushed()
    torch.manual_seed(0)
    net = models.MLP(tuple(sizes))
    optimiser = torch.optim.Adam(net.parameters(), lr=1e-3)
    x = torch.rand(16, sizes[0])
    done = [0]

    def step():
        done[0] += 1
        # then a dead unit's zero
        loss = (scale if done[0] == 1 else 0.0) * net(x).sum()
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()

    def probe():
        state = [v for s in optimiser.state.values() for v in s.values()]
        held = compute.count_denormals([*net.parameters(), *state])
        return {"denormals": held, "load": os.getloadavg()[0]}

    rows = windowed_rates(step, steps, window, probe)
    return {"flushed": flushed, "rows": rows}


def denormal_comparison(
    steps: int = 200,
    window: int = 20,
    sizes=(784, 1568, 1568, 10),
    scale: float = 1e-37,
    settings: Iterable[str] = DENORMAL_SETTINGS,
) -> Timed:
    """Adam (lr 10⁻³) on an :class:`~advmanifold.science.models.MLP` of ``sizes``
    (default the PMNIST model, 3.7M parameters; its update is split over the OpenMP
    threads) at two threads, in one fresh process per setting, one after the other, the
    OpenMP team created before any flush. The loss is ``scale`` · Σ f(x) at step 1
    and 0 after it: every gradient vanishes, as a dead unit's does, and Adam's
    m ← 0.9 m passes through the denormal range (2⁻¹⁴⁹ to 2⁻¹²⁶) in the next 200
    steps. (Trained on MNIST, batch 100, the MLP held no denormal after 400 steps,
    which took minutes at two threads on two busy cores; the FONTS ConvNet trains
    with weight decay, so its gradients never vanish.)

    The processes run with ``OMP_WAIT_POLICY=PASSIVE``: with spinning idle threads,
    a team of two on busy cores loses more time to waiting than denormals cost.
    Per window of ``window`` steps: steps/s, the denormals in the weights and Adam's
    state, the load average. Metrics per setting: whether every thread flushed, the
    largest count, the median rate over the second half of the windows."""
    metrics: dict[str, Any] = {}
    rows: list[dict[str, Any]] = []
    for setting in settings:
        args = {
            "setting": setting,
            "steps": steps,
            "window": window,
            "sizes": list(sizes),
            "scale": scale,
        }
        done = run_fresh("denormals", args, env=fresh_env(PASSIVE))
        if done.returncode != 0:
            raise RuntimeError(f"denormal process ({setting}) failed:\n{done.stderr}")
        out = last_json(done.stdout)
        key = setting.replace(" ", "_")
        found = out["rows"]
        metrics[f"denormal_{key}_all_threads_flush"] = int(out["flushed"])
        metrics[f"denormal_{key}_max_count"] = max(r["denormals"] for r in found)
        late = [r["steps_per_s"] for r in found[len(found) // 2 :]]
        metrics[f"denormal_{key}_late_steps_per_s"] = statistics.median(late)
        rows += [{"piece": "denormals", "candidate": setting, **r} for r in found]
    if {"no flush", "every thread"} <= set(settings):
        metrics["denormal_no_flush_over_every_thread_late"] = (
            metrics["denormal_no_flush_late_steps_per_s"]
            / metrics["denormal_every_thread_late_steps_per_s"]
        )
    metrics["denormal_steps"] = steps
    metrics["denormal_parameters"] = sum(
        p.numel() for p in models.MLP(sizes).parameters()
    )
    return metrics, rows
