"""The FONTS ConvNet workload against the machine: an honest peak, FLOP rates, the
levers that make it faster, the unit time before and after, and denormals.

- :func:`sgemm_peak`: the best ``torch.mm`` rate over several large square sizes at a
  thread count, with the load average; every "fraction of peak" divides by the peak
  of the same thread count.
- :func:`convnet_rates`: the ConvNet's training step (batch 100), the input-gradient
  step of an attack (batch 50, through :func:`advmanifold.models.attack_view`) and an
  adversarial-training step (PGD-40 on half a batch of 100, then the training step),
  in FLOP/s counted by ``torch.utils.flop_counter`` (convolutions and matrix products
  only, so the rates are lower bounds) and as fractions of the peak.
- :func:`attack_levers`: the attack step under each lever, one at a time.
- :func:`processes_vs_threads`: attack steps per second of one process with two
  threads against two processes with one each.
- :func:`unit_time`: the generalization chapter's OnAdvTrain training at N = 2,500 with
  the paper's settings, before (attack views off, one thread, as main was) and after.
- :func:`denormal_comparison`: Adam at two threads in fresh processes, without a
  flush, with the flush on the calling thread only, and with
  :func:`advmanifold.compute.flush_denormals`.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

from . import compute, models

Timed = tuple[dict[str, float], list[dict[str, Any]]]


def _median_time(fn: Callable[[], Any], repeats: int, inner: int = 1) -> float:
    """Median seconds of ``fn`` over ``repeats`` rounds of ``inner`` calls (after one
    untimed call)."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(inner):
            fn()
        times.append((time.perf_counter() - start) / inner)
    return statistics.median(times)


def flops(fn: Callable[[], Any]) -> int:
    """FLOPs of one call of ``fn`` (convolutions and matrix products, forward and
    backward), counted by ``torch.utils.flop_counter.FlopCounterMode``. (Its module
    hooks do not allow ``torch.autograd.grad`` inside: count with ``.backward()``.)"""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


def sgemm_peak(
    threads: int, sizes=(1024, 2048, 3072), repeats: int = 3
) -> dict[str, float]:
    """``peak_gflops_<threads>t``: the best ``torch.mm`` rate (2n³ FLOPs) over square
    ``sizes`` at ``threads`` threads; ``load_<threads>t``: the 1-minute load average
    when it was measured."""
    out = {}
    with compute.threads(threads):
        best = 0.0
        for n in sizes:
            a, b = torch.randn(n, n), torch.randn(n, n)
            seconds = min(
                _median_time(lambda: torch.mm(a, b), 1, inner=2)
                for _ in range(repeats)
            )
            best = max(best, 2 * n**3 / seconds / 1e9)
        out[f"peak_gflops_{threads}t"] = best
        out[f"load_{threads}t"] = os.getloadavg()[0]
    return out


# ---------------------------------------------------------------- ConvNet workloads


def _data(batch: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(batch, 1, 28, 28, generator=g), torch.randint(
        0, 10, (batch,), generator=g
    )


def trained_like_convnet(seed: int = 0) -> models.ConvNet:
    """A ConvNet in eval mode with non-trivial batch-norm statistics (a few batches of
    random images), standing in for a trained one: the cost does not depend on the
    weights."""
    torch.manual_seed(seed)
    net = models.ConvNet().train()
    with torch.no_grad():
        for _ in range(3):
            net(torch.rand(100, 1, 28, 28))
    return net.eval()


def input_gradient_step(forward, x, y, *, counting=False) -> Callable[[], Any]:
    """One attack step's work: ∇ₓ of the summed cross-entropy at x (``counting``:
    through ``.backward()``, the same arithmetic, for :func:`flops`)."""

    def step():
        v = x.detach().requires_grad_(True)
        loss = F.cross_entropy(forward(v), y, reduction="sum")
        if counting:
            loss.backward()
            return v.grad
        return torch.autograd.grad(loss, v)[0]

    return step


def training_step(model, x, y, objective=None) -> Callable[[], None]:
    """One Adam step of ``model`` (train mode) on the batch."""
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-3)
    objective = objective or (lambda m, xb, yb: F.cross_entropy(m(xb), yb))

    def step():
        model.train()
        loss = objective(model, x, y)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()

    return step


