"""The FONTS decoder: prototype (font, letter) → affine spatial transformer → image.

The latent code is z = (font, letter, θ) with θ = (t_x, t_y, λ_x, λ_y, s, r):
translation, shear, scale and rotation (radians). Following Stutz et al. (2019),
θ defines the 2×3 matrix

    A(θ) = [[s cos r − s sin r λ_x,   −s sin r + s cos r λ_x,   t_x],
            [s cos r λ_y + s sin r,   −s sin r λ_y + s cos r,   t_y]]

(rotation and scale with the two shears mixed in as in the original code; it is not a
plain product of a rotation and a shear matrix), used as in a spatial
transformer (Jaderberg et al. 2015): output pixel at normalised coordinates p reads
the prototype at A·(p, 1) (bilinear, zeros outside, ``align_corners=True``), then
the image is clamped to [0, 1]. Coordinates span [−1, 1] over the image, so
t_x = 0.2 moves the glyph left by a tenth of the image width, and s > 1 *shrinks* it.

Because x = dec(font, letter, θ) is differentiable in θ, the data manifold of a
(font, letter) is known exactly: the image of the θ-box under the decoder. Attacks
on θ (on-manifold adversarial examples) are in
:mod:`advmanifold.science.attacks.theta`.
"""

from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

THETA_NAMES = ("t_x", "t_y", "shear_x", "shear_y", "scale", "rotation")

#: Uniform ranges of θ (lower, upper), in the order of :data:`THETA_NAMES`. ``"hard"``
#: is the setting of the experiments of Stutz et al.; the two easier ones existed in
#: their code.
THETA_RANGES = {
    "easy": (
        (-0.1, -0.1, -0.2, -0.2, 0.9, -math.pi / 6),
        (0.1, 0.1, 0.2, 0.2, 1.1, math.pi / 6),
    ),
    "medium": (
        (-0.2, -0.2, -0.4, -0.4, 0.85, -math.pi / 3),
        (0.2, 0.2, 0.4, 0.4, 1.15, math.pi / 3),
    ),
    "hard": (
        (-0.2, -0.2, -0.5, -0.5, 0.75, -math.pi / 2),
        (0.2, 0.2, 0.5, 0.5, 1.15, math.pi / 2),
    ),
}
IDENTITY = torch.tensor([0.0, 0.0, 0.0, 0.0, 1.0, 0.0])


def theta_box(ranges: str = "hard") -> tuple[Tensor, Tensor]:
    """Lower and upper bounds ``[6]`` of θ for a named range."""
    if ranges not in THETA_RANGES:
        raise ValueError(f"ranges must be one of {tuple(THETA_RANGES)}, got {ranges!r}")
    lower, upper = THETA_RANGES[ranges]
    return torch.tensor(lower), torch.tensor(upper)


def sample_theta(
    n: int, ranges: str = "hard", generator: torch.Generator | None = None
) -> Tensor:
    """``[n, 6]`` parameters, each uniform in its range."""
    lower, upper = theta_box(ranges)
    return lower + (upper - lower) * torch.rand(n, 6, generator=generator)


def affine_matrices(theta: Tensor) -> Tensor:
    """The matrices A(θ) ``[N, 2, 3]`` of the module docstring for θ ``[N, 6]``."""
    if theta.ndim != 2 or theta.shape[1] != 6:
        raise ValueError(f"theta must have shape [N, 6], got {tuple(theta.shape)}")
    tx, ty, lx, ly, s, r = theta.unbind(1)
    cos, sin = torch.cos(r) * s, torch.sin(r) * s
    row0 = torch.stack([cos - sin * lx, -sin + cos * lx, tx], 1)
    row1 = torch.stack([cos * ly + sin, -sin * ly + cos, ty], 1)
    return torch.stack([row0, row1], 1)


@functools.lru_cache(maxsize=8)
def _base_grid(h: int, w: int, dtype: torch.dtype, device: str) -> Tensor:
    """The homogeneous coordinates (x, y, 1) of the output pixels ``[3, H·W]``,
    row-major, on [−1, 1] (``align_corners=True``), as ``F.affine_grid`` builds
    them."""

    def axis(k: int) -> Tensor:  # a single pixel sits at 0, as in F.affine_grid
        steps = torch.linspace(-1, 1, k, dtype=dtype, device=device)
        return steps if k > 1 else torch.zeros(1, dtype=dtype, device=device)

    y, x = torch.meshgrid(axis(h), axis(w), indexing="ij")
    return torch.stack([x.flatten(), y.flatten(), torch.ones_like(x).flatten()])


def affine_grid(matrices: Tensor, size) -> Tensor:
    """``F.affine_grid(matrices, size, align_corners=True)`` in closed form: the
    sampling point of pixel p is A·(p, 1), for all pixels at once one product
    ``[2N, 3] @ [3, H·W]`` (no batched ``bmm`` of N thin matrices); a view
    ``[N, H, W, 2]``."""
    n, h, w = size[0], size[-2], size[-1]
    base = _base_grid(h, w, matrices.dtype, str(matrices.device))
    return (matrices.reshape(2 * n, 3) @ base).view(n, 2, h, w).permute(0, 2, 3, 1)


