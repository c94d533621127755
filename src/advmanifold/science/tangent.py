"""The tangent space of the FONTS manifold at an image: the span of ∂dec/∂θ.

For x = dec(font, letter, θ) = clamp(S(P, A(θ) b)) — S the bilinear sampler of the
prototype P at the grid points A(θ) b_p of the output pixels p (b_p = (u_p, v_p, 1),
see :mod:`advmanifold.science.decoders`) — the Jacobian is, by the chain rule
(i = 1, 2 the grid coordinates),

    ∂x_p/∂θ_j = Σ_i  ∂S_p/∂g_{p,i} · (∂A/∂θ_j · b_p)_i .

Output pixel p depends on its own grid point g_p only, so one reverse pass of Σ_p x_p
with respect to the grid gives every ∂S_p/∂g_p at once; ∂A/∂θ ``[N, 2, 3, 6]`` comes
from ``torch.func.jacfwd`` (the matrix is a smooth function of θ), and the grid is
linear in A, so ∂g/∂θ_j is ``affine_grid`` of ∂A/∂θ_j. PyTorch has no forward-mode
derivative of ``grid_sample``, hence this split; the result is exact (the warp is
piecewise linear in the grid) and batched over examples, no loop over them.

:class:`TangentSpace` holds an orthonormal basis Q ``[N, D, 6]`` of each example's
span (reduced QR of the Jacobian) and projects vectors, P v = Q Qᵀ v, with the
interface of :class:`advmanifold.science.manifolds.linear.LinearManifold`
(``project_vectors``, ``mode``), so the alignment metrics and losses of
:mod:`advmanifold.science.alignment` apply unchanged.
"""

from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F
from torch import Tensor

from .decoders import FontDecoder, affine_matrices


def _matrix(theta: Tensor) -> Tensor:
    """A(θ) ``[2, 3]`` of one θ ``[6]``."""
    return affine_matrices(theta.unsqueeze(0))[0]


def jacobian(
    decoder: FontDecoder, font: Tensor, letter: Tensor, theta: Tensor
) -> Tensor:
    """∂dec(font, letter, θ)/∂θ as ``[N, H·W, 6]``, exact and batched (see above).

    Where the decoder's clamp to [0, 1] is active the derivative is 0 (as autograd's).
    """
    if theta.ndim != 2 or theta.shape[1] != 6:
        raise ValueError(f"theta must have shape [N, 6], got {tuple(theta.shape)}")
    theta = theta.detach()
    images = decoder.prototypes[font, letter].unsqueeze(1)
    n, _, h, w = images.shape
    with warnings.catch_warnings():
        # torch's forward-mode AD scripts its own decompositions on first use, and
        # torch 2.x warns that torch.jit.script is deprecated: nothing a caller can do
        warnings.filterwarnings(
            "ignore", "`torch.jit.script` is deprecated", FutureWarning
        )
        d_matrix = torch.func.vmap(torch.func.jacfwd(_matrix))(theta)  # [N, 2, 3, 6]
    d_matrix = d_matrix.to(images.dtype)
    d_grid = F.affine_grid(
        d_matrix.permute(0, 3, 1, 2).reshape(n * 6, 2, 3),
        [n * 6, 1, h, w],
        align_corners=True,
    )  # [N·6, H, W, 2]
    with torch.enable_grad():
        grid = F.affine_grid(
            affine_matrices(theta).to(images.dtype), [n, 1, h, w], align_corners=True
        ).requires_grad_(True)
        sampled = F.grid_sample(
            images, grid, mode="bilinear", padding_mode="zeros", align_corners=True
        )
        (d_sample,) = torch.autograd.grad(sampled.sum(), grid)  # [N, H, W, 2]
    inside = ((sampled >= 0) & (sampled <= 1)).to(images.dtype)
    inside = inside.view(n, h * w, 1)
    columns = torch.einsum(
        "npi,njpi->npj", d_sample.reshape(n, h * w, 2), d_grid.view(n, 6, h * w, 2)
    )
    return columns * inside


class TangentSpace:
    """Per-example tangent spaces: orthonormal bases ``Q [N, D, k]`` (the columns
    span the tangent directions of example n); ``project_vectors(v)`` = Q Qᵀ v."""

    mode = "tangent"  # neither "global" nor "per_class": labels are not used

    def __init__(self, basis: Tensor):
        if basis.ndim != 3:
            raise ValueError(
                f"basis must have shape [N, D, k], got {tuple(basis.shape)}"
            )
        self.basis = basis

    @classmethod
    def from_jacobian(cls, jac: Tensor) -> "TangentSpace":
        """Orthonormal basis of the column span of ``jac [N, D, k]`` by reduced QR."""
        q, _ = torch.linalg.qr(jac, mode="reduced")
        return cls(q)

    @classmethod
    def of(
        cls, decoder: FontDecoder, font: Tensor, letter: Tensor, theta: Tensor
    ) -> "TangentSpace":
        """The tangent spaces of the FONTS manifold at dec(font, letter, θ)."""
        return cls.from_jacobian(jacobian(decoder, font, letter, theta))

    def __len__(self) -> int:
        return self.basis.shape[0]

    def __getitem__(self, index) -> "TangentSpace":
        return TangentSpace(self.basis[index])

    def project_vectors(self, v: Tensor, labels: Tensor | None = None) -> Tensor:
        """P v = Q (Qᵀ v) per example, ``v`` of shape ``[N, D]`` (labels ignored)."""
        flat = v.reshape(v.shape[0], -1)
        if flat.shape[0] != len(self) or flat.shape[1] != self.basis.shape[1]:
            raise ValueError(
                f"v must have shape [{len(self)}, {self.basis.shape[1]}], "
                f"got {tuple(flat.shape)}"
            )
        coeff = torch.einsum("ndk,nd->nk", self.basis, flat)
        return torch.einsum("ndk,nk->nd", self.basis, coeff)