def adversarial_training_step(
    model, x, y, eps: float = 0.3, steps: int = 40
) -> Callable[[], None]:
    """OffAdvTrain's step: PGD-``steps`` on the second half of the batch (through
    the attack view), then one Adam step on the clean half and the examples."""
    from .training import adversarial_examples

    h = len(x) // 2

    def objective(m, xb, yb):
        x_adv = adversarial_examples(m, xb[h:], yb[h:], eps=eps, steps=steps, seed=0)
        return F.cross_entropy(m(torch.cat([xb[:h], x_adv])), yb)

    return training_step(model, x, y, objective)


def convnet_rates(
    peaks: dict[str, float],
    threads=(1, 2),
    *,
    repeats: int = 5,
    pgd_steps: int = 40,
    seed: int = 0,
) -> Timed:
    """Seconds, FLOP/s and fraction of the same-thread peak of the three steps (see
    the module docstring) at each thread count in ``threads``. The adversarial step's
    FLOPs are ``pgd_steps`` attack steps plus a training step (the attack's two
    extra forward passes are not counted)."""
    metrics, rows = {}, []
    x100, y100 = _data(100, seed)
    x50, y50 = x100[:50], y100[:50]
    for t in threads:
        with compute.threads(t):
            net = trained_like_convnet(seed)
            with models.frozen(net):
                view = models.attack_view(net)
                attack = input_gradient_step(view, x50, y50)
                attack_flops = flops(input_gradient_step(view, x50, y50, counting=True))
            train = training_step(models.ConvNet(), x100, y100)
            train_flops = flops(training_step(models.ConvNet(), x100, y100))
            work = {
                "attack_step": (attack, 20, attack_flops),
                "train_step": (train, 10, train_flops),
                "adv_train_step": (
                    adversarial_training_step(
                        trained_like_convnet(seed).train(), x100, y100, steps=pgd_steps
                    ),
                    1,
                    pgd_steps * attack_flops + train_flops,
                ),
            }
            for name, (fn, inner, count) in work.items():
                seconds = _median_time(fn, repeats, inner)
                rate = count / seconds / 1e9
                fraction = rate / peaks[f"peak_gflops_{t}t"]
                metrics.update(
                    {
                        f"{name}_ms_{t}t": 1e3 * seconds,
                        f"{name}_gflops_{t}t": rate,
                        f"{name}_fraction_of_peak_{t}t": fraction,
                        f"{name}_mflop": count / 1e6,
                    }
                )
                rows.append(
                    {
                        "piece": "convnet",
                        "candidate": name,
                        "threads": t,
                        "seconds": seconds,
                        "gflops": rate,
                        "fraction_of_peak": fraction,
                    }
                )
    return metrics, rows


# ---------------------------------------------------------------- levers


class _FoldedOnly(nn.Module):
    """:class:`~advmanifold.models.FoldedConvNet` with oneDNN's input gradient in the
    first layer (batch norm folded, nothing else): isolates the two levers."""

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


#: what the package does with each lever, and why (the measured numbers say how much)
LEVER_VERDICTS = {
    "plain": "the reference: weights require gradients, batch norm unfolded",
    "frozen weights": "kept (models.frozen): no weight gradients in attack steps",
    "channels-last": "not kept: no gain at these sizes",
    "BN folded": "kept (models.FoldedConvNet)",
    "BN folded + col2im first layer": "kept: the attack view of the package",
    "torch.compile (warm)": "not kept: no faster warm, and a cold compile per process",
    "batch 200 (per 50)": "not kept: larger batches give no gain per example",
    "batch 1000 (per 50)": "not kept: as above",
    "3 models grouped (per model)": "not kept: one model per unit lets Dask spread",
}


