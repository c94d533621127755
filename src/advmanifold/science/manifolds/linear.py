"""A known linear data manifold: PCA subspaces and Projected MNIST (Geyer et al.).

A subspace is given by an orthonormal basis W (k × d, rows orthonormal), the
projector onto it is P = WᵀW (d × d, symmetric, P² = P). For a row vector v:

    P v = v WᵀW,   residual r = v − P v (⟂ the subspace),   ‖v‖² = ‖Pv‖² + ‖r‖².

PMNIST replaces every image x by its projection x ↦ x WᵀW (k = 28), so the data lie
*exactly* on a known manifold and the on-manifold part of any direction (an input
gradient, an adversarial perturbation) is P v.

Two readings of the paper's text, one parameter ``mode``:

- ``"global"`` (our default): one subspace fitted on all training images
  ("we fit a PCA model on all training data ... x × Wᵀ × W");
- ``"per_class"``: one k-dimensional subspace per class ("using k components for
  each class"); an image (and its gradients) is projected onto the subspace of its
  *true* label. The projected test set then carries its label in the subspace it
  lies in, which is why this reading is not the default.

Centring (``center``): the PCA basis is always fitted on mean-centred data. The
paper's formula x WᵀW does not re-add the mean, so by default (``center=False``)
PMNIST lies in the *linear* subspace span(W) through the origin, as the text says.
``center=True`` gives the affine PCA reconstruction μ + (x − μ)WᵀW instead. The two
differ by the constant vector (I − P)μ, the same for every image, so a classifier's
first-layer bias absorbs it; the tangent space, hence P for gradients, is the same.

Box: projected images leave [0, 1] (negative values and values above 1). Clamping an
attack to [0, 1] would move clean points off the manifold, so attacks on PMNIST use
no box at all (:data:`ATTACK_BOX`), only the ε-ball: our choice, the paper is silent.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from . import Projection, angle_from_norms

MODES = ("global", "per_class")
#: (lower, upper) passed to :func:`advmanifold.science.attacks.pgd`/``fgsm`` on PMNIST:
#: no box.
ATTACK_BOX: tuple[float | None, float | None] = (None, None)
#: components per subspace (Geyer et al.: k = 28).
K = 28


def _flat(x: Tensor) -> Tensor:
    return x.reshape(x.shape[0], -1)


def _orient(basis: Tensor) -> Tensor:
    """Deterministic sign: the largest-|·| coordinate of each basis row is positive."""
    idx = basis.abs().argmax(dim=-1, keepdim=True)
    return basis * torch.gather(basis, -1, idx).sign()


def pca_basis(x: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """Top-k principal directions (k × d, orthonormal rows, decreasing variance) and the
    mean of ``x`` ([N, ...]); eigen-decomposition of the covariance (accumulated in
    float32, decomposed in float64)."""
    flat = _flat(x).float()
    if not 1 <= k <= flat.shape[1]:
        raise ValueError(f"k must be in [1, {flat.shape[1]}], got {k!r}")
    if flat.shape[0] < 2:
        raise ValueError(f"need at least 2 examples to fit a PCA, got {flat.shape[0]}")
    mean = flat.mean(0)
    centred = flat - mean
    cov = (centred.T @ centred).double() / (flat.shape[0] - 1)
    _, vectors = torch.linalg.eigh(cov)  # ascending eigenvalues
    basis = vectors[:, -k:].flip(-1).T.contiguous()
    return _orient(basis).to(x.dtype), mean.to(x.dtype)


@dataclass
class LinearManifold:
    """One (``global``) or several (``per_class``) k-dim subspaces of R^d.

    ``bases`` is [G, k, d] with orthonormal rows (G = 1 for global, G = classes for
    per-class), ``means`` is [G, d]. Methods taking ``labels`` select each example's
    subspace by its label (required for per-class, ignored for global).
    """

    bases: Tensor
    means: Tensor
    mode: str = "global"
    center: bool = False

    def __post_init__(self):
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        expected = (self.bases.shape[0], self.bases.shape[-1])
        if self.bases.ndim != 3 or self.means.shape != expected:
            raise ValueError(
                f"bases must be [G, k, d] and means [G, d], got "
                f"{tuple(self.bases.shape)} "
                f"and {tuple(self.means.shape)}"
            )

    # -- construction -----------------------------------------------------------------
    @classmethod
    def fit(
        cls,
        x: Tensor,
        y: Tensor | None = None,
        *,
        k: int = K,
        mode: str = "global",
        center: bool = False,
    ) -> "LinearManifold":
        """PCA, k components, on ``x`` (global) or each class of ``y`` (per_class)."""
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if mode == "global":
            basis, mean = pca_basis(x, k)
            return cls(basis[None], mean[None], mode, center)
        if y is None:
            raise ValueError("mode='per_class' needs the labels y")
        classes = int(y.max()) + 1
        fitted = [pca_basis(x[y == c], k) for c in range(classes)]
        return cls(
            torch.stack([b for b, _ in fitted]),
            torch.stack([m for _, m in fitted]),
            mode,
            center,
        )

    @property
    def k(self) -> int:
        return self.bases.shape[1]

    @property
    def dim(self) -> int:
        return self.bases.shape[2]

    def _select(self, labels: Tensor | None, n: int) -> tuple[Tensor, Tensor]:
        """Per-example basis [n, k, d] (or [1, k, d]) and mean [n, d] (or [1, d])."""
        if self.mode == "global":
            return self.bases, self.means
        if labels is None:
            raise ValueError(
                "a per_class manifold needs labels to choose each example's subspace"
            )
        if labels.shape != (n,):
            raise ValueError(
                f"labels must have shape ({n},), got {tuple(labels.shape)}"
            )
        return self.bases[labels], self.means[labels]

    def matrix(self, labels: Tensor | None = None) -> Tensor:
        """P_M = WᵀW: [d, d] for global, [n, d, d] for per-class (one per label)."""
        if self.mode == "global":
            return self.bases[0].T @ self.bases[0]
        basis, _ = self._select(labels, len(labels) if labels is not None else -1)
        return basis.transpose(1, 2) @ basis

    # -- vectors (gradients, perturbations): linear projection P v --------------------
    def project_vectors(self, v: Tensor, labels: Tensor | None = None) -> Tensor:
        """P v = v WᵀW for each example (batched; keeps v's shape). Differentiable."""
        flat = _flat(v)
        basis, _ = self._select(labels, flat.shape[0])
        basis = basis.to(flat)
        shared = basis.shape[0] == 1
        coords = torch.einsum("nd,gkd->nk" if shared else "nd,nkd->nk", flat, basis)
        out = torch.einsum("nk,gkd->nd" if shared else "nk,nkd->nd", coords, basis)
        return out.reshape(v.shape)

    def residual(self, v: Tensor, labels: Tensor | None = None) -> Tensor:
        """v − P v, the off-manifold part (orthogonal to the subspace)."""
        return v - self.project_vectors(v, labels)

    # -- points (images): projection onto the (affine, if centred) subspace -----------
    def project(self, x: Tensor, labels: Tensor | None = None) -> Tensor:
        """π(x) = x WᵀW, or μ + (x − μ)WᵀW when ``center``; this is the PMNIST map."""
        if not self.center:
            return self.project_vectors(x, labels)
        _, mean = self._select(labels, x.shape[0])
        mean = mean.to(x).reshape(-1, *x.shape[1:])
        return mean + self.project_vectors(x - mean, labels)

    def distance(self, x: Tensor, labels: Tensor | None = None) -> Tensor:
        """‖x − π(x)‖₂ per example."""
        return _flat(x - self.project(x, labels)).norm(dim=1)

    def subspace_distances(self, x: Tensor) -> Tensor:
        """Distance of every x to every subspace g, [n, G], without projecting:
        ‖x − π_g(x)‖² = ‖x − μ_g‖² − ‖(x − μ_g) W_gᵀ‖² (Pythagoras, in float64;
        μ_g = 0 unless ``center``)."""
        flat, bases = _flat(x).double(), self.bases.double()
        coords = torch.einsum("nd,gkd->ngk", flat, bases)
        squares = flat.pow(2).sum(1, keepdim=True)
        if self.center:
            means = self.means.double()
            coords = coords - torch.einsum("gd,gkd->gk", means, bases)
            squares = squares - 2 * flat @ means.T + means.pow(2).sum(1)
        return (squares - coords.pow(2).sum(2)).clamp_min(0).sqrt().to(x.dtype)

    def angle(self, delta: Tensor, labels: Tensor | None = None) -> Tensor:
        """Angle (degrees, [0, 90]) between each δ and the subspace:
        sin θ = ‖δ − Pδ‖/‖δ‖."""
        return angle_from_norms(
            _flat(delta).norm(dim=1), _flat(self.residual(delta, labels)).norm(dim=1)
        )

    def projection(
        self, x_tilde: Tensor, x: Tensor | None = None, labels: Tensor | None = None
    ) -> Projection:
        """Exact projection of x̃ with distance; with the reference x also ‖δ‖₂ and the
        angle of δ = x̃ − x to the manifold (angle NaN, ‖δ‖ = 0 without a reference)."""
        projected = self.project(x_tilde, labels)
        distance = _flat(x_tilde - projected).norm(dim=1)
        if x is None:
            zeros = torch.zeros_like(distance)
            return Projection(
                projected, distance, zeros, torch.full_like(distance, torch.nan)
            )
        delta = x_tilde - x
        return Projection(
            projected, distance, _flat(delta).norm(dim=1), self.angle(delta, labels)
        )

    def state(self) -> dict:
        """Tensors and flags, for caching with :func:`advmanifold.book.cache.cached`."""
        return {
            "bases": self.bases,
            "means": self.means,
            "mode": self.mode,
            "center": self.center,
        }

    @classmethod
    def from_state(cls, state: dict) -> "LinearManifold":
        return cls(state["bases"], state["means"], state["mode"], bool(state["center"]))
