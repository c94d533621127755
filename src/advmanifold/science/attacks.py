"""L∞ attacks on any differentiable map, one implementation for every chapter.

The attacked variable ``v`` can be an image (image-space attack), the affine
parameters θ of a decoder (FONTS on-manifold attack) or a latent code z
(MNIST on-manifold attack): the caller passes ``forward``, a map from ``v`` to
class logits, and the box ``[lower, upper]`` that ``v`` must stay in.

Projected gradient ascent on the cross-entropy of the true label (Madry et al.):

    v_{t+1} = Π_{B}( v_t + α · sign(∇_v CE(forward(v_t), y)) ),
    B = {v : ‖v − v_0‖∞ ≤ ε} ∩ [lower, upper].

``mode="first"`` keeps, per example, the first iterate whose predicted label
differs from ``y`` and stops updating that example (the setting of Stutz et al.);
fooled examples leave the batch, so later steps cost less. ``mode="best"`` runs
all steps and keeps the iterate of largest loss (the setting for robust
accuracy). Restarts re-run the attack from a fresh random start, in ``"first"``
mode only on the examples not fooled yet.

:func:`adam_attack` is the protocol of Stutz et al. (2019) for comparisons with their
numbers: Adam on δ from a random start, five independent attempts, and a success rate
averaged over (example, attempt) pairs rather than taken over the worst attempt.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from .compute import flush_denormals

Forward = Callable[[Tensor], Tensor]
Bound = float | Tensor | None

MODES = ("first", "best")


@dataclass
class AttackResult:
    """Outcome of an attack on a batch.

    ``adversarial`` has the shape of the attacked variable; ``success`` is True
    where the prediction on it differs from the label; ``steps`` counts the
    gradient steps used per example (summed over restarts).
    """

    adversarial: Tensor
    success: Tensor
    steps: Tensor

    @property
    def success_rate(self) -> float:
        return self.success.float().mean().item()


def _check(eps: float, steps: int, step_size: float, restarts: int, mode: str) -> None:
    if not eps > 0:
        raise ValueError(f"eps must be > 0, got {eps!r}")
    if int(steps) != steps or steps < 1:
        raise ValueError(f"steps must be an integer >= 1, got {steps!r}")
    if not step_size > 0:
        raise ValueError(f"step_size must be > 0, got {step_size!r}")
    if int(restarts) != restarts or restarts < 1:
        raise ValueError(f"restarts must be an integer >= 1, got {restarts!r}")
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")


def _bounds(
    v0: Tensor, eps: float, lower: Bound, upper: Bound
) -> tuple[Tensor, Tensor]:
    """Per-coordinate bounds of B = ε-ball around v0 ∩ [lower, upper]."""
    lo, hi = v0 - eps, v0 + eps
    if lower is not None:
        lo = torch.maximum(
            lo, torch.as_tensor(lower, dtype=v0.dtype, device=v0.device).expand_as(v0)
        )
    if upper is not None:
        hi = torch.minimum(
            hi, torch.as_tensor(upper, dtype=v0.dtype, device=v0.device).expand_as(v0)
        )
    return lo, hi


def _gradient(forward: Forward, v: Tensor, y: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Logits, per-example loss and ∇_v of the summed cross-entropy at v."""
    v = v.detach().requires_grad_(True)
    with torch.enable_grad():
        logits = forward(v)
        loss = F.cross_entropy(logits, y, reduction="none")
        (grad,) = torch.autograd.grad(loss.sum(), v)
    return logits.detach(), loss.detach(), grad


def _rows(t: Tensor, idx: Tensor) -> Tensor:
    """Rows ``idx`` of ``t`` (index_select: a row copy, much cheaper than advanced
    indexing)."""
    return t.index_select(0, idx)


