"""Denormal floats at two threads: Adam in one fresh process without a flush, then
with the flag of the calling thread only, then with
:func:`advmanifold.science.compute.flush_denormals` (:func:`denormal_comparison`);
:func:`adam_run` is the program of that process (:mod:`.fresh`)."""

from __future__ import annotations

import os
import statistics
from collections.abc import Iterable
from typing import Any

import torch

from ...science import compute, models
from .harness import PASSIVE, Timed, fresh_env, last_json, run_fresh, windowed_rates

#: the settings in the order one process can take them: each sets the flags of the
#: one before it and more, and none clears a flag
DENORMAL_SETTINGS = ("no flush", "main thread only", "every thread")


def _flush(setting: str) -> None:
    """Set the flags of ``setting`` (on top of those of the settings before it)."""
    if setting == "main thread only":
        torch.set_flush_denormal(True)
    elif setting == "every thread":
        compute.flush_denormals()
    elif setting != "no flush":
        raise ValueError(f"setting must be one of {DENORMAL_SETTINGS}, got {setting!r}")


def _adam_rows(
    steps: int, window: int, sizes: list[int], scale: float
) -> list[dict[str, Any]]:
    """``steps`` Adam steps of a new MLP of ``sizes`` on a loss of ``scale`` · Σ f(x)
    at step 1 and 0 after it; per ``window`` steps the rate, the denormals in the
    weights and Adam's state, and the load average."""
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

    return windowed_rates(step, steps, window, probe)


def adam_run(
    settings: list[str], steps: int, window: int, sizes: list[int], scale: float
) -> dict[str, Any]:
    """Program ``denormals``: at two threads (the OpenMP team created before any
    flush), for each of ``settings`` in :data:`DENORMAL_SETTINGS` order, its flush,
    then :func:`_adam_rows` on a new MLP; per setting whether every thread flushes
    and the rows."""
    order = [s for s in DENORMAL_SETTINGS if s in settings]
    if order != list(settings):
        raise ValueError(
            f"settings must be among and in the order of {DENORMAL_SETTINGS}, "
            f"got {settings!r}"
        )
    torch.set_num_threads(2)
    (torch.ones(1 << 22) * 2).sum()  # the OpenMP team exists before any flush
    runs = []
    for setting in settings:
        _flush(setting)
        flushed = compute.denormals_flushed()
        rows = _adam_rows(steps, window, sizes, scale)
        runs.append({"setting": setting, "flushed": flushed, "rows": rows})
    return {"runs": runs}


def denormal_comparison(
    steps: int = 200,
    window: int = 20,
    sizes=(784, 1568, 1568, 10),
    scale: float = 1e-37,
    settings: Iterable[str] = DENORMAL_SETTINGS,
) -> Timed:
    """Adam (lr 10⁻³) on an :class:`~advmanifold.science.models.MLP` of ``sizes``
    (default the PMNIST model, 3.7M parameters; its update is split over the OpenMP
    threads) at two threads, the settings one after the other in one fresh process
    (in :data:`DENORMAL_SETTINGS` order, a new MLP and optimiser each), the OpenMP
    team created before any flush. The loss is ``scale`` · Σ f(x) at step 1
    and 0 after it: every gradient vanishes, as a dead unit's does, and Adam's
    m ← 0.9 m passes through the denormal range (2⁻¹⁴⁹ to 2⁻¹²⁶) in the next 200
    steps. (Trained on MNIST, batch 100, the MLP held no denormal after 400 steps,
    which took minutes at two threads on two busy cores; the FONTS ConvNet trains
    with weight decay, so its gradients never vanish.)

    The process runs with ``OMP_WAIT_POLICY=PASSIVE``: with spinning idle threads,
    a team of two on busy cores loses more time to waiting than denormals cost.
    Per window of ``window`` steps: steps/s, the denormals in the weights and Adam's
    state, the load average. Metrics per setting: whether every thread flushed, the
    largest count, the median rate over the second half of the windows."""
    metrics: dict[str, Any] = {}
    rows: list[dict[str, Any]] = []
    unknown = sorted(set(settings) - set(DENORMAL_SETTINGS))
    if unknown:
        raise ValueError(f"settings must be among {DENORMAL_SETTINGS}, got {unknown}")
    settings = [s for s in DENORMAL_SETTINGS if s in set(settings)]
    args = {
        "settings": settings,
        "steps": steps,
        "window": window,
        "sizes": list(sizes),
        "scale": scale,
    }
    done = run_fresh("denormals", args, env=fresh_env(PASSIVE))
    if done.returncode != 0:
        raise RuntimeError(f"denormal process failed:\n{done.stderr}")
    for run in last_json(done.stdout)["runs"]:
        setting, found = run["setting"], run["rows"]
        key = setting.replace(" ", "_")
        metrics[f"denormal_{key}_all_threads_flush"] = int(run["flushed"])
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
