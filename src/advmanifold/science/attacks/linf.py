"""L∞ attacks in input space: PGD (Madry et al.), FGSM, and the examples of
adversarial training.

Projected gradient ascent on the cross-entropy of the true label:

    v_{t+1} = Π_{B}( v_t + α · sign(∇_v CE(forward(v_t), y)) ),
    B = {v : ‖v − v_0‖∞ ≤ ε} ∩ [lower, upper],

the engine (:func:`~advmanifold.science.attacks.engine.run_pgd`) under the threat
model :class:`~advmanifold.science.attacks.threats.LinfBall`. ``forward`` may be any
differentiable map to class logits, so the same function attacks an image, a latent
code (``forward`` = classifier ∘ decoder) or any other variable in a box.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .engine import (
    AttackResult,
    Bound,
    Forward,
    check,
    gradient,
    largest_loss_examples,
    run_pgd,
    step_size_or_default,
)
from .threats import LinfBall, bounds


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
    ids: Tensor | None = None,
) -> AttackResult:
    """L∞ PGD with sign steps, box constraints, restarts and per-example early stop
    (modes ``"first"`` and ``"best"``, see :mod:`~advmanifold.science.attacks.engine`).

    ``step_size`` defaults to 2.5 ε / steps (Madry et al.). ``lower``/``upper``
    are scalars, tensors broadcastable to one example, or None for no box.
    The random start draws δ ~ U[−ε, ε] per coordinate (then clips to the box)
    from a generator seeded with ``seed``, so results are reproducible; with ``ids``
    (one integer per example), from one generator per example and restart, so that a
    split of ``x`` into chunks gives the same starts (:func:`~.engine.keyed_start`).
    """
    check(eps, steps, 1.0 if step_size is None else step_size, restarts, mode)
    return run_pgd(
        LinfBall(eps, lower, upper, step_size_or_default(eps, steps, step_size)),
        forward,
        x,
        y,
        steps=steps,
        restarts=restarts,
        mode=mode,
        random_start=random_start,
        batch_size=batch_size,
        seed=seed,
        ids=ids,
    )


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
    lo, hi = bounds(x.detach(), eps, lower, upper)
    _, _, grad = gradient(forward, x, y)
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


def adversarial_examples(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    *,
    eps: float,
    steps: int,
    step_size: float | None = None,
    lower=0.0,
    upper=1.0,
    seed: int | None = None,
) -> Tensor:
    """PGD examples of largest loss against ``model`` (random start), attacked
    through its :func:`advmanifold.science.models.attack_view` in eval mode (weights
    untouched): adversarial training's perturbed examples
    (:func:`~advmanifold.science.attacks.engine.largest_loss_examples`)."""
    check(eps, steps, 1.0 if step_size is None else step_size, 1, "best")
    threat = LinfBall(eps, lower, upper, step_size_or_default(eps, steps, step_size))
    return largest_loss_examples(model, threat, x, y, steps=steps, seed=seed)
