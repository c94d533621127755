"""Threat models: what an attack moves, and inside which set.

Each is a small object that the PGD engine
(:func:`~advmanifold.science.attacks.engine.run_pgd`) drives through five methods:
``bind(x, rows)`` (the per-example context of a chunk, compacted with the iterate),
``origin(x)`` (the attacked variable at the clean point), ``random_start``, ``step``
(one ascent step, then the projection onto the set) and ``to_input`` (the variable →
the classifier's input).

- :class:`LinfBall`: v in the L∞ ball of radius ε around v₀, intersected with a box
  [lower, upper]; sign steps. With ``to_input`` a decoder it is an attack in a
  latent space (the latent z of the MNIST VAE-GANs, in the box of the test codes).
- :class:`L2Ball`: an image in the L2 ball around x ∩ [lower, upper]; normalised
  steps.
- :class:`SubspaceL2`: a perturbation δ in a subspace V = range(Q) within the L2 ball
  of a per-example radius, no box; the input is x + δ.

The FONTS threat models (θ in its data box with font and letter fixed, and the
second warp of the spatial-transformer attack) are in
:mod:`~advmanifold.science.attacks.theta`.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from .engine import TINY, Bound


def bounds(v0: Tensor, eps: float, lower: Bound, upper: Bound) -> tuple[Tensor, Tensor]:
    """Per-coordinate bounds of B = ε-ball around v0 ∩ [lower, upper]; ``lower`` and
    ``upper`` are scalars, tensors broadcastable to ``v0``, or None (no bound)."""
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


def clip(v: Tensor, lower, upper) -> Tensor:
    """v clipped to [lower, upper]; None: no bound on that side."""
    if lower is None and upper is None:
        return v
    return v.clamp(min=lower, max=upper)


def unit(v: Tensor) -> Tensor:
    """Each row of v (flattened) divided by its L2 norm (0 stays 0)."""
    norm = v.flatten(1).norm(dim=1).clamp_min(TINY)
    return v / norm.view(-1, *[1] * (v.ndim - 1))


def project_l2(delta: Tensor, eps: float | Tensor) -> Tensor:
    """Π_ε(δ) = δ · min(1, ε/‖δ‖₂) per example (first axis); ``eps`` a number or a
    tensor broadcast to δ's shape."""
    norm = delta.flatten(1).norm(dim=1).clamp_min(TINY)
    return delta * (eps / norm.view(-1, *[1] * (delta.ndim - 1))).clamp(max=1.0)


class LinfBall:
    """v in {‖v − v₀‖∞ ≤ ε} ∩ [lower, upper] with sign steps of ``step_size``:

        v_{t+1} = clip_B(v_t + α · sign(g_t)).

    The random start is v₀ + δ, δ ~ U[−ε, ε] per coordinate, clipped to B.
    ``to_input`` maps v to the classifier's input (None: v itself)."""

    def __init__(
        self,
        eps: float,
        lower: Bound = 0.0,
        upper: Bound = 1.0,
        step_size: float | None = None,
        to_input: Callable[[Tensor], Tensor] | None = None,
    ):
        self.eps, self.lower, self.upper = eps, lower, upper
        self.step_size, self.decode = step_size, to_input

    def bind(self, x: Tensor, rows: slice) -> tuple[Tensor, Tensor]:
        return bounds(x, self.eps, self.lower, self.upper)

    def origin(self, x: Tensor) -> Tensor:
        return x

    def random_start(self, v0: Tensor, ctx: tuple, generator) -> Tensor:
        lo, hi = ctx[:2]
        noise = torch.rand(v0.shape, generator=generator).to(v0) * 2 - 1
        return torch.clamp(v0 + self.eps * noise, lo, hi)

    def step(self, v: Tensor, grad: Tensor, ctx: tuple) -> Tensor:
        lo, hi = ctx[:2]
        # v ← clip_[lo, hi](v + α · sign(g))
        return torch.clamp(grad.sign().mul_(self.step_size).add_(v), lo, hi)

    def to_input(self, v: Tensor, ctx: tuple) -> Tensor:
        return v if self.decode is None else self.decode(v)


class L2Ball:
    """x̃ in {‖x̃ − x‖₂ ≤ ε} ∩ [lower, upper] with normalised steps:

        x̃_{t+1} = clip_[lower, upper]( x + Π_ε( x̃_t + α g_t / ‖g_t‖₂ − x ) ).

    Clipping to a box that contains x only shrinks each coordinate of δ towards 0,
    so the iterate stays in the ball. The random start draws δ uniformly in the ball
    (direction Gaussian, radius ε·U^{1/d})."""

    def __init__(self, eps: float, lower=0.0, upper=1.0, step_size=None):
        self.eps, self.lower, self.upper = eps, lower, upper
        self.step_size = step_size

    def bind(self, x: Tensor, rows: slice) -> tuple[Tensor]:
        return (x,)

    def origin(self, x: Tensor) -> Tensor:
        return x

    def random_start(self, v0: Tensor, ctx: tuple, generator) -> Tensor:
        (x,) = ctx
        n, d = x.shape[0], x[0].numel()
        direction = unit(torch.randn(n, d, generator=generator).to(x))
        radius = self.eps * torch.rand(n, 1, generator=generator).to(x) ** (1.0 / d)
        return clip(x + (radius * direction).view_as(x), self.lower, self.upper)

    def step(self, v: Tensor, grad: Tensor, ctx: tuple) -> Tensor:
        (x,) = ctx
        delta = v + self.step_size * unit(grad) - x
        return clip(x + project_l2(delta, self.eps), self.lower, self.upper)

    def to_input(self, v: Tensor, ctx: tuple) -> Tensor:
        return v


class SubspaceL2:
    """A perturbation δ in V = range(Q) with ‖δ‖₂ ≤ ε, no box; the input is x + δ:

        δ_{t+1} = Π_ε(Q(δ_t + α · Q g_t / ‖Q g_t‖₂)),   Π_ε(δ) = δ · min(1, ε/‖δ‖₂).

    ``eps`` and ``step_size`` are one number per example (``[N]``), so a whole ε
    grid is one batch; ``restrict`` is Q as a map (None: I). The random start is
    δ₀ = ε u Qn/‖Qn‖ with n ~ N(0, I) and u ~ U[0, 1] per example."""

    def __init__(
        self,
        eps: Tensor,
        step_size: Tensor,
        restrict: Callable[[Tensor], Tensor] | None = None,
    ):
        self.eps, self.step_size = eps, step_size
        self.q = restrict if restrict is not None else (lambda v: v)

    def bind(self, x: Tensor, rows: slice) -> tuple[Tensor, Tensor, Tensor]:
        shape = (-1, *[1] * (x.ndim - 1))
        return x, self.eps[rows].view(shape), self.step_size[rows].view(shape)

    def origin(self, x: Tensor) -> Tensor:
        return torch.zeros_like(x)

    def random_start(self, v0: Tensor, ctx: tuple, generator) -> Tensor:
        x, eps, _ = ctx
        noise = torch.randn(x.shape, generator=generator).to(x)
        radius = torch.rand(len(x), generator=generator).to(x).view(eps.shape)
        return unit(self.q(noise)) * radius * eps

    def step(self, v: Tensor, grad: Tensor, ctx: tuple) -> Tensor:
        _, eps, alpha = ctx
        return project_l2(self.q(v + alpha * unit(self.q(grad))), eps)

    def to_input(self, v: Tensor, ctx: tuple) -> Tensor:
        return ctx[0] + v
