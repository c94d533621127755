"""L2 projected gradient descent (Madry et al.), the Euclidean companion of
:func:`advmanifold.science.attacks.pgd`.

Ascent on the cross-entropy of the true label with normalised gradient steps, then
projection onto the L2 ball around x and clipping to the box:

    v_{t+1} = clip_[lower, upper]( x + Π_ε( v_t + α g_t / ‖g_t‖₂ − x ) ),
    Π_ε(δ) = δ · min(1, ε / ‖δ‖₂),   g_t = ∇_v CE(f(v_t), y).

Clipping to a box that contains x only shrinks each coordinate of δ towards 0, so the
iterate stays in the ball: ‖v − x‖₂ ≤ ε and lower ≤ v ≤ upper. Modes and result as in
:mod:`advmanifold.science.attacks`: ``"first"`` keeps each example's first iterate
whose label differs from ``y`` and stops updating it; ``"best"`` runs every step and
keeps the iterate of largest loss. The random start draws δ uniformly in the ball
(direction Gaussian, radius ε·U^{1/d}).
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from .attacks import MODES, AttackResult
from .compute import flush_denormals

Forward = Callable[[Tensor], Tensor]
TINY = 1e-12


def _loss_and_gradient(forward: Forward, v: Tensor, y: Tensor):
    """Logits, per-example CE and its gradient ∇_v at v (summed over the batch).

    The CE is evaluated in float64 from the logits: in float32, 1 − p_y rounds to 0
    once the logit margin exceeds about 16, and the gradient loses its true-class
    term (a wrong direction, which normalised steps would follow)."""
    v = v.detach().requires_grad_(True)
    with torch.enable_grad():
        logits = forward(v)
        loss = F.cross_entropy(logits.double(), y, reduction="none")
        (grad,) = torch.autograd.grad(loss.sum(), v)
    return logits.detach(), loss.detach(), grad


def project_l2(delta: Tensor, eps: float) -> Tensor:
    """Π_ε(δ) = δ · min(1, ε/‖δ‖₂) per example (first axis)."""
    norm = delta.flatten(1).norm(dim=1).clamp_min(TINY)
    scale = (eps / norm).clamp(max=1.0)
    return delta * scale.view(-1, *([1] * (delta.ndim - 1)))


def _clip(v: Tensor, lower, upper) -> Tensor:
    """v clipped to [lower, upper]; None: no bound on that side."""
    if lower is None and upper is None:
        return v
    return v.clamp(min=lower, max=upper)


def _step(v, x, grad, eps, step_size, lower, upper):
    """One projected step from v with gradient ``grad``; x the clean examples."""
    flat = grad.flatten(1)
    unit = flat / flat.norm(dim=1, keepdim=True).clamp_min(TINY)
    delta = v + step_size * unit.view_as(v) - x
    return _clip(x + project_l2(delta, eps), lower, upper)


def _random_start(x: Tensor, eps: float, generator, lower, upper) -> Tensor:
    """x + δ, δ uniform in the ε-ball, clipped to the box."""
    n, d = x.shape[0], x[0].numel()
    direction = torch.randn(n, d, generator=generator).to(x)
    direction = direction / direction.norm(dim=1, keepdim=True).clamp_min(TINY)
    radius = eps * torch.rand(n, 1, generator=generator).to(x) ** (1.0 / d)
    return _clip(x + (radius * direction).view_as(x), lower, upper)


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
    bound on that side). Returns an :class:`~advmanifold.science.attacks.AttackResult`
    whose ``steps`` counts the gradient steps taken per example."""
    if not eps > 0:
        raise ValueError(f"eps must be > 0, got {eps!r}")
    if isinstance(steps, bool) or int(steps) != steps or steps < 1:
        raise ValueError(f"steps must be an integer >= 1, got {steps!r}")
    step_size = 2.5 * eps / steps if step_size is None else step_size
    if not step_size > 0:
        raise ValueError(f"step_size must be > 0, got {step_size!r}")
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if x.shape[0] != y.shape[0]:
        raise ValueError(
            f"x and y must have the same length, got {x.shape[0]} and {y.shape[0]}"
        )
    flush_denormals()
    generator = torch.Generator().manual_seed(seed) if seed is not None else None
    parts = [
        _once(
            forward,
            x[i : i + batch_size].detach(),
            y[i : i + batch_size],
            eps,
            int(steps),
            step_size,
            lower,
            upper,
            random_start,
            mode,
            generator,
        )
        for i in range(0, len(x), batch_size)
    ]
    if not parts:
        return AttackResult(
            x.detach().clone(),
            torch.zeros(0, dtype=torch.bool, device=x.device),
            torch.zeros(0, dtype=torch.long, device=x.device),
        )
    return AttackResult(*(torch.cat(p) for p in zip(*parts)))


def _once(forward, x, y, eps, steps, step_size, lower, upper, random_start, mode, gen):
    """One run on a chunk: (iterate kept, fooled, steps used)."""
    n = len(x)
    v = _random_start(x, eps, gen, lower, upper) if random_start else x.clone()
    used = torch.zeros(n, dtype=torch.long, device=x.device)
    fooled = torch.zeros(n, dtype=torch.bool, device=x.device)
    if mode == "first":
        active = torch.arange(n, device=x.device)
        for _ in range(steps):
            logits, _, grad = _loss_and_gradient(forward, v[active], y[active])
            wrong = logits.argmax(1) != y[active]
            fooled[active[wrong]] = True
            active, grad = active[~wrong], grad[~wrong]
            if active.numel() == 0:
                return v, fooled, used
            v[active] = _step(v[active], x[active], grad, eps, step_size, lower, upper)
            used[active] += 1
        with torch.no_grad():
            fooled[active] = forward(v[active]).argmax(1) != y[active]
        return v, fooled, used
    best = v.clone()
    best_loss = torch.full((n,), -float("inf"), dtype=torch.float64, device=x.device)
    for _ in range(steps):
        _, loss, grad = _loss_and_gradient(forward, v, y)
        better = loss > best_loss
        best[better], best_loss = v[better], torch.where(better, loss, best_loss)
        v = _step(v, x, grad, eps, step_size, lower, upper)
        used += 1
    with torch.no_grad():
        loss = F.cross_entropy(forward(v).double(), y, reduction="none")
        better = loss > best_loss
        best[better] = v[better]
        fooled = forward(best).argmax(1) != y
    return best, fooled, used
