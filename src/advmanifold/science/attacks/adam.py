"""The L∞ attack protocol of Stutz et al. (2019), for comparisons with their numbers.

Adam on δ from a random start in the ε-ball, ``attempts`` independent attempts per
example, each stopping at the first iterate whose label differs; the success rate is
averaged over (example, attempt) pairs (:meth:`AttemptsResult.per_attempt_success`)
rather than taken over the worst attempt. It runs under an L∞ threat model
(:class:`~advmanifold.science.attacks.threats.LinfBall` or the θ box of
:class:`~advmanifold.science.attacks.theta.ThetaBox`): the model's bounds and its map
to the classifier's input, with Adam's own start and steps.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from .engine import (
    Bound,
    Forward,
    check,
    check_lengths,
    composed,
    generator_of,
    gradient,
    rows,
)
from .threats import LinfBall
from ..compute import flush_denormals

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


def ball_start(v0: Tensor, lo: Tensor, hi: Tensor, eps: float, generator) -> Tensor:
    """v0 + δ clipped to [lo, hi], δ = ε · u · g / ‖g‖∞ with g ~ N(0, I) on the free
    coordinates (lo < hi) and u ~ U[0, 1] per example: uniform in the *radius* along
    a random direction (the original's ``uniform_ball``), not uniform in volume."""
    free = (hi > lo).to(v0.dtype)
    g = torch.randn(v0.shape, generator=generator).to(v0) * free
    scale = g.flatten(1).abs().amax(1).clamp_min(1e-12)
    u = torch.rand(len(v0), generator=generator).to(v0)
    shape = (-1,) + (1,) * (v0.ndim - 1)
    return torch.clamp(v0 + (eps * u / scale).view(shape) * g, lo, hi)


def _adam_once(threat, forward, v0, y, lo, hi, steps, lr, generator):
    """One attempt on every row; returns (iterate, fooled, first fooled iteration)."""
    n = v0.shape[0]
    v = ball_start(v0, lo, hi, threat.eps, generator)
    out = v.clone()
    iteration = torch.full((n,), -1, dtype=torch.long, device=v0.device)
    idx = torch.arange(n, device=v0.device)
    va, ya, loa, hia = v, y, lo, hi
    m, s = torch.zeros_like(v), torch.zeros_like(v)
    beta1, beta2 = ADAM_BETAS
    for i in range(steps + 1):
        through = composed(threat, forward, (loa, hia))
        if i < steps:
            logits, _, grad = gradient(through, va, ya)
        else:
            with torch.no_grad():
                logits = through(va)
        wrong = logits.argmax(1) != ya
        if wrong.any():
            iteration[idx[wrong]] = i
            out.index_copy_(0, idx[wrong], va[wrong])
            keep = (~wrong).nonzero().squeeze(1)
            if keep.numel() == 0:
                break
            idx, ya = idx[keep], ya[keep]
            va, loa, hia, m, s = (rows(t, keep) for t in (va, loa, hia, m, s))
            if i < steps:
                grad = rows(grad, keep)
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


def run_adam(
    threat: LinfBall,
    forward: Forward,
    x: Tensor,
    y: Tensor,
    *,
    steps: int = 40,
    lr: float = 0.005,
    attempts: int = 5,
    batch_size: int = 1000,
    seed: int | None = 0,
) -> AttemptsResult:
    """:func:`adam_attack` under an L∞ threat model (its bounds and ``to_input``)."""
    check(threat.eps, steps, lr, attempts, "first")
    check_lengths(x, y)
    flush_denormals()
    generator = generator_of(seed)
    n = len(x)
    adversarial = x.detach().unsqueeze(0).repeat(attempts, *(1,) * x.ndim)
    iteration = torch.full((attempts, n), -1, dtype=torch.long, device=x.device)
    for start in range(0, n, batch_size):
        sl = slice(start, start + batch_size)
        xb, yb = x[sl].detach(), y[sl]
        lo, hi = threat.bind(xb, sl)
        rep = lambda t: t.repeat(attempts, *(1,) * (t.ndim - 1))  # noqa: E731
        v, _, it = _adam_once(
            threat, forward, rep(xb), rep(yb), rep(lo), rep(hi), steps, lr, generator
        )
        k = len(xb)
        adversarial[:, sl] = v.view(attempts, k, *x.shape[1:])
        iteration[:, sl] = it.view(attempts, k)
    return AttemptsResult(adversarial, iteration >= 0, iteration)


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

    Each attempt starts at a random point of the ε-ball
    (:func:`~advmanifold.science.attacks.adam.ball_start`) and runs Adam (lr,
    β = (0.9, 0.999), no decay) on δ to minimise −CE(forward(x + δ), y), projecting
    x + δ onto B = {‖δ‖∞ ≤ ε} ∩ [lower, upper] before every evaluation. The label is
    checked at each of the ``steps + 1`` iterates; an attempt succeeds at the first
    iterate whose label differs from ``y`` and stops there. Rows of all attempts are
    batched together (``batch_size`` examples per chunk, times ``attempts``).
    ``lower``/``upper`` broadcast to one example (a coordinate with lower = upper,
    such as the font and letter carried by a θ attack, stays fixed and
    gets no noise)."""
    return run_adam(
        LinfBall(eps, lower, upper),
        forward,
        x,
        y,
        steps=steps,
        lr=lr,
        attempts=attempts,
        batch_size=batch_size,
        seed=seed,
    )
