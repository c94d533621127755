"""Projection onto the image of a differentiable decoder by latent search (FONTS).

For a perturbed image x̃ of known (font, letter), the closest on-manifold point is

    π(x̃) = dec(font, letter, θ*),
    θ* = argmin_{θ in the data box} ‖dec(font, letter, θ) − x̃‖²₂,

found by projected Adam on θ (lr 0.09, 100 steps, as in the code of Stutz et al.,
where the update step was commented out so that their distance equalled ‖δ‖₂),
started at the true θ and at ``restarts`` random θ; the best iterate of all starts
is kept, so the distance is never larger than from the true θ (examples that the true
θ reproduces exactly are not searched). Every example has its
own θ and Adam's update is per coordinate, so the batch is solved in one go.

The angle is measured at the clean point x = dec(font, letter, θ): between δ = x̃ − x
and the tangent space spanned by the six columns of ∂dec/∂θ (the analogue of the k-NN
subspace on MNIST).
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..decoders import FontDecoder, sample_theta, theta_box
from . import Projection, angle_from_norms


def tangent_residual(tangents: Tensor, delta: Tensor, rtol: float = 1e-6) -> Tensor:
    """‖δ − Pδ‖₂ per example, P the orthogonal projector onto the column span of
    ``tangents [N, D, k]`` (rank-deficient spans handled by a thresholded SVD)."""
    u, s, _ = torch.linalg.svd(tangents, full_matrices=False)
    basis = u * (s > rtol * s.amax(1, keepdim=True).clamp_min(1e-12)).unsqueeze(1)
    coeff = torch.einsum("ndk,nd->nk", basis, delta)
    return (delta - torch.einsum("ndk,nk->nd", basis, coeff)).norm(dim=1)


def project(
    decoder: FontDecoder,
    font: Tensor,
    letter: Tensor,
    x_tilde: Tensor,
    theta: Tensor,
    *,
    steps: int = 100,
    lr: float = 0.09,
    restarts: int = 0,
    ranges: str = "hard",
    reference: Tensor | None = None,
    seed: int = 0,
) -> tuple[Projection, Tensor]:
    """Closest point of the (font, letter) manifold to each ``x_tilde`` and its θ*.

    ``theta`` ``[N, 6]`` is the true θ of the clean example (first start, and where the
    tangent space is taken); ``reference`` the clean image (default
    dec(font, letter, θ)).
    Returns ``(Projection, θ* [N, 6])``.
    """
    if int(steps) != steps or steps < 0:
        raise ValueError(f"steps must be a non-negative integer, got {steps!r}")
    if int(restarts) != restarts or restarts < 0:
        raise ValueError(f"restarts must be a non-negative integer, got {restarts!r}")
    if not lr > 0:
        raise ValueError(f"lr must be > 0, got {lr!r}")
    lower, upper = (b.to(theta) for b in theta_box(ranges))
    target = x_tilde.detach().flatten(1)
    generator = torch.Generator().manual_seed(seed)
    best_theta = theta.detach().clone()
    with torch.no_grad():
        best = (decoder(font, letter, best_theta).flatten(1) - target).pow(2).sum(1)
    todo = (best > 0).nonzero().squeeze(1)  # examples on the manifold at θ: no search
    starts = [theta.detach()[todo]] + [
        sample_theta(len(todo), ranges, generator).to(theta) for _ in range(restarts)
    ]
    f, let, x = font[todo], letter[todo], target[todo]
    for start in starts if len(todo) else []:
        t = start.clone().requires_grad_(True)
        optimiser = torch.optim.Adam([t], lr=lr)
        for step in range(steps + 1):
            with torch.enable_grad():
                err = (decoder(f, let, t).flatten(1) - x).pow(2).sum(1)
            with torch.no_grad():
                better = err < best[todo]
                best_theta[todo[better]] = t.detach()[better]
                best[todo[better]] = err.detach()[better]
            if step == steps:
                break
            optimiser.zero_grad(set_to_none=True)
            err.sum().backward()
            optimiser.step()
            with torch.no_grad():
                t.copy_(torch.maximum(torch.minimum(t, upper), lower))
    with torch.no_grad():
        projected = decoder(font, letter, best_theta)
        clean = decoder(font, letter, theta) if reference is None else reference
        delta = (x_tilde - clean).flatten(1)
        delta_norm = delta.norm(dim=1)
        tangents = decoder.tangents(font, letter, theta.detach())
        residual = tangent_residual(tangents, delta)
    distance = (projected - x_tilde).flatten(1).norm(dim=1)
    angle = angle_from_norms(delta_norm, residual)
    return Projection(projected, distance, delta_norm, angle), best_theta
