"""Manifold alignment of input gradients (Geyer et al.) and the alignment loss.

For an input gradient g = ∇ₓ L(θ, x, y) and the projector P = P_M onto the data
manifold's tangent space (:class:`advmanifold.science.manifolds.linear.LinearManifold`):

- norm ratio   ‖g‖ / ‖P g‖   (≥ 1; 1 = the gradient lies in the manifold) — the
               paper's metric and loss;
- cosine       ‖P g‖ / ‖g‖   (in [0, 1]; the cosine of the angle between g and the
               manifold; the paper's Fig. 1 reports this one);
- rejection    ‖g − P g‖     (the off-manifold part's norm);
- rejection share  (‖g − P g‖² + ε) / (‖g‖² + ε)   (= 1 − cosine² for ‖g‖² ≫ ε; in
               [0, 1]; a zero gradient scores 1, the worst value).

The alignment objective is α · mean_batch m(g) for one of these measures m (the paper's
ratio by default), differentiated with respect to the weights by double backpropagation
(``create_graph=True``). The ratio is unbounded: on FONTS with adversarial training its
pull outweighs a weak cross-entropy and the network stops classifying (the
generalization chapter's AlignedAdv, test error ≈ 0.89), so that chapter uses the
bounded rejection share, whose zero-gradient value is its maximum: a network cannot
lower it by going flat. :func:`aligned_cross_entropy`
is the paper's loss CE + α · ratio from ONE forward pass (the gradient of the summed CE
is both the loss's input gradient and the penalty's g); :func:`alignment_penalty` is the
penalty alone, to compose with other objectives, e.g. adversarial training::

    training.combined(training.adversarial(0.1), alignment_penalty(manifold, alpha=1.0))
"""

from __future__ import annotations

from typing import Callable

import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor, nn

#: floor of ‖P g‖ in the ratio, so an (almost) orthogonal gradient gives a large,
#: finite penalty; also the ε of the rejection share.
TINY = 1e-12


def input_gradients(
    model: nn.Module | Callable[[Tensor], Tensor],
    x: Tensor,
    y: Tensor,
    *,
    create_graph: bool = False,
    batch_size: int | None = None,
) -> Tensor:
    """Per-example g_i = ∇_{x_i} CE(f(x_i), y_i), all examples at once.

    The summed loss is differentiated: with no interaction between examples (no batch
    norm in training mode) its gradient with respect to x_i is example i's gradient.
    ``create_graph=True`` keeps the graph so that a function of g can be
    differentiated with respect to the weights (then ``batch_size`` must be None).
    """
    if create_graph and batch_size is not None:
        raise ValueError(
            "batch_size must be None when create_graph=True (the graph spans the batch)"
        )
    if x.shape[0] != y.shape[0]:
        raise ValueError(
            f"x and y must have the same length, got {x.shape[0]} and {y.shape[0]}"
        )
    if batch_size is not None and batch_size < len(x):
        return torch.cat(
            [
                input_gradients(model, x[i : i + batch_size], y[i : i + batch_size])
                for i in range(0, len(x), batch_size)
            ]
        )
    x = x.detach().requires_grad_(True)
    with torch.enable_grad():
        loss = F.cross_entropy(model(x), y, reduction="sum")
        (grad,) = torch.autograd.grad(loss, x, create_graph=create_graph)
    return grad if create_graph else grad.detach()


def norms(
    g: Tensor, manifold, labels: Tensor | None = None
) -> tuple[Tensor, Tensor, Tensor]:
    """‖g‖, ‖P g‖ and ‖g − P g‖ per example (differentiable)."""
    flat = g.reshape(g.shape[0], -1)
    on = manifold.project_vectors(flat, labels)
    return flat.norm(dim=1), on.norm(dim=1), (flat - on).norm(dim=1)


def ratio(g: Tensor, manifold, labels: Tensor | None = None) -> Tensor:
    """‖g‖ / ‖P g‖ per example (≥ 1; 1 for a gradient inside the subspace, and 1 for
    g = 0, the ratio's minimum: a zero gradient never scores below an aligned one)."""
    full, on, _ = norms(g, manifold, labels)
    return torch.where(full > 0, full / on.clamp_min(TINY), torch.ones_like(full))


