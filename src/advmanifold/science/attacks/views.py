"""Margin-type attacks through two-logit views, run by the L∞ PGD.

A view u(v) of the classifier with two logits and label 0 turns the engine's
cross-entropy into another loss with the same sign steps:

- :func:`margin_logits`: u = (0, M), M = max_{j≠y} f_j − f_y (Carlini–Wagner): CE(u,
  0) = softplus(M) increases with M, so its sign-gradient steps are exactly those of
  the margin, and u is "misclassified" exactly when M > 0 (:func:`margin_pgd`);
- :func:`targeted`: u = (LSE_{j≠t} z_j, z_t): CE(u, 0) = log(1 + e^{z_t − LSE_{j≠t}
  z_j}) grows as class t gains, and u is "misclassified" exactly when
  z_t > LSE_{j≠t} z_j, which implies argmax z = t (:func:`targeted_pgd`).
"""

from __future__ import annotations

import torch
from torch import Tensor

from .engine import AttackResult, Bound, Forward
from .linf import pgd


def margin_logits(forward: Forward, y: Tensor) -> Forward:
    """v ↦ logits (0, M(v)) with M = max_{j≠y} f_j(v) − f_y(v), for a full batch."""

    def two_class(v: Tensor) -> Tensor:
        if len(v) != len(y):
            raise RuntimeError("margin logits need the whole batch (labels are fixed)")
        logits = forward(v)
        true = logits.gather(1, y.unsqueeze(1)).squeeze(1)
        other = logits.scatter(1, y.unsqueeze(1), float("-inf")).amax(1)
        return torch.stack([torch.zeros_like(true), other - true], 1)

    return two_class


def margin_pgd(
    forward: Forward,
    x: Tensor,
    y: Tensor,
    *,
    eps: float,
    steps: int = 100,
    restarts: int = 1,
    lower=0.0,
    upper=1.0,
    seed: int = 0,
) -> AttackResult:
    """L∞ sign-PGD on the Carlini–Wagner margin M = max_{j≠y} f_j − f_y (fooled: M > 0).

    :func:`~advmanifold.science.attacks.linf.pgd` on the two logits (0, M) and label
    0 (:func:`~advmanifold.science.attacks.views.margin_logits`): the iterate of
    largest loss (mode ``"best"``) is the one of largest margin over steps and
    restarts. One chunk (the labels are fixed).
    """
    zeros = torch.zeros_like(y)
    return pgd(
        margin_logits(forward, y),
        x,
        zeros,
        eps=eps,
        steps=steps,
        lower=lower,
        upper=upper,
        restarts=restarts,
        mode="best",
        batch_size=max(1, len(x)),
        seed=seed,
    )


def targeted(forward: Forward, target: int) -> Forward:
    """A two-logit view of ``forward`` for a *targeted* attack with the untargeted
    PGD: u(x) = (LSE_{j≠t} z_j, z_t), label 0 (module docstring). Call
    ``pgd(targeted(model, t), x, zeros, ...)``, or :func:`targeted_pgd`."""

    def forward_t(x: Tensor) -> Tensor:
        z = forward(x)
        others = torch.cat([z[:, :target], z[:, target + 1 :]], dim=1)
        return torch.stack([others.logsumexp(1), z[:, target]], dim=1)

    return forward_t


def targeted_pgd(
    forward: Forward,
    x: Tensor,
    target: int,
    *,
    eps: float,
    steps: int,
    seed: int,
    lower: Bound = 0.0,
    upper: Bound = 1.0,
) -> AttackResult:
    """Targeted L∞ PGD towards class ``target`` (largest-loss iterate); success
    means class ``target`` wins over the log-sum-exp of the others."""
    zeros = torch.zeros(len(x), dtype=torch.long, device=x.device)
    return pgd(
        targeted(forward, target),
        x,
        zeros,
        eps=eps,
        steps=steps,
        lower=lower,
        upper=upper,
        mode="best",
        seed=seed,
    )
