"""Where and at which angle a straight path crosses a decision boundary (Geyer et al.,
Fig. 2).

For a start x₀ (predicted class a) and an end x₁ (predicted class ≠ a), the path is
p(t) = x₀ + t v, v = x₁ − x₀, t ∈ [0, 1]. Bisection on the predicate
"argmax f(p(t)) = a" keeps a bracket [t_lo, t_hi] with class a at t_lo and another
class b at t_hi; after n iterations the crossing t* = (t_lo + t_hi)/2 is known to
2⁻ⁿ⁻¹. The boundary between a and b is the level set z_a − z_b = 0 of the logits,
with normal n = ∇ₓ(z_a − z_b) at p(t*). The angle between the path and the boundary
(a hyperplane locally) is::

    φ = arcsin( |⟨v, n⟩| / (‖v‖ ‖n‖) )  ∈ [0°, 90°],

90° when the path crosses perpendicularly, 0° when it runs along the boundary.
All examples are processed at once; only the bisection iterations are a loop.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import pandas as pd
import torch
from torch import Tensor

Forward = Callable[[Tensor], Tensor]


@dataclass
class Crossing:
    """Per-example crossing of the path x₀ → x₁ (``valid`` False where x₁ has class
    a)."""

    t: Tensor  # crossing position in [0, 1]
    point: Tensor  # p(t*), shape of x₀
    class_a: Tensor  # predicted class at x₀
    class_b: Tensor  # predicted class just past the crossing
    angle_deg: Tensor  # angle between path and boundary, degrees (NaN where not valid)
    valid: Tensor  # the path changes class
    normal: Tensor  # ∇ₓ(z_a − z_b) at the crossing, shape of x₀

    def to_frame(self, **columns) -> pd.DataFrame:
        return pd.DataFrame(
            {
                "t": self.t.cpu().numpy(),
                "class_a": self.class_a.cpu().numpy(),
                "class_b": self.class_b.cpu().numpy(),
                "angle_deg": self.angle_deg.cpu().numpy(),
                "valid": self.valid.cpu().numpy(),
                **columns,
            }
        )


def _classes(forward: Forward, x: Tensor) -> Tensor:
    with torch.no_grad():
        return forward(x).argmax(1)


def boundary_normals(forward: Forward, x: Tensor, a: Tensor, b: Tensor) -> Tensor:
    """n_i = ∇ₓ (z_a − z_b)(x_i) for each example (batched)."""
    x = x.detach().requires_grad_(True)
    with torch.enable_grad():
        logits = forward(x)
        margin = logits.gather(1, a[:, None]) - logits.gather(1, b[:, None])
        (normal,) = torch.autograd.grad(margin.sum(), x)
    return normal


def path_angle(v: Tensor, normal: Tensor) -> Tensor:
    """Angle (degrees) between each direction v_i and the hyperplane of normal n_i."""
    v, normal = v.reshape(v.shape[0], -1), normal.reshape(normal.shape[0], -1)
    cos = (v * normal).sum(1).abs() / (v.norm(dim=1) * normal.norm(dim=1))
    return torch.rad2deg(torch.asin(cos.clamp(0.0, 1.0)))


def crossing(
    forward: Forward,
    x0: Tensor,
    x1: Tensor,
    *,
    iterations: int = 24,
    batch_size: int = 2000,
) -> Crossing:
    """Bisection for the first class change from x₀'s class found on the path to x₁, and
    the angle at which the path crosses the boundary there (see module docstring)."""
    if int(iterations) != iterations or iterations < 1:
        raise ValueError(f"iterations must be an integer >= 1, got {iterations!r}")
    if x0.shape != x1.shape:
        raise ValueError(
            "x0 and x1 must have the same shape, "
            f"got {tuple(x0.shape)} and {tuple(x1.shape)}"
        )
    if batch_size < len(x0):
        parts = [
            crossing(
                forward,
                x0[i : i + batch_size],
                x1[i : i + batch_size],
                iterations=iterations,
                batch_size=batch_size,
            )
            for i in range(0, len(x0), batch_size)
        ]
        return Crossing(
            *(
                torch.cat([getattr(p, f) for p in parts])
                for f in (
                    "t",
                    "point",
                    "class_a",
                    "class_b",
                    "angle_deg",
                    "valid",
                    "normal",
                )
            )
        )
    x0, x1 = x0.detach(), x1.detach()
    v = x1 - x0
    shape = (-1,) + (1,) * (x0.ndim - 1)
    with torch.no_grad():
        logits0 = forward(x0)
    a, n_classes = logits0.argmax(1), logits0.shape[1]
    valid = _classes(forward, x1) != a
    lo = torch.zeros(len(x0), dtype=x0.dtype, device=x0.device)
    hi = torch.ones_like(lo)
    for _ in range(int(iterations)):
        mid = (lo + hi) / 2
        same = _classes(forward, x0 + mid.view(shape) * v) == a
        lo, hi = torch.where(same, mid, lo), torch.where(same, hi, mid)
    b = _classes(forward, x0 + hi.view(shape) * v)
    b = torch.where(
        b == a, (a + 1) % n_classes, b
    )  # only where not valid; keeps the gather defined
    t = (lo + hi) / 2
    point = x0 + t.view(shape) * v
    normal = boundary_normals(forward, point, a, b)
    angle = path_angle(v, normal)
    nan = torch.full_like(angle, torch.nan)
    return Crossing(
        t.where(valid, torch.nan), point, a, b, angle.where(valid, nan), valid, normal
    )