def _pgd_once(
    forward, v0, y, lo, hi, eps, steps, step_size, random_start, mode, generator
):
    """One run of PGD from one start. Returns (iterate, fooled, steps used).

    In ``"first"`` mode the still-active examples are kept *compacted* (iterate, label,
    bounds): an example leaves these tensors when its label changes, so each step
    costs only the active examples' forward/backward pass plus a few elementwise ops;
    gathers happen only on the steps where some example leaves.
    """
    n = v0.shape[0]
    if random_start:
        noise = torch.rand(v0.shape, generator=generator).to(v0) * 2 - 1
        v = torch.clamp(v0 + eps * noise, lo, hi)
    else:
        v = v0.clone()
    used = torch.zeros(n, dtype=torch.long, device=v0.device)
    fooled = torch.zeros(n, dtype=torch.bool, device=v0.device)
    if mode == "first":
        idx = torch.arange(n, device=v0.device)
        va, ya, loa, hia = v.clone(), y, lo, hi
        taken = 0
        for _ in range(steps):
            logits, _, grad = _gradient(forward, va, ya)
            wrong = logits.argmax(1) != ya
            if wrong.any():
                done = idx[wrong]
                fooled[done] = True
                used[done] = taken
                v.index_copy_(0, done, va[wrong])
                keep = (~wrong).nonzero().squeeze(1)
                if keep.numel() == 0:
                    return v, fooled, used
                idx, va, ya, loa, hia, grad = (
                    idx[keep],
                    _rows(va, keep),
                    ya[keep],
                    _rows(loa, keep),
                    _rows(hia, keep),
                    _rows(grad, keep),
                )
            # v ← clip_[lo, hi](v + α · sign(g)), in place on the compacted iterate
            va = torch.clamp(grad.sign().mul_(step_size).add_(va), loa, hia)
            taken += 1
        # the last iterate has not been evaluated yet
        with torch.no_grad():
            logits = forward(va)
        fooled[idx] = logits.argmax(1) != ya
        used[idx] = taken
        v.index_copy_(0, idx, va)
        return v, fooled, used
    best_v, best_loss = v.clone(), torch.full((n,), -float("inf"), device=v0.device)
    for _ in range(steps):
        _, loss, grad = _gradient(forward, v, y)
        better = loss > best_loss
        best_v[better] = v[better]
        best_loss = torch.where(better, loss, best_loss)
        v = torch.clamp(grad.sign().mul_(step_size).add_(v), lo, hi)
        used += 1
    # the last iterate has not been evaluated yet
    with torch.no_grad():
        loss = F.cross_entropy(forward(v), y, reduction="none")
        better = loss > best_loss
        best_v[better] = v[better]
        fooled = forward(best_v).argmax(1) != y
    return best_v, fooled, used


def pgd(
    forward: Forward,
    x: Tensor,
    y: Tensor,
    *,
    eps: float,
    steps: int = 40,
    step_size: float | None = None,
    lower: Bound = 0.0,
    upper: Bound = 1.0,
    random_start: bool = True,
    restarts: int = 1,
    mode: str = "first",
    batch_size: int = 1000,
    seed: int | None = 0,
) -> AttackResult:
    """L∞ PGD with sign steps, box constraints, restarts and per-example early stop.

    ``step_size`` defaults to 2.5 ε / steps (Madry et al.). ``lower``/``upper``
    are scalars, tensors broadcastable to one example, or None for no box.
    The random start draws δ ~ U[−ε, ε] per coordinate (then clips to the box)
    from a generator seeded with ``seed``, so results are reproducible.
    """
    _check(eps, steps, 1.0 if step_size is None else step_size, restarts, mode)
    step_size = 2.5 * eps / steps if step_size is None else step_size
    if x.shape[0] != y.shape[0]:
        raise ValueError(
            f"x and y must have the same length, got {x.shape[0]} and {y.shape[0]}"
        )
    flush_denormals()
    generator = torch.Generator().manual_seed(seed) if seed is not None else None
    out, success = (
        x.detach().clone(),
        torch.zeros(len(x), dtype=torch.bool, device=x.device),
    )
    used = torch.zeros(len(x), dtype=torch.long, device=x.device)
    for start in range(0, len(x), batch_size):
        sl = slice(start, start + batch_size)
        xb, yb = x[sl].detach(), y[sl]
        lo, hi = _bounds(xb, eps, lower, upper)
        best_loss = torch.full((len(xb),), -float("inf"), device=x.device)
        for r in range(restarts):
            todo = (
                (~success[sl]).nonzero().squeeze(1)
                if mode == "first"
                else torch.arange(len(xb), device=x.device)
            )
            if todo.numel() == 0:
                break
            v, fooled, n = _pgd_once(
                forward,
                xb[todo],
                yb[todo],
                lo[todo],
                hi[todo],
                eps,
                steps,
                step_size,
                random_start or r > 0,
                mode,
                generator,
            )
            used[sl][todo] += n
            if mode == "first":
                out[sl][todo[fooled]] = v[fooled]
                if r == restarts - 1:  # keep the last iterate of examples never fooled
                    out[sl][todo[~fooled]] = v[~fooled]
                success[sl][todo[fooled]] = True
            else:
                with torch.no_grad():
                    loss = F.cross_entropy(forward(v), yb, reduction="none")
                better = loss > best_loss
                out[sl][better], best_loss[better] = v[better], loss[better]
                success[sl][better] = fooled[better]
    return AttackResult(out, success, used)


