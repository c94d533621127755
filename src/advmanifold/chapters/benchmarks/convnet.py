"""The FONTS ConvNet workload against the machine: an honest peak and FLOP rates.

The peak at a thread count is the best GEMM rate over large square ``torch.mm``
products *and* over the GEMMs the workloads themselves run (:func:`gemm_shapes`);
each workload's rate (FLOPs counted by ``torch.utils.flop_counter``) is divided by
the peak of its own thread count. A workload spends at least Σᵢ fᵢ / rᵢ seconds on
GEMMs of fᵢ FLOPs that run at best at rate rᵢ, so its rate is at most maxᵢ rᵢ.
Timings on busy cores can break that bound, so the workloads' own rates belong to the
peak set too: every fraction is ≤ 1 by construction, none is capped, and a workload
that sets the peak is flagged (:func:`convnet_rates`).

:func:`convnet_piece` is the appendix's ConvNet piece: these rates, then the
attack-step levers (:mod:`.levers`) and the OnAdvTrain unit before and after
(:mod:`.unit`).
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Callable, Iterable, Mapping
from itertools import pairwise
from typing import Any

import torch
from torch import Tensor
from torch.utils._python_dispatch import TorchDispatchMode

from ...science import compute, models
from .harness import Timed, median_time, per_call_times
from .ceiling import attack_ceiling, bfloat16_lever
from .levers import attack_levers, grid_lever
from .unit import unit_time
from .workloads import (
    adversarial_training_step,
    input_gradient_step,
    random_batch,
    trained_like_convnet,
    training_step,
)

#: a GEMM: b independent products [m × k]·[k × n] (2·b·m·k·n FLOPs)
Shape = tuple[int, int, int, int]

# ---------------------------------------- FLOPs, GEMMs and peaks


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
    return 2 * b * m * k * n / min(per_call_times(op, repeats, 0.02)) / 1e9


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


def matmul_gflops(
    m: int = 1000, k: int = 1568, n: int = 1568, *, repeats: int = 5, inner: int = 5
) -> list[float]:
    """GFLOP/s of ``torch.mm`` [m×k]·[k×n] (2·m·k·n FLOPs), one value per round of
    ``inner`` products (after one warm-up product)."""
    a, b = torch.randn(m, k), torch.randn(k, n)
    out = torch.empty(m, n)
    seconds = per_call_times(
        functools.partial(torch.mm, a, b, out=out), repeats, inner=inner
    )
    return [2 * m * k * n / t / 1e9 for t in seconds]


def mlp_pgd_shapes(batch: int, sizes=(784, 1568, 1568, 10)) -> set[Shape]:
    """The GEMMs of an input-gradient step of the MLP at ``batch``: forward
    [batch × a]·[a × b] and backward [batch × b]·[b × a] per layer."""
    found = set()
    for a, b in pairwise(sizes):
        found |= {(1, batch, a, b), (1, batch, b, a)}
    return found


# ---------------------------------------- the ConvNet's rates


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
    ``peak_from_workload_<t>t`` = 1 then says that those timings were disturbed.

    (Over 60 lines for this docstring: the peak's definition belongs here.)"""
    metrics: dict[str, Any] = {}
    rows: list[dict[str, Any]] = []
    x, y = random_batch(batch, seed)
    xa, ya = x[: batch // 2], y[: batch // 2]
    counts, shapes = _convnet_counts(x, y, xa, ya, pgd_steps, seed)
    for t in threads:
        metrics.update(square_peak(t, peak_sizes, 3))
        with compute.threads(t):
            work = _convnet_workloads(x, y, xa, ya, pgd_steps, seed, counts)
            # the adversarial-training step runs the attack and training steps timed
            # just before it, on the same shapes: they are its warm-up (at one thread
            # its first call cost what its later ones did), so no call of it, which is
            # a PGD-40 attack, is spent on one
            seconds = {
                k: median_time(fn, repeats, warmup=k != "adv_train_step")
                for k, (fn, _) in work.items()
            }
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


def _convnet_counts(
    x: Tensor, y: Tensor, xa: Tensor, ya: Tensor, pgd_steps: int, seed: int
) -> tuple[dict[str, int], set[Shape]]:
    """The FLOPs of the attack step (on ``xa``), the training step and the
    adversarial-training step (on ``x``), and the GEMMs the attack and training steps
    run: counted once, as they do not depend on the thread count."""
    net = trained_like_convnet(seed)
    with models.frozen(net):
        view = models.attack_view(net)
        attack_flops = flops(input_gradient_step(view, xa, ya, counting=True))
        shapes = gemm_shapes(input_gradient_step(view, xa, ya))
    train_flops = flops(training_step(models.ConvNet(), x, y))
    shapes |= gemm_shapes(training_step(models.ConvNet(), x, y))
    counts = {
        "attack_step": attack_flops,
        "train_step": train_flops,
        "adv_train_step": pgd_steps * attack_flops + train_flops,
    }
    return counts, shapes


def _convnet_workloads(
    x: Tensor,
    y: Tensor,
    xa: Tensor,
    ya: Tensor,
    pgd_steps: int,
    seed: int,
    counts: dict[str, int],
) -> dict[str, tuple[Callable[[], Any], int]]:
    """At the current thread count: name → (step, its FLOPs of ``counts``) of the
    attack step (on ``xa``), the training step and the adversarial-training step (on
    ``x``)."""
    net = trained_like_convnet(seed)
    with models.frozen(net):
        view = models.attack_view(net)
    steps = {
        "attack_step": input_gradient_step(view, xa, ya),
        "train_step": training_step(models.ConvNet(), x, y),
        "adv_train_step": adversarial_training_step(
            trained_like_convnet(seed).train(), x, y, steps=pgd_steps
        ),
    }
    return {name: (step, counts[name]) for name, step in steps.items()}


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


def fractions_of_peak(metrics: Mapping[str, Any]) -> dict[str, float]:
    """The metrics named ``*_fraction_of_peak`` or ``*_fraction_of_peak_<t>t``."""
    pattern = re.compile(r"_fraction_of_peak(_\d+t)?$")
    return {k: v for k, v in metrics.items() if pattern.search(k)}


def convnet_piece(
    cfg: Mapping[str, Any], log, seed: int = 0, extra_rates=None
) -> tuple[dict[str, Any], list[dict[str, Any]], list[str]]:
    """The FONTS ConvNet against the machine:
    peaks, step rates and fractions at one thread and every core (``extra_rates``: rates
    of other pieces, ``{threads: {name: GFLOP/s}}``, put beside them), the levers, and
    the OnAdvTrain unit before and after. Returns (metrics, rows, notes)."""
    counts = sorted({1, compute.cores()})
    metrics: dict[str, Any] = {"cuda_available": int(torch.cuda.is_available())}
    notes: list[str] = []
    log(f"SGEMM peaks and ConvNet steps at {counts} thread(s) ...")
    # the MLP's GEMMs too, so that the PGD piece's rate is divided by a peak that
    # covers its own shapes
    extra = mlp_pgd_shapes(cfg["pgd_examples"])
    m, rows = convnet_rates(
        counts,
        peak_sizes=cfg["convnet_peak_sizes"],
        repeats=cfg["convnet_repeats"],
        pgd_steps=cfg["convnet_pgd_steps"],
        extra_shapes=extra,
        extra_rates=extra_rates,
        seed=seed,
    )
    metrics.update(m)
    for t in counts:
        if m[f"peak_from_workload_{t}t"]:
            notes.append(
                f"at {t} thread(s) a workload ran faster than every GEMM timed alone "
                "(timings disturbed by other load): its rate is that peak"
            )
    # the unit first: its fresh processes at every core (spinning, then passive) each
    # measure one process with two threads of processes against threads before their
    # unit, which the levers then need not start processes for
    parallel_s = cfg["convnet_parallel_s"] if compute.cores() > 1 else None
    log(
        f"OnAdvTrain unit, N = {cfg['convnet_unit_n']}, "
        f"{cfg['convnet_unit_epochs']} epoch(s), before and after ..."
    )
    unit_m, unit_r = unit_time(
        epochs=cfg["convnet_unit_epochs"],
        n=cfg["convnet_unit_n"],
        seed=seed,
        bundled_fonts=cfg["decoder_bundled_fonts"],
        budget_s=cfg["convnet_unit_budget_s"],
        train_steps=cfg["convnet_pgd_steps"],
        attack_s=parallel_s,
    )
    one_process = unit_m.pop("one_process_attack_rates", None)
    log("attack-step levers, one at a time ...")
    m, r = attack_levers(
        repeats=cfg["convnet_repeats"],
        compile_s=cfg["convnet_compile_s"],
        parallel_s=parallel_s,
        seed=seed,
        one_process=one_process,
    )
    notes += m.pop("lever_notes")
    metrics.update(m)
    metrics.update(grid_lever(seed=seed))
    log("the OnAdvTrain attack against its floor, and bfloat16 ...")
    metrics.update(attack_ceiling(repeats=cfg["convnet_repeats"], seed=seed))
    metrics.update(bfloat16_lever(seed=seed))
    metrics.update(unit_m)
    rows += r + unit_r
    return metrics, rows, notes
