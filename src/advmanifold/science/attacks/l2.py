"""L2 attacks: PGD in the Euclidean ball (Madry et al.), in the image box or
restricted to a subspace.

:func:`pgd_l2` ascends the cross-entropy of the true label with normalised gradient
steps, then projects onto the L2 ball around x and clips to the box (threat model
:class:`~advmanifold.science.attacks.threats.L2Ball`):

    v_{t+1} = clip_[lower, upper]( x + Π_ε( v_t + α g_t / ‖g_t‖₂ − x ) ),
    Π_ε(δ) = δ · min(1, ε / ‖δ‖₂),   g_t = ∇_v CE(f(v_t), y).

The CE is evaluated in float64 from the logits
(:func:`~advmanifold.science.attacks.engine.cross_entropy_float64`).

:func:`restricted_l2_pgd` moves δ within a subspace V = range(Q) instead, on the
logit margin and without a box (threat model
:class:`~advmanifold.science.attacks.threats.SubspaceL2`; Melamed et al. 2023, see
:mod:`advmanifold.science.implicit_bias`): the projector Q onto V and the projection
onto an L2 ball centred at 0 commute (Q is orthogonal, the ball's projection a radial
scaling), so every iterate lies in V ∩ B_ε.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from .. import checks
from .engine import (
    MODES,
    AttackResult,
    Forward,
    check_lengths,
    cross_entropy_float64,
    negative_margin,
    run_pgd,
    step_size_or_default,
)
from .threats import L2Ball, SubspaceL2


def pgd_l2(
    forward: Forward,
    x: Tensor,
    y: Tensor,
    *,
    eps: float,
    steps: int = 40,
    step_size: float | None = None,
    lower: float | None = 0.0,
    upper: float | None = 1.0,
    random_start: bool = True,
    mode: str = "first",
    batch_size: int = 1000,
    seed: int | None = 0,
) -> AttackResult:
    """L2 PGD with normalised gradient steps (module docstring); ``step_size``
    defaults to 2.5 ε / steps. ``x`` must lie in the box [lower, upper] (None: no
    bound on that side). Modes as in :mod:`~advmanifold.science.attacks.engine`; the
    random start draws δ uniformly in the ball. Returns an
    :class:`~advmanifold.science.attacks.engine.AttackResult` whose ``steps`` counts
    the gradient steps taken per example."""
    if not eps > 0:
        raise ValueError(f"eps must be > 0, got {eps!r}")
    checks.integer("steps", steps, minimum=1)
    step_size = step_size_or_default(eps, steps, step_size)
    if not step_size > 0:
        raise ValueError(f"step_size must be > 0, got {step_size!r}")
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    check_lengths(x, y)
    return run_pgd(
        L2Ball(eps, lower, upper, step_size),
        forward,
        x,
        y,
        steps=int(steps),
        mode=mode,
        random_start=random_start,
        batch_size=batch_size,
        seed=seed,
        loss=cross_entropy_float64,
    )


def restricted_l2_pgd(
    forward: Forward,
    x: Tensor,
    y: Tensor,
    *,
    eps: float | Tensor,
    steps: int = 20,
    restrict: Callable[[Tensor], Tensor] | None = None,
    step_size: float | Tensor | None = None,
    random_start: bool = True,
    batch_size: int = 1000,
    seed: int | None = 0,
) -> AttackResult:
    """L2 PGD on the margin loss within V = range(Q), Q = ``restrict`` (None: I):

        δ_{t+1} = Π_ε(Q(δ_t + α · Q g_t / ‖Q g_t‖₂)),
        g_t = ∇_δ [max_{j≠y} z_j − z_y](x + δ_t),   Π_ε(δ) = δ · min(1, ε/‖δ‖₂),

    α = ``step_size`` (default 2.5 ε / steps). ``eps`` (and ``step_size``) may be one
    number or one per example, so a whole ε grid is one batch. The random start is
    δ₀ = ε u Qn/‖Qn‖ with n ~ N(0, I) and u ~ U[0, 1] per example (seeded by
    ``seed``). An example is fooled at the first iterate whose prediction differs
    from y, and is kept there; ``steps`` counts the gradient steps each example
    took. No box. Returns the adversarial inputs x + δ."""
    n = x.shape[0]
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"x and y must have the same length, got {n} and {len(y)}")
    eps = torch.as_tensor(eps, dtype=x.dtype, device=x.device).expand(n)
    if not bool((eps > 0).all()):
        raise ValueError(f"eps must be > 0, got {eps.min().item()!r}")
    checks.integer("steps", steps, minimum=1)
    alpha = step_size_or_default(eps, steps, step_size)
    alpha = torch.as_tensor(alpha, dtype=x.dtype, device=x.device).expand(n)
    if not bool((alpha > 0).all()):
        raise ValueError(f"step_size must be > 0, got {alpha.min().item()!r}")
    result = run_pgd(
        SubspaceL2(eps, alpha, restrict),
        forward,
        x,
        y,
        steps=int(steps),
        random_start=random_start,
        batch_size=batch_size,
        seed=seed,
        loss=negative_margin,
    )
    result.adversarial = x.detach() + result.adversarial
    return result