def fgsm(
    forward: Forward,
    x: Tensor,
    y: Tensor,
    *,
    eps: float,
    lower: Bound = 0.0,
    upper: Bound = 1.0,
) -> AttackResult:
    """Fast gradient sign method: v = Π_box(x + ε · sign(∇_x CE(forward(x), y)))."""
    if not eps > 0:
        raise ValueError(f"eps must be > 0, got {eps!r}")
    lo, hi = _bounds(x.detach(), eps, lower, upper)
    _, _, grad = _gradient(forward, x, y)
    v = torch.minimum(torch.maximum(x.detach() + eps * grad.sign(), lo), hi)
    with torch.no_grad():
        success = forward(v).argmax(1) != y
    return AttackResult(
        v, success, torch.ones(len(x), dtype=torch.long, device=x.device)
    )


@torch.no_grad()
def robust_accuracy(
    forward: Forward, x: Tensor, y: Tensor, result: AttackResult
) -> float:
    """Fraction of examples classified correctly both clean and under attack."""
    clean = forward(x).argmax(1) == y
    return (clean & ~result.success).float().mean().item()


# --- the original protocol of Stutz et al. (2019) -------------------------------------

ADAM_BETAS = (0.9, 0.999)
ADAM_EPS = 1e-8


@dataclass
class AttemptsResult:
    """Outcome of an attack run ``attempts`` times from independent random starts.

    ``success [A, N]``: attempt a changed the label of example n; ``iteration [A, N]``:
    the first iterate (0 … steps) whose label differs, −1 where none; ``adversarial
    [A, N, ...]``: that iterate (the last one where none)."""

    adversarial: Tensor
    success: Tensor
    iteration: Tensor

    def per_attempt_success(self, correct: Tensor) -> float:
        """The mean over (attempt, example) pairs of the correctly classified examples,

            Σ_a Σ_n [success_an ∧ correct_n] / (A · Σ_n correct_n),

        the original's ``raw_success``: an example fooled in 2 of 5 attempts counts
        0.4 (not 1, as "fooled by any attempt" would). 0 if nothing is correct."""
        correct = correct.to(self.success.device).bool()
        n_pairs = self.success.shape[0] * int(correct.sum())
        return (self.success & correct).sum().item() / max(n_pairs, 1)


def _ball_start(
    v0: Tensor, lo: Tensor, hi: Tensor, eps: float, generator
) -> Tensor:
    """v0 + δ clipped to [lo, hi], δ = ε · u · g / ‖g‖∞ with g ~ N(0, I) on the free
    coordinates (lo < hi) and u ~ U[0, 1] per example: uniform in the *radius* along
    a random direction (the original's ``uniform_ball``), not uniform in volume."""
    free = (hi > lo).to(v0.dtype)
    g = torch.randn(v0.shape, generator=generator).to(v0) * free
    scale = g.flatten(1).abs().amax(1).clamp_min(1e-12)
    u = torch.rand(len(v0), generator=generator).to(v0)
    shape = (-1,) + (1,) * (v0.ndim - 1)
    return torch.clamp(v0 + (eps * u / scale).view(shape) * g, lo, hi)


