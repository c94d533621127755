"""Projectors onto a data manifold, one module each; all return a :class:`Projection`.

- :mod:`.linear`  a known linear subspace (PCA; PMNIST), exact;
- :mod:`.knn`     the span of the k nearest training images around an example (MNIST);
- :mod:`.decoder` the image of a differentiable decoder, by latent search (FONTS).

For a perturbed point x̃ = x + δ with projection π(x̃):
distance = ‖x̃ − π(x̃)‖₂, and the angle between δ and its projection onto the
manifold's tangent directions, θ = arccos(‖P δ‖ / ‖δ‖); θ ≈ 90° means δ leaves the
manifold orthogonally, and then distance ≈ ‖δ‖₂.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass
class Projection:
    """Per-example projection results (all tensors have the batch as first dim)."""

    projected: Tensor  # π(x̃), same shape as the input
    distance: Tensor  # ‖x̃ − π(x̃)‖₂
    delta_norm: Tensor  # ‖δ‖₂ (0 where no reference point was given)
    angle_deg: Tensor  # angle between δ and the manifold, degrees in [0, 90]

    def to_frame(self, **columns):
        """A tidy pandas DataFrame of distance, ‖δ‖₂ and angle, plus extra columns."""
        import pandas as pd

        return pd.DataFrame(
            {
                "distance": self.distance.cpu().numpy(),
                "delta_l2": self.delta_norm.cpu().numpy(),
                "angle_deg": self.angle_deg.cpu().numpy(),
                **columns,
            }
        )


def angle_from_norms(delta_norm: Tensor, residual_norm: Tensor) -> Tensor:
    """Angle between δ and the manifold, given ‖δ‖ and the norm of its off-manifold
    part: sin θ = ‖δ − Pδ‖ / ‖δ‖ (NaN where δ = 0)."""
    ratio = residual_norm / delta_norm
    return torch.rad2deg(torch.asin(ratio.clamp(0.0, 1.0))).where(
        delta_norm > 0, torch.nan
    )