def attack_levers(
    *, repeats: int = 5, compile_model: bool = False, seed: int = 0
) -> Timed:
    """Milliseconds of one attack step (∇ₓ of 50 images) under each lever at one
    thread, and the ratio to the plain network; ``compile_model`` adds
    ``torch.compile`` (its cold compile time too)."""
    x, y = _data(1000, seed)
    x50, y50 = x[:50], y[:50]
    results: dict[str, float] = {}
    with compute.threads(1):
        net = trained_like_convnet(seed)
        results["plain"] = _median_time(
            input_gradient_step(net, x50, y50), repeats, 20
        )
        with models.frozen(net):
            folded = models.FoldedConvNet(net)
            candidates = {
                "frozen weights": net,
                "BN folded": _FoldedOnly(folded),
                "BN folded + col2im first layer": folded,
            }
            for name, f in candidates.items():
                step = input_gradient_step(f, x50, y50)
                results[name] = _median_time(step, repeats, 20)
            last = net.to(memory_format=torch.channels_last)
            xc = x50.contiguous(memory_format=torch.channels_last)
            results["channels-last"] = _median_time(
                input_gradient_step(last, xc, y50), repeats, 20
            )
            net.to(memory_format=torch.contiguous_format)
            for b in (200, 1000):
                step = input_gradient_step(folded, x[:b], y[:b])
                per = _median_time(step, repeats, 3)
                results[f"batch {b} (per 50)"] = per * 50 / b
            grouped = models.conv_stack(groups=3).eval()
            for p in grouped.parameters():
                p.requires_grad_(False)
            x3 = x[:50].repeat(1, 3, 1, 1)

            def grouped_step():
                v = x3.detach().requires_grad_(True)
                return torch.autograd.grad(grouped(v).square().sum(), v)[0]

            single = models.conv_stack().eval()
            for p in single.parameters():
                p.requires_grad_(False)

            def single_step():
                v = x50.detach().requires_grad_(True)
                return torch.autograd.grad(single(v).square().sum(), v)[0]

            results["3 models grouped (per model)"] = (
                _median_time(grouped_step, repeats, 10)
                / 3
                / _median_time(single_step, repeats, 10)
                * results["frozen weights"]
            )
            if compile_model:
                start = time.perf_counter()
                try:
                    compiled = torch.compile(folded)
                    step = input_gradient_step(compiled, x50, y50)
                    step()
                    results["torch.compile cold (s)"] = time.perf_counter() - start
                    results["torch.compile (warm)"] = _median_time(step, repeats, 20)
                except Exception:  # noqa: BLE001 - no compiler here: say so
                    results["torch.compile cold (s)"] = float("nan")
    rows, metrics = [], {}
    for name, seconds in results.items():
        cold = name.endswith("(s)")
        rows.append(
            {
                "piece": "levers",
                "candidate": name,
                "ms": seconds if cold else 1e3 * seconds,
                "speedup": float("nan") if cold else results["plain"] / seconds,
                "verdict": LEVER_VERDICTS.get(name, ""),
            }
        )
        if not cold:
            key = name.replace(" ", "_").replace("(", "").replace(")", "")
            metrics[f"lever_{key}_speedup"] = results["plain"] / seconds
    return metrics, rows


_ATTACK_SCRIPT = """
import json, sys, time, torch
from advmanifold import compute, models, throughput
compute.set_threads(int(sys.argv[1]))
net = throughput.trained_like_convnet()
x, y = throughput._data(50)
with models.frozen(net):
    step = throughput.input_gradient_step(models.attack_view(net), x, y)
    step()
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < float(sys.argv[2]):
        step(); n += 1
print(json.dumps({"steps_per_s": n / (time.perf_counter() - start)}))
"""


def _run_script(script: str, *args) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", script, *map(str, args)],
        stdout=subprocess.PIPE,
        text=True,
    )


def processes_vs_threads(seconds: float = 4.0) -> Timed:
    """Attack steps per second (batch 50) of one process with two threads and of two
    processes with one thread each, running at the same time."""
    one = _run_script(_ATTACK_SCRIPT, 2, seconds)
    threads_rate = json.loads(one.communicate()[0])["steps_per_s"]
    pair = [_run_script(_ATTACK_SCRIPT, 1, seconds) for _ in range(2)]
    processes_rate = sum(json.loads(p.communicate()[0])["steps_per_s"] for p in pair)
    metrics = {
        "attack_steps_per_s_1proc_2threads": threads_rate,
        "attack_steps_per_s_2procs_1thread": processes_rate,
        "processes_over_threads": processes_rate / threads_rate,
    }
    rows = [
        {"piece": "parallel", "candidate": k, "steps_per_s": v}
        for k, v in list(metrics.items())[:2]
    ]
    return metrics, rows


# ---------------------------------------------------------------- the unit