def rejection_share(g: Tensor, manifold, labels: Tensor | None = None) -> Tensor:
    """(‖g − P g‖² + ε) / (‖g‖² + ε) per example, ε = :data:`TINY`: the share of the
    gradient's squared norm off the manifold, in [0, 1]; 1 (the maximum) for g = 0."""
    full, _, off = norms(g, manifold, labels)
    return (off.square() + TINY) / (full.square() + TINY)


#: the measures an alignment objective can penalise
PENALTIES = {"ratio": ratio, "rejection_share": rejection_share}


def _penalty(measure: str):
    if measure not in PENALTIES:
        raise ValueError(f"measure must be one of {tuple(PENALTIES)}, got {measure!r}")
    return PENALTIES[measure]


def cosine(g: Tensor, manifold, labels: Tensor | None = None) -> Tensor:
    """‖P g‖ / ‖g‖ per example, in [0, 1] (NaN for g = 0)."""
    full, on, _ = norms(g, manifold, labels)
    return (on / full).where(full > 0, torch.nan)


def rejection(g: Tensor, manifold, labels: Tensor | None = None) -> Tensor:
    """‖g − P g‖ per example."""
    return norms(g, manifold, labels)[2]


def alignment_frame(
    g: Tensor, manifold, labels: Tensor | None = None, **columns
) -> pd.DataFrame:
    """Tidy table of the three metrics (plus ‖g‖) for a batch of gradients."""
    with torch.no_grad():
        full, on, off = norms(g, manifold, labels)
    full, on, off = full.cpu(), on.cpu(), off.cpu()
    return pd.DataFrame(
        {
            "grad_norm": full.numpy(),
            "ratio": torch.where(full > 0, full / on.clamp_min(TINY), 1.0).numpy(),
            "cosine": (on / full).where(full > 0, torch.nan).numpy(),
            "rejection": off.numpy(),
            **columns,
        }
    )


def alignment_penalty(
    manifold, alpha: float = 1.0, *, labels_from: str = "true", measure: str = "ratio"
):
    """Objective f(model, x, y) = α · mean_i m(g_i) with g_i = ∇ₓ CE (double
    backprop) and m = ``measure`` (:data:`PENALTIES`; the paper's ‖g‖/‖P g‖ by
    default).

    For a per-class manifold each gradient is projected onto the subspace of the
    example's true label (``labels_from="true"``, the only choice implemented: the
    training data are projected onto that subspace too).
    """
    if not alpha >= 0:
        raise ValueError(f"alpha must be >= 0, got {alpha!r}")
    if labels_from != "true":
        raise ValueError(f"labels_from must be 'true', got {labels_from!r}")
    m = _penalty(measure)

    def objective(model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
        g = input_gradients(model, x, y, create_graph=True)
        labels = y if manifold.mode == "per_class" else None
        return alpha * m(g, manifold, labels).mean()

    objective.__name__ = f"alignment(alpha={alpha}, {measure})"
    return objective


def aligned_cross_entropy(manifold, alpha: float = 1.0, *, measure: str = "ratio"):
    """Objective f(model, x, y) = mean_i CE_i + α · mean_i m(g_i), g_i = ∇_{x_i} CE_i,
    m = ``measure``, from one forward pass (equal to
    ``combined(cross_entropy(), alignment_penalty(...))``, which runs the model
    twice)."""
    if not alpha >= 0:
        raise ValueError(f"alpha must be >= 0, got {alpha!r}")
    m = _penalty(measure)

    def objective(model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
        x = x.detach().requires_grad_(True)
        loss = F.cross_entropy(model(x), y, reduction="sum")
        (g,) = torch.autograd.grad(loss, x, create_graph=True)
        labels = y if manifold.mode == "per_class" else None
        return loss / len(x) + alpha * m(g, manifold, labels).mean()

    objective.__name__ = f"cross_entropy + alignment(alpha={alpha}, {measure})"
    return objective
