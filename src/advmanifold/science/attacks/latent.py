"""An L∞ attack in a latent space: the code z of a generative model, the image its
decoding (:mod:`advmanifold.science.generative`, the MNIST chapter).

The threat model is :class:`~advmanifold.science.attacks.threats.LinfBall` on z:
‖z − z₀‖∞ ≤ η, z in a per-coordinate box (the codes of the test set, or none), sign
steps; its ``to_input`` is the decoder, so the classifier sees dec(z).
"""

from __future__ import annotations

from typing import Callable

from torch import Tensor

from .engine import AttackResult, Bound, Forward, check, run_pgd, step_size_or_default
from .threats import LinfBall


def latent_pgd(
    classifier: Forward,
    decode: Callable[[Tensor], Tensor],
    z: Tensor,
    y: Tensor,
    *,
    eta: float,
    lower: Bound = None,
    upper: Bound = None,
    steps: int = 40,
    step_size: float | None = None,
    batch_size: int = 1000,
    seed: int | None = 0,
    ids: Tensor | None = None,
) -> AttackResult:
    """PGD on the codes ``z`` against ``classifier`` ∘ ``decode`` (random start, the
    first code that changes the label kept; ``step_size`` defaults to 2.5 η / steps).
    The result's ``adversarial`` holds the codes; ``ids``: per-example random starts
    (:func:`~advmanifold.science.attacks.engine.keyed_start`)."""
    check(eta, steps, 1.0 if step_size is None else step_size, 1, "first")
    threat = LinfBall(
        eta, lower, upper, step_size_or_default(eta, steps, step_size), decode
    )
    return run_pgd(
        threat,
        classifier,
        z,
        y,
        steps=steps,
        batch_size=batch_size,
        seed=seed,
        ids=ids,
    )