def unit_time(
    *,
    epochs: int = 1,
    n: int = 2500,
    method: str = "OnAdvTrain",
    seed: int = 0,
    prototypes=None,
) -> Timed:
    """Seconds to train the generalization chapter's ``method`` unit at ``n`` with the
    paper's settings for ``epochs`` epochs: before (attack views off, one thread, as
    main built it) and after (views on, at one thread and at every core). The fonts:
    the ``prototypes`` unit (default: the chapter's own)."""
    from . import generalization as G

    s = G.settings("paper", epochs=epochs)
    decoder = G.load_decoder(prototypes or G.prototypes_unit(), s.n_fonts)
    data = G.train_split(decoder, n, seed)
    runs = {
        "before (1 thread)": (False, 1),
        "after (1 thread)": (True, 1),
        f"after ({compute.cores()} threads)": (True, compute.cores()),
    }
    times = {}
    for name, (views, t) in runs.items():
        with compute.threads(t), models.attack_views(views):
            start = time.perf_counter()
            G.train_model(method, data, decoder, s, seed, progress=False)
            times[name] = time.perf_counter() - start
    before, after_1 = times["before (1 thread)"], times["after (1 thread)"]
    after_all = times[f"after ({compute.cores()} threads)"]
    metrics = {
        "unit_epochs": epochs,
        "unit_n": n,
        "unit_before_s": before,
        "unit_after_1t_s": after_1,
        "unit_after_all_s": after_all,
        "unit_speedup_1t": before / after_1,
        "unit_speedup_all": before / after_all,
        "unit_full_before_s": before * 20 / epochs,
        "unit_full_after_s": min(after_1, after_all) * 20 / epochs,
    }
    rows = [
        {"piece": "unit", "candidate": k, "seconds": v, "epochs": epochs}
        for k, v in times.items()
    ]
    return metrics, rows


# ---------------------------------------------------------------- denormals

_DENORMAL_SCRIPT = """
import json, sys, time, torch
from advmanifold import compute
setting, steps, window = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
torch.set_num_threads(2)
torch.manual_seed(0)
layer = torch.nn.Linear(1024, 1024)
(torch.ones(1 << 22) * 2).sum()  # the OpenMP team exists before any flush
if setting == "main thread only":
    torch.set_flush_denormal(True)
elif setting == "every thread":
    compute.flush_denormals()
flushed = compute.denormals_flushed()
opt = torch.optim.Adam(layer.parameters(), lr=1e-3)
x = torch.randn(16, 1024)
rows, start = [], time.perf_counter()
for step in range(1, steps + 1):
    scale = 1e-20 if step == 1 else 0.0  # then the gradient vanishes (a dead unit)
    loss = scale * layer(x).sum()
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    if step % window == 0:
        state = [v for s in opt.state.values() for v in s.values()]
        now = time.perf_counter()
        rows.append({"step": step, "steps_per_s": window / (now - start),
                     "denormals": compute.count_denormals(state)})
        start = time.perf_counter()
print(json.dumps({"flushed": flushed, "rows": rows}))
"""

DENORMAL_SETTINGS = ("no flush", "main thread only", "every thread")


def denormal_comparison(steps: int = 600, window: int = 50) -> Timed:
    """Adam on a 1024 × 1024 layer (its update split over the OpenMP threads) whose
    gradient is tiny at the first step and zero after it, as for a dead unit:
    exp_avg decays by 0.9 per step and enters the denormal range after about 370
    steps. Two threads, one fresh process per setting of :data:`DENORMAL_SETTINGS`,
    the OpenMP team created before any flush. Per window: steps/s and denormals in
    Adam's state."""
    metrics, rows = {}, []
    for setting in DENORMAL_SETTINGS:
        done = subprocess.run(
            [sys.executable, "-c", _DENORMAL_SCRIPT, setting, str(steps), str(window)],
            capture_output=True,
            text=True,
            check=True,
        )
        out = json.loads(done.stdout)
        key = setting.replace(" ", "_")
        metrics[f"denormal_{key}_all_threads_flush"] = int(out["flushed"])
        metrics[f"denormal_{key}_max_count"] = max(r["denormals"] for r in out["rows"])
        rates = [r["steps_per_s"] for r in out["rows"]]
        metrics[f"denormal_{key}_slowest_over_first"] = min(rates) / rates[0]
        rows += [{"piece": "denormals", "candidate": setting, **r} for r in out["rows"]]
    return metrics, rows
