"""The FONTS ConvNet workload against the machine: an honest peak, FLOP rates, the
levers that make an attack step faster, the unit time before and after, and
denormals at two threads.

- :func:`convnet_rates`: the peak at a thread count is the best GEMM rate over large
  square ``torch.mm`` products *and* over the GEMMs the workloads themselves run
  (:func:`gemm_shapes`); each workload's rate (FLOPs counted by
  ``torch.utils.flop_counter``) is divided by the peak of its own thread count. A
  workload spends at least Σᵢ fᵢ / rᵢ seconds on GEMMs of fᵢ FLOPs that run at best at
  rate rᵢ, so its rate is at most maxᵢ rᵢ. Timings on busy cores can break that
  bound, so the workloads' own rates belong to the peak set too: every fraction is
  ≤ 1 by construction, none is capped, and a workload that sets the peak is flagged.
- :func:`attack_levers`: the attack step under each lever, one at a time, and
  processes against threads (:func:`processes_vs_threads`).
- :func:`unit_time`: the generalization chapter's OnAdvTrain unit at N = 2,500 with
  the paper's settings, before (attack views off, one thread, as main built it) and
  after (views on: one thread; every core in fresh processes with spinning and with
  sleeping idle OpenMP threads; a GPU if there is one).
- :func:`denormal_comparison`: Adam at two threads in fresh processes, without a
  flush, with the flag of the calling thread only, and with
  :func:`advmanifold.science.compute.flush_denormals`.
"""

from __future__ import annotations

import copy
import functools
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from itertools import pairwise
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils._python_dispatch import TorchDispatchMode

from ..science import compute, models

Timed = tuple[dict[str, Any], list[dict[str, Any]]]
#: a GEMM: b independent products [m × k]·[k × n] (2·b·m·k·n FLOPs)
Shape = tuple[int, int, int, int]


def _times(fn: Callable[[], Any], repeats: int, target_s: float = 0.05) -> list[float]:
    """Seconds per call of ``fn`` over ``repeats`` rounds, each of as many calls as fill
    about ``target_s`` (judged from a first call, which is not counted)."""
    start = time.perf_counter()
    fn()
    first = time.perf_counter() - start
    inner = max(1, min(1000, round(target_s / max(first, 1e-6))))
    out = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(inner):
            fn()
        out.append((time.perf_counter() - start) / inner)
    return out


def _median_time(fn: Callable[[], Any], repeats: int) -> float:
    return statistics.median(_times(fn, repeats))


def flops(fn: Callable[[], Any]) -> int:
    """FLOPs of one call of ``fn`` (convolutions and matrix products, forward and
    backward), counted by ``torch.utils.flop_counter.FlopCounterMode``. (Its module
    hooks do not allow ``torch.autograd.grad`` inside: count with ``.backward()``.)"""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