def _adam_once(forward, v0, y, lo, hi, eps, steps, lr, generator):
    """One attempt on every row; returns (iterate, fooled, first fooled iteration)."""
    n = v0.shape[0]
    v = _ball_start(v0, lo, hi, eps, generator)
    out = v.clone()
    iteration = torch.full((n,), -1, dtype=torch.long, device=v0.device)
    idx = torch.arange(n, device=v0.device)
    va, ya, loa, hia = v, y, lo, hi
    m, s = torch.zeros_like(v), torch.zeros_like(v)
    beta1, beta2 = ADAM_BETAS
    for i in range(steps + 1):
        if i < steps:
            logits, _, grad = _gradient(forward, va, ya)
        else:
            with torch.no_grad():
                logits = forward(va)
        wrong = logits.argmax(1) != ya
        if wrong.any():
            iteration[idx[wrong]] = i
            out.index_copy_(0, idx[wrong], va[wrong])
            keep = (~wrong).nonzero().squeeze(1)
            if keep.numel() == 0:
                break
            idx, ya = idx[keep], ya[keep]
            va, loa, hia, m, s = (_rows(t, keep) for t in (va, loa, hia, m, s))
            if i < steps:
                grad = _rows(grad, keep)
        if i == steps:
            out.index_copy_(0, idx, va)
            break
        # Adam on δ minimising the error −CE: its gradient is −∇CE
        t = i + 1
        m.mul_(beta1).add_(grad, alpha=-(1 - beta1))
        s.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        denom = (s.sqrt() / math.sqrt(1 - beta2**t)).add_(ADAM_EPS)
        va = torch.clamp(va - (lr / (1 - beta1**t)) * m / denom, loa, hia)
    return out, iteration >= 0, iteration


def adam_attack(
    forward: Forward,
    x: Tensor,
    y: Tensor,
    *,
    eps: float,
    steps: int = 40,
    lr: float = 0.005,
    attempts: int = 5,
    lower: Bound = 0.0,
    upper: Bound = 1.0,
    batch_size: int = 1000,
    seed: int | None = 0,
) -> AttemptsResult:
    """The L∞ attack of Stutz et al. (2019), ``attempts`` times per example.

    Each attempt starts at a random point of the ε-ball (:func:`_ball_start`) and runs
    Adam (lr, β = (0.9, 0.999), no decay) on δ to minimise −CE(forward(x + δ), y),
    projecting x + δ onto B = {‖δ‖∞ ≤ ε} ∩ [lower, upper] before every evaluation.
    The label is checked at each of the ``steps + 1`` iterates; an attempt succeeds
    at the first iterate whose label differs from ``y`` and stops there. Rows of all
    attempts are batched together (``batch_size`` examples per chunk, times
    ``attempts``). ``lower``/``upper`` broadcast to one example (a coordinate with
    lower = upper, such as the font and letter carried by a θ attack, stays fixed and
    gets no noise)."""
    _check(eps, steps, lr, attempts, "first")
    if x.shape[0] != y.shape[0]:
        raise ValueError(
            f"x and y must have the same length, got {x.shape[0]} and {y.shape[0]}"
        )
    flush_denormals()
    generator = torch.Generator().manual_seed(seed) if seed is not None else None
    n = len(x)
    adversarial = x.detach().unsqueeze(0).repeat(attempts, *(1,) * x.ndim)
    iteration = torch.full((attempts, n), -1, dtype=torch.long, device=x.device)
    for start in range(0, n, batch_size):
        sl = slice(start, start + batch_size)
        xb, yb = x[sl].detach(), y[sl]
        lo, hi = _bounds(xb, eps, lower, upper)
        rep = lambda t: t.repeat(attempts, *(1,) * (t.ndim - 1))  # noqa: E731
        v, _, it = _adam_once(
            forward, rep(xb), rep(yb), rep(lo), rep(hi), eps, steps, lr, generator
        )
        k = len(xb)
        adversarial[:, sl] = v.view(attempts, k, *x.shape[1:])
        iteration[:, sl] = it.view(attempts, k)
    return AttemptsResult(adversarial, iteration >= 0, iteration)