def warp(images: Tensor, theta: Tensor, *, closed_form: bool = False) -> Tensor:
    """Spatial transformer: ``images [N, C, H, W]`` warped by A(θ), clamped to
    [0, 1]; its grid from ``F.affine_grid``, or with ``closed_form`` from
    :func:`affine_grid` (the same up to float rounding, faster with its θ-gradient
    for small images)."""
    matrices = affine_matrices(theta).to(images.dtype)
    if closed_form:
        grid = affine_grid(matrices, images.shape)
    else:
        grid = F.affine_grid(matrices, list(images.shape), align_corners=True)
    return F.grid_sample(
        images, grid, mode="bilinear", padding_mode="zeros", align_corners=True
    ).clamp(0, 1)


class FontDecoder(nn.Module):
    """dec(font, letter, θ) for prototypes ``[F, L, H, W]`` (see
    :mod:`advmanifold.science.glyphs`)."""

    def __init__(self, prototypes: Tensor):
        super().__init__()
        if prototypes.ndim != 4:
            raise ValueError(
                "prototypes must have shape [fonts, letters, H, W], "
                f"got {tuple(prototypes.shape)}"
            )
        self.register_buffer("prototypes", prototypes.float())

    @property
    def n_fonts(self) -> int:
        return self.prototypes.shape[0]

    def forward(
        self, font: Tensor, letter: Tensor, theta: Tensor, closed_form: bool = False
    ) -> Tensor:
        """Images ``[N, 1, H, W]`` for index tensors ``font``, ``letter`` ``[N]`` and θ
        ``[N, 6]`` (``closed_form``: see :func:`warp`)."""
        images = self.prototypes[font, letter].unsqueeze(1)
        return warp(images, theta, closed_form=closed_form)

    @torch.no_grad()
    def tangents(
        self, font: Tensor, letter: Tensor, theta: Tensor, h: float = 1e-3
    ) -> Tensor:
        """Jacobian ∂dec/∂θ as ``[N, H·W, 6]``, the tangent directions of the manifold
        at θ, by
        central differences (dec(θ + h e_i) − dec(θ − h e_i)) / 2h; grid_sample has no
        forward-mode derivative, and the warp is piecewise linear in θ for small h."""
        columns = []
        for i in range(6):
            step = torch.zeros_like(theta)
            step[:, i] = h
            diff = self(font, letter, theta + step) - self(font, letter, theta - step)
            columns.append(diff.flatten(1) / (2 * h))
        return torch.stack(columns, 2)


def make_dataset(
    decoder: FontDecoder,
    per_prototype: int,
    *,
    ranges: str = "hard",
    test_per_prototype: int = 0,
    seed: int = 0,
    batch_size: int = 20000,
) -> dict[str, Tensor]:
    """Images of every (font, letter) under ``per_prototype + test_per_prototype``
    random θ.

    Like the original split (112 θ per prototype: 96 train, 16 test), every font appears
    in both splits with different θ. Returns tensors ``x`` (float32 ``[N, 1, 28, 28]``),
    ``y`` (letter), ``font``, ``theta`` and the same with prefix ``test_``; examples are
    in font-major order.
    """
    for name, value in (
        ("per_prototype", per_prototype),
        ("test_per_prototype", test_per_prototype),
    ):
        if int(value) != value or value < 0:
            raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
    n_fonts, n_letters = decoder.prototypes.shape[:2]
    total = per_prototype + test_per_prototype
    generator = torch.Generator().manual_seed(seed)
    theta = sample_theta(n_fonts * n_letters * total, ranges, generator)
    theta = theta.view(n_fonts, n_letters, total, 6)
    font = torch.arange(n_fonts).view(-1, 1, 1).expand(n_fonts, n_letters, total)
    letter = torch.arange(n_letters).view(1, -1, 1).expand(n_fonts, n_letters, total)
    out = {}
    for prefix, part in (
        ("", slice(0, per_prototype)),
        ("test_", slice(per_prototype, total)),
    ):
        f, y = font[:, :, part].reshape(-1), letter[:, :, part].reshape(-1)
        t = theta[:, :, part].reshape(-1, 6)
        with torch.no_grad():
            chunks = [
                decoder(
                    f[i : i + batch_size], y[i : i + batch_size], t[i : i + batch_size]
                )
                for i in range(0, len(f), batch_size)
            ]
        x = torch.cat(chunks) if len(f) else torch.zeros(0, 1, 28, 28)
        out.update(
            {
                f"{prefix}x": x,
                f"{prefix}y": y.clone(),
                f"{prefix}font": f.clone(),
                f"{prefix}theta": t,
            }
        )
    return out