class _GemmRecorder(TorchDispatchMode):
    """Records the GEMM of every matrix product and convolution that runs under it."""

    def __init__(self):
        super().__init__()
        self.shapes: set[Shape] = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        name = func.overloadpacket.__name__
        if name in ("mm", "addmm", "bmm"):
            a, b = args[-2:]
            batch = a.shape[0] if a.dim() == 3 else 1
            self.shapes.add((batch, a.shape[-2], a.shape[-1], b.shape[-1]))
        elif name == "convolution":
            weight, groups = args[1], args[-1]
            m = out.shape[0] * out[0, 0].numel()
            k = weight[0].numel()
            self.shapes.add((groups, m, k, weight.shape[0] // groups))
        elif name == "convolution_backward":
            grad_out, weight, groups, mask = args[0], args[2], args[-2], args[-1]
            m = grad_out.shape[0] * grad_out[0, 0].numel()
            k, n = weight[0].numel(), weight.shape[0] // groups
            if mask[0]:  # input gradient: [m × n]·[n × k], then col2im
                self.shapes.add((groups, m, n, k))
            if mask[1]:  # weight gradient: [n × m]·[m × k]
                self.shapes.add((groups, n, m, k))
        return out


def gemm_shapes(fn: Callable[[], Any]) -> set[Shape]:
    """The GEMMs one call of ``fn`` runs: mm/addmm [m×k]·[k×n] (b = 1), bmm; a
    convolution to N×O×H'×W' from patches of C·kh·kw is the GEMM m = N·H'·W',
    k = C·kh·kw, n = O (per group); its backward the GEMMs of the input gradient
    (m, n, k) and of the weight gradient (n, m, k), each of the same 2·m·k·n FLOPs."""
    with _GemmRecorder() as recorder:
        fn()
    return recorder.shapes


def gemm_rate(shape: Shape, repeats: int = 3) -> float:
    """Best GFLOP/s of ``torch.mm`` (b = 1) or ``torch.bmm`` of ``shape`` over
    ``repeats`` rounds of about 20 ms."""
    b, m, k, n = shape
    a, c = torch.randn(b, m, k), torch.randn(b, k, n)
    if b == 1:
        op = functools.partial(torch.mm, a[0], c[0])
    else:
        op = functools.partial(torch.bmm, a, c)
    return 2 * b * m * k * n / min(_times(op, repeats, 0.02)) / 1e9


def square_peak(
    threads: int, sizes=(1024, 2048, 3072), repeats: int = 3
) -> dict[str, float]:
    """``peak_square_gflops_<t>t``: the best ``torch.mm`` rate (2n³ FLOPs) over square
    ``sizes`` at ``threads`` threads; ``load_<t>t``: the 1-minute load average after."""
    with compute.threads(threads):
        best = max(gemm_rate((1, n, n, n), repeats) for n in sizes)
    return {
        f"peak_square_gflops_{threads}t": best,
        f"load_{threads}t": os.getloadavg()[0],
    }


# ---------------------------------------------------------------- ConvNet workloads


def _data(batch: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(batch, 1, 28, 28, generator=g)
    return x, torch.randint(0, 10, (batch,), generator=g)


def trained_like_convnet(seed: int = 0) -> models.ConvNet:
    """A ConvNet in eval mode with non-trivial batch-norm statistics (three batches of
    random images), standing in for a trained one: the cost does not depend on the
    weights."""
    torch.manual_seed(seed)
    net = models.ConvNet().train()
    with torch.no_grad():
        for _ in range(3):
            net(torch.rand(100, 1, 28, 28))
    return net.eval()


def input_gradient_step(forward, x, y, *, counting=False) -> Callable[[], Any]:
    """One attack step's work: ∇ₓ Σ CE(f(x), y) (``counting``: through
    ``.backward()``, the same arithmetic, for :func:`flops`)."""

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
    """OffAdvTrain's step: PGD-``steps`` on the second half of the batch (through the
    attack view, :func:`advmanifold.science.attacks.adversarial_examples`), then one
    Adam step on the clean half and the examples."""
    from ..science.attacks import adversarial_examples

    h = len(x) // 2

    def objective(m, xb, yb):
        x_adv = adversarial_examples(m, xb[h:], yb[h:], eps=eps, steps=steps, seed=0)
        return F.cross_entropy(m(torch.cat([xb[:h], x_adv])), yb)

    return training_step(model, x, y, objective)


def mlp_pgd_shapes(batch: int, sizes=(784, 1568, 1568, 10)) -> set[Shape]:
    """The GEMMs of an input-gradient step of the MLP at ``batch``: forward
    [batch × a]·[a × b] and backward [batch × b]·[b × a] per layer."""
    found = set()
    for a, b in pairwise(sizes):
        found |= {(1, batch, a, b), (1, batch, b, a)}
    return found


def convnet_rates(
    threads: Iterable[int] = (1, 2),
    *,
    peak_sizes=(1024, 2048, 3072),
    repeats: int = 5,
    pgd_steps: int = 40,
    batch: int = 100,
    extra_shapes: Iterable[Shape] = (),
    extra_rates: dict[int, dict[str, float]] | None = None,
    seed: int = 0,
) -> Timed:
    """At each thread count t: the peak (see the module docstring) and the seconds,
    GFLOP/s and fraction of that peak of the ConvNet's training step (Adam, ``batch``
    images), its attack step (∇ₓ of ``batch``/2 images through the attack view) and
    its adversarial-training step (PGD-``pgd_steps`` on half the batch, then the
    training step; FLOPs: ``pgd_steps`` attack steps + one training step, the
    attack's two extra forward passes uncounted).

    ``peak_gflops_<t>t`` is the best rate measured at t threads: of the square
    products (``peak_square_gflops_<t>t``), of the workloads' GEMMs and
    ``extra_shapes`` (``peak_shapes_gflops_<t>t``), and of the workloads themselves
    and ``extra_rates[t]`` (GFLOP/s measured elsewhere, e.g. ``{"pgd": 60.0}``, whose
    fractions come out as ``<name>_fraction_of_peak``). So every fraction is ≤ 1 by
    construction; a workload that beats every GEMM timed alone sets the peak, and
    ``peak_from_workload_<t>t`` = 1 then says that those timings were disturbed."""
    metrics: dict[str, Any] = {}
    rows: list[dict[str, Any]] = []
    x, y = _data(batch, seed)
    xa, ya = x[: batch // 2], y[: batch // 2]
    for t in threads:
        metrics.update(square_peak(t, peak_sizes, 3))
        with compute.threads(t):
            work, shapes = _convnet_workloads(x, y, xa, ya, pgd_steps, seed)
            seconds = {k: _median_time(fn, repeats) for k, (fn, _) in work.items()}
            # best of at least five rounds: one slow round must not lower the peak
            shape_best = max(
                gemm_rate(s, max(repeats, 5)) for s in shapes | set(extra_shapes)
            )
        rates = {k: count / seconds[k] / 1e9 for k, (_, count) in work.items()}
        found = _peak_metrics(
            t,
            metrics[f"peak_square_gflops_{t}t"],
            shape_best,
            rates,
            (extra_rates or {}).get(t, {}),
        )
        metrics.update(found)
        peak = found[f"peak_gflops_{t}t"]
        for name, (_, count) in work.items():
            metrics.update(
                _workload_metrics(name, t, seconds[name], rates[name], count, peak)
            )
            rows.append(
                {
                    "piece": "convnet",
                    "candidate": name,
                    "threads": t,
                    "seconds": seconds[name],
                    "gflops": rates[name],
                    "fraction_of_peak": rates[name] / peak,
                }
            )
    return metrics, rows


def _convnet_workloads(
    x: Tensor, y: Tensor, xa: Tensor, ya: Tensor, pgd_steps: int, seed: int
) -> tuple[dict[str, tuple[Callable[[], Any], int]], set[Shape]]:
    """At the current thread count: name → (step, its FLOPs) of the attack step (on
    ``xa``), the training step and the adversarial-training step (on ``x``), and the
    GEMMs the attack and training steps run."""
    net = trained_like_convnet(seed)
    with models.frozen(net):
        view = models.attack_view(net)
        attack = input_gradient_step(view, xa, ya)
        attack_flops = flops(input_gradient_step(view, xa, ya, counting=True))
        shapes = gemm_shapes(attack)
    train_flops = flops(training_step(models.ConvNet(), x, y))
    shapes |= gemm_shapes(training_step(models.ConvNet(), x, y))
    work = {
        "attack_step": (attack, attack_flops),
        "train_step": (training_step(models.ConvNet(), x, y), train_flops),
        "adv_train_step": (
            adversarial_training_step(
                trained_like_convnet(seed).train(), x, y, steps=pgd_steps
            ),
            pgd_steps * attack_flops + train_flops,
        ),
    }
    return work, shapes


def _peak_metrics(
    t: int,
    square: float,
    shape_best: float,
    rates: dict[str, float],
    others: dict[str, float],
) -> dict[str, float]:
    """The peak at ``t`` threads: the best of the square products, the GEMM shapes,
    the workloads' ``rates`` and the ``others`` measured elsewhere (whose fractions of
    it are included), with where it came from."""
    gemm = max(square, shape_best)
    peak = max(gemm, *rates.values(), *others.values())
    metrics = {
        f"peak_shapes_gflops_{t}t": shape_best,
        f"peak_gflops_{t}t": peak,
        f"peak_from_shapes_{t}t": int(shape_best > square),
        f"peak_from_workload_{t}t": int(peak > gemm),
    }
    for name, rate in others.items():
        metrics[f"{name}_fraction_of_peak"] = rate / peak
    return metrics


def _workload_metrics(
    name: str, t: int, seconds: float, rate: float, count: int, peak: float
) -> dict[str, float]:
    """Milliseconds, GFLOP/s and fraction of ``peak`` of workload ``name`` (``count``
    FLOPs in ``seconds``) at ``t`` threads, and its MFLOPs."""
    return {
        f"{name}_ms_{t}t": 1e3 * seconds,
        f"{name}_gflops_{t}t": rate,
        f"{name}_fraction_of_peak_{t}t": rate / peak,
        f"{name}_mflop": count / 1e6,
    }


# ---------------------------------------------------------------- levers


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


_COMPILE_SCRIPT = """
import json, sys, time, torch
from advmanifold.science import compute, models
from advmanifold.chapters import throughput as T
compute.set_threads(1)
net = T.trained_like_convnet()
x, y = T._data(50)
with models.frozen(net):
    view = models.attack_view(net)
    eager = T.input_gradient_step(view, x, y)
    start = time.perf_counter()
    compiled = T.input_gradient_step(torch.compile(view), x, y)
    compiled()
    cold = time.perf_counter() - start
    repeats = int(sys.argv[1])
    warm, eager = T._median_time(compiled, repeats), T._median_time(eager, repeats)
print(json.dumps({"cold_s": cold, "warm_s": warm, "eager_s": eager}))
"""


def compile_lever(repeats: int = 3, limit_s: float = 60.0) -> dict[str, Any]:
    """``torch.compile`` of the attack view in a fresh process at one thread: the cold
    compile (seconds, first call included; torch's on-disk caches as found) and the
    warm step against the eager view in the same process; ``{"note": ...}`` if it
    fails or takes over ``limit_s``."""
    try:
        done = subprocess.run(
            [sys.executable, "-c", _COMPILE_SCRIPT, str(repeats)],
            capture_output=True,
            text=True,
            check=False,
            timeout=limit_s + 30,  # the import and the warm rounds
        )
    except subprocess.TimeoutExpired:
        return {"note": f"torch.compile took over {limit_s:.0f} s: skipped"}
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no message"])[-1]
        return {"note": f"torch.compile failed here ({last[:200]})"}
    found = json.loads(done.stdout.strip().splitlines()[-1])
    if found["cold_s"] > limit_s:
        return {"note": f"torch.compile took {found['cold_s']:.0f} s: skipped"}
    return found


_ATTACK_SCRIPT = """
import json, sys, time, torch
from advmanifold.science import compute, models
from advmanifold.chapters import throughput
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


#: the environment of a fresh process whose idle OpenMP threads sleep instead of
#: spinning (libgomp reads it once, when torch loads it)
PASSIVE = {"OMP_WAIT_POLICY": "PASSIVE"}


def _env(extra: dict[str, str] | None) -> dict[str, str]:
    """This process's environment without an OpenMP wait policy, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    return {**env, **(extra or {})}


def _run_script(script: str, *args, env=None) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", script, *map(str, args)],
        stdout=subprocess.PIPE,
        text=True,
        env=_env(env),
    )


def processes_vs_threads(seconds: float = 4.0) -> dict[str, float]:
    """Attack steps per second (batch 50, attack view) of one process with two
    threads (OpenMP's default wait policy, then ``OMP_WAIT_POLICY=PASSIVE``), then of
    two single-threaded processes running at the same time."""
    rates = {}
    for key, env in (("default", None), ("passive", PASSIVE)):
        one = _run_script(_ATTACK_SCRIPT, 2, seconds, env=env)
        rates[key] = json.loads(one.communicate()[0])["steps_per_s"]
    pair = [_run_script(_ATTACK_SCRIPT, 1, seconds) for _ in range(2)]
    processes_rate = sum(json.loads(p.communicate()[0])["steps_per_s"] for p in pair)
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
) -> Timed:
    """Seconds of one attack step (∇ₓ of 50 images of a trained-like ConvNet in eval
    mode; per 50 images for larger batches) under each lever of :func:`lever_names`, one
    at a time, mostly at one thread; ``speedup`` = t(plain, 1 thread) / t. Each row
    says whether the package keeps the lever and why, from this run's numbers.
    ``compile_s``: limit of :func:`compile_lever` (None: not run); ``parallel_s``:
    seconds of :func:`processes_vs_threads` (None, or one core: not run). The grouped
    lever times the convolution stacks only
    (:func:`advmanifold.science.models.conv_stack` with ``groups=3`` on 3 channels
    against one stack on 1), per model."""
    x, y = _data(max(150, *batches), seed)
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
            t, net, folded, x, y, max(batches), timed, parallel_s
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
        return _median_time(input_gradient_step(forward, xb, yb), repeats)

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

    t_grouped = _median_time(stack_step(grouped, x3), repeats) / 3
    t_single = _median_time(stack_step(single, x[:50]), repeats)
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
) -> dict[str, float]:
    """Time the levers at two threads into ``t`` and, with ``parallel_s``, processes
    against threads (:func:`processes_vs_threads`, returned; else ``{}``)."""
    with compute.threads(2):
        t["plain, 2 threads"] = timed(net)
        with models.frozen(net):
            t["attack view, 2 threads"] = timed(folded)
            t[f"batch {big} (per 50), 2 threads"] = (
                timed(folded, x[:big], y[:big]) * 50 / big
            )
    if parallel_s is None:
        return {}
    parallel = processes_vs_threads(parallel_s)
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
    """Lever → (whether the package keeps it, why), from this run's numbers."""

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


# ---------------------------------------------------------------- the unit


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

    from . import generalization as G

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
    """:func:`train_unit` after an untimed batch on ``device`` (lazy set-up)."""
    train_unit(device, method, data, decoder, s, seed, 0.0)  # warm-up batch
    return train_unit(device, method, data, decoder, s, seed, budget_s)


def _unit_inputs(
    epochs: int, n: int, seed: int, bundled_fonts: bool, train_steps: int = 40
):
    """Settings (paper, ``epochs``, ``train_steps``), decoder and training split."""
    from . import fonts as fonts_chapter
    from . import generalization as G
    from ..science import fonts

    files = fonts.matplotlib_font_files() if bundled_fonts else None
    proto = fonts_chapter.prototypes_unit(files=files)
    s = G.settings("paper", epochs=epochs, train_steps=train_steps)
    decoder = G.load_decoder(proto, s.n_fonts)
    return s, decoder, G.train_split(decoder, n, seed)


_UNIT_SCRIPT = """
import json, sys
from advmanifold.science import compute, models
from advmanifold.chapters import throughput as T
a = json.loads(sys.argv[1])
compute.set_threads(a["threads"])
s, decoder, data = T._unit_inputs(
    a["epochs"], a["n"], a["seed"], a["bundled_fonts"], a["train_steps"]
)
with models.attack_views(True):
    done, seconds = T._warm_train_unit(
        "cpu", a["method"], data, decoder, s, a["seed"], a["budget_s"]
    )
print(json.dumps({"batches": done, "seconds": seconds}))
"""


def _unit_in_process(args: dict, env, limit_s: float | None) -> tuple[int, float, bool]:
    """:func:`train_unit` at ``args["threads"]`` in a fresh process with ``env``;
    killed after ``limit_s``. Returns (batches, seconds, finished)."""
    try:
        done = subprocess.run(
            [sys.executable, "-c", _UNIT_SCRIPT, json.dumps(args)],
            capture_output=True,
            text=True,
            check=False,
            env=_env(env),
            timeout=limit_s,
        )
    except subprocess.TimeoutExpired:
        return 1, float(limit_s), False  # its first batch did not end in time
    if done.returncode != 0:
        raise RuntimeError(f"unit process failed:\n{done.stderr}")
    found = json.loads(done.stdout.strip().splitlines()[-1])
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
) -> Timed:
    """Seconds to train the generalization chapter's ``method`` unit at ``n`` with the
    paper's settings for ``epochs`` of its 20 epochs: before (attack views off, one
    thread, as main built it) and after (views on): one thread in this process, and
    every core in a fresh process, once with OpenMP's default wait policy and once
    with ``OMP_WAIT_POLICY=PASSIVE``; on the GPU too when ``gpu`` (default: if CUDA is
    available). Each timed run follows an untimed batch in its process (lazy set-up).
    A run at several threads stops after ``budget_s`` (None: never; it is
    killed at 4 · ``budget_s`` + 30 s, which bounds its time from below) and is scaled
    from the batches it trained, t · B / b. Fonts: the chapter's, or matplotlib's;
    ``train_steps``: PGD steps per batch (the paper's 40; fewer only to test)."""
    s, decoder, data = _unit_inputs(epochs, n, seed, bundled_fonts, train_steps)
    batches = epochs * -(-n // s.batch_size)
    cores = compute.cores()
    rows = []

    def row(name, done, seconds, finished=True):
        rows.append(_unit_row(name, done, seconds, finished, batches, epochs))

    unit = (method, data, decoder, s, seed)
    for name, views in (("before, 1 thread", False), ("after, 1 thread", True)):
        with compute.threads(1), models.attack_views(views):
            row(name, *_warm_train_unit("cpu", *unit))
    args = {
        "threads": cores,
        "epochs": epochs,
        "n": n,
        "seed": seed,
        "bundled_fonts": bundled_fonts,
        "method": method,
        "budget_s": budget_s,
        "train_steps": train_steps,
    }
    limit = None if budget_s is None else 4 * budget_s + 30
    for name, env in (
        (f"after, {cores} threads", None),
        (f"after, {cores} threads, passive wait", PASSIVE),
    ):
        row(name, *_unit_in_process(args, env, limit))
    if torch.cuda.is_available() if gpu is None else gpu:
        with models.attack_views(True):
            row("after, cuda", *_warm_train_unit("cuda", *unit))
    sizes = {"epochs": epochs, "n": n, "pgd_steps": train_steps, "batches": batches}
    return _unit_metrics(rows, cores, sizes), rows


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


# ---------------------------------------------------------------- denormals

_DENORMAL_SCRIPT = """
import json, sys, time, torch
from advmanifold.science import compute, models
setting, steps, window = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
sizes, scale = tuple(json.loads(sys.argv[4])), float(sys.argv[5])
torch.set_num_threads(2)
(torch.ones(1 << 22) * 2).sum()  # the OpenMP team exists before any flush
if setting == "main thread only":
    torch.set_flush_denormal(True)
elif setting == "every thread":
    compute.flush_denormals()
flushed = compute.denormals_flushed()
torch.manual_seed(0)
net = models.MLP(sizes)
opt = torch.optim.Adam(net.parameters(), lr=1e-3)
x = torch.rand(16, sizes[0])
rows, start = [], time.perf_counter()
for step in range(1, steps + 1):
    loss = (scale if step == 1 else 0.0) * net(x).sum()  # then a dead unit's zero
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    if step % window == 0:
        now = time.perf_counter()
        state = [v for s in opt.state.values() for v in s.values()]
        rows.append({"step": step, "steps_per_s": window / (now - start),
                     "denormals": compute.count_denormals([*net.parameters(), *state]),
                     "load": __import__("os").getloadavg()[0]})
        start = time.perf_counter()
print(json.dumps({"flushed": flushed, "rows": rows}))
"""

DENORMAL_SETTINGS = ("no flush", "main thread only", "every thread")


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
        done = subprocess.run(
            [
                sys.executable,
                "-c",
                _DENORMAL_SCRIPT,
                setting,
                str(steps),
                str(window),
                json.dumps(list(sizes)),
                repr(scale),
            ],
            capture_output=True,
            text=True,
            check=False,
            env=_env(PASSIVE),
        )
        if done.returncode != 0:
            raise RuntimeError(f"denormal process ({setting}) failed:\n{done.stderr}")
        out = json.loads(done.stdout.strip().splitlines()[-1])
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
