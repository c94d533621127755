"""Distance to the MNIST manifold approximated by the span of nearest training images.

Stutz et al. (2019) approximate the manifold around an image x by the affine subspace

    S(x) = x + span{x_1 − x, …, x_k − x},  x_1 … x_k the k = 50 nearest training images,

and measure how far a perturbed image x̃ = x + δ lies from it: with P the orthogonal
projector onto span{x_i − x},

    π(x̃) = x + P δ,    distance = ‖x̃ − π(x̃)‖₂ = ‖(I − P) δ‖₂,
    angle  = arcsin(‖(I − P) δ‖₂ / ‖δ‖₂)   (90° ⇔ δ is orthogonal to the subspace).

Neighbours are found by *exact* search, ‖a − b‖² = ‖a‖² + ‖b‖² − 2 a·b evaluated as
matrix products in chunks of bounded memory; the best k + 8 candidates are then
re-ranked with distances computed from the differences a − b (no cancellation), so
the fast formula cannot reorder the neighbours (it could only matter if it pushed a
true neighbour behind eight others). P comes from a batched eigendecomposition of the
k × k Gram matrix of the basis with a rank tolerance, so duplicate or collinear
neighbours (a rank-deficient basis) are handled.

For a *test* image there is no perturbation to measure; :func:`anchored_projection`
anchors the subspace at the test image's nearest training image x_a, spans it by
x_a's own k nearest training images (x_a itself excluded) and measures the test image
as x̃ = x_a + δ. Test images and adversarial examples are thus both "a point reached
from an on-manifold image", measured against the same kind of subspace.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from . import Projection, angle_from_norms

NEIGHBOURS_OF = ("reference", "perturbed")
#: rows of the training set per distance block in :func:`nearest_neighbours`
TRAIN_BLOCK = 8192
#: queries per block (bounds the candidates' re-ranking buffer)
QUERY_BLOCK = 256


@dataclass
class KNNProjection(Projection):
    """A :class:`Projection` plus the training indices [N, k] that spanned each subspace
    and the rank of each basis."""

    neighbours: Tensor | None = None
    rank: Tensor | None = None


def _flat(x: Tensor) -> Tensor:
    return x.flatten(1) if x.ndim > 1 else x.reshape(len(x), -1)


def nearest_neighbours(
    queries: Tensor,
    train: Tensor,
    k: int = 50,
    *,
    exclude: Tensor | None = None,
    max_elements: int = 2**24,
    margin: int = 8,
) -> tuple[Tensor, Tensor]:
    """Exact k nearest training points (Euclidean) of every query.

    Returns (indices [N, k] int64, distances [N, k]) sorted by increasing distance.
    ``exclude`` ([N] training indices, or −1 for none) removes one index per query,
    e.g. the query's own index when the queries are training points. The [queries ×
    train] distance blocks hold at most ``max_elements`` numbers; a running top-(k +
    ``margin``) is merged over training chunks and re-ranked by directly computed
    distances.
    """
    q, t = _flat(queries).float(), _flat(train).float()
    if q.shape[1] != t.shape[1]:
        raise ValueError(
            "queries and train must have the same dimension, "
            f"got {q.shape[1]} and {t.shape[1]}"
        )
    extra = 0 if exclude is None else 1
    if int(k) != k or not 1 <= k <= len(t) - extra:
        raise ValueError(f"k must be an integer in [1, {len(t) - extra}], got {k!r}")
    if exclude is not None and exclude.shape != (len(q),):
        raise ValueError(
            f"exclude must have shape ({len(q)},), got {tuple(exclude.shape)}"
        )
    if max_elements < 1:
        raise ValueError(f"max_elements must be >= 1, got {max_elements!r}")
    if len(q) == 0:
        return torch.empty(0, k, dtype=torch.long, device=q.device), q.new_empty(0, k)
    m = min(len(t), k + extra + margin)
    # training blocks of a few thousand rows keep the [queries × block] distance buffer
    # small and reused (cache- and allocation-friendly); queries fill the memory bound
    t_chunk = min(
        len(t), max(m, min(max_elements, max(TRAIN_BLOCK, max_elements // len(q))))
    )
    q_chunk = max(1, min(QUERY_BLOCK, max_elements // t_chunk))
    t_sq = t.pow(2).sum(1)
    out_idx, out_dist = [], []
    for qs in range(0, len(q), q_chunk):
        qb = q[qs : qs + q_chunk]
        buffer = qb.new_empty(len(qb), t_chunk)
        best_d = qb.new_empty(len(qb), 0)
        best_i = torch.empty(len(qb), 0, dtype=torch.long, device=qb.device)
        for ts in range(0, len(t), t_chunk):
            tb = t[ts : ts + t_chunk]
            d = buffer[:, : len(tb)]
            # ‖t‖² − 2 q·t: the squared distance less ‖q‖² (a row's ranking is the same)
            torch.mm(qb, tb.T, out=d)
            d.mul_(-2).add_(t_sq[ts : ts + t_chunk])
            d, i = torch.topk(d, min(m, d.shape[1]), dim=1, largest=False)
            best_d, best_i = torch.cat([best_d, d], 1), torch.cat([best_i, i + ts], 1)
            if best_d.shape[1] > m:
                best_d, sel = torch.topk(best_d, m, dim=1, largest=False)
                best_i = best_i.gather(1, sel)
        # re-rank the candidates by distances of the differences (no cancellation)
        diff = t[best_i].sub_(qb.unsqueeze(1))
        exact = torch.einsum("nmd,nmd->nm", diff, diff).double()
        if exclude is not None:
            exact = exact.masked_fill(
                best_i == exclude[qs : qs + q_chunk].unsqueeze(1), float("inf")
            )
        exact, order = torch.sort(exact, dim=1, stable=True)
        out_idx.append(best_i.gather(1, order)[:, :k])
        out_dist.append(exact[:, :k].sqrt())
    return torch.cat(out_idx), torch.cat(out_dist).to(q.dtype)


def project_onto_span(
    perturbed: Tensor,
    reference: Tensor,
    basis_points: Tensor,
    *,
    rtol: float | None = None,
    chunk_size: int = 256,
) -> KNNProjection:
    """Orthogonal projection of x̃ onto x + span{p_i − x} for a batch.

    ``perturbed`` x̃ and ``reference`` x: [N, ...]; ``basis_points`` p_i: [N, k, ...].
    Per example, with the basis B = [p_i − x] (k × D) and its Gram matrix
    B Bᵀ = Q Λ Qᵀ (float64), the eigenvalues λ_j > rtol · λ_max count as the rank
    (rtol defaults to max(k, D) · machine epsilon; λ_j = s_j², s_j the singular values
    of B), the rest are dropped, and

        P δ = Bᵀ Q_r Λ_r⁻¹ Q_rᵀ B δ,

    the orthogonal projection onto the row space of B even when B is rank deficient.
    """
    shape = perturbed.shape
    xt, x = _flat(perturbed), _flat(reference)
    if xt.shape != x.shape:
        raise ValueError(
            "perturbed and reference must have the same shape, "
            f"got {tuple(xt.shape)} and {tuple(x.shape)}"
        )
    if basis_points.shape[0] != len(x) or basis_points[0:1].numel() % max(
        1, x.shape[1]
    ):
        raise ValueError(
            f"basis_points must have shape [N, k, ...] matching N={len(x)}, "
            f"got {tuple(basis_points.shape)}"
        )
    if int(chunk_size) != chunk_size or chunk_size < 1:
        raise ValueError(f"chunk_size must be an integer >= 1, got {chunk_size!r}")
    pts = basis_points.reshape(
        len(x), basis_points.shape[1] if basis_points.ndim > 2 else -1, x.shape[1]
    )
    k, D = pts.shape[1], pts.shape[2]
    rtol = max(k, D) * torch.finfo(torch.float64).eps if rtol is None else rtol
    proj = torch.empty_like(xt, dtype=torch.float64)
    ranks = torch.empty(len(x), dtype=torch.long, device=x.device)
    for s in range(0, len(x), chunk_size):
        xb = x[s : s + chunk_size].double()
        basis = pts[s : s + chunk_size].double() - xb.unsqueeze(1)  # B: [n, k, D]
        delta = xt[s : s + chunk_size].double() - xb  # δ: [n, D]
        lam, q = torch.linalg.eigh(basis @ basis.transpose(1, 2))  # ascending λ
        keep = lam > rtol * lam[:, -1:].clamp_min(torch.finfo(torch.float64).tiny)
        inv = torch.where(
            keep, 1.0 / torch.where(keep, lam, 1.0), 0.0
        )  # Λ_r⁻¹, 0 elsewhere
        c = torch.einsum("nkd,nd->nk", basis, delta)  # B δ
        a = torch.einsum(
            "nkj,nj->nk", q, inv * torch.einsum("nkj,nk->nj", q, c)
        )  # Q Λ⁺ Qᵀ B δ
        proj[s : s + chunk_size] = xb + torch.einsum("nk,nkd->nd", a, basis)
        ranks[s : s + chunk_size] = keep.sum(1)
    xt64 = xt.double()
    distance = (xt64 - proj).norm(dim=1)
    delta_norm = (xt64 - x.double()).norm(dim=1)
    dtype = perturbed.dtype
    return KNNProjection(
        projected=proj.to(dtype).reshape(shape),
        distance=distance.to(dtype),
        delta_norm=delta_norm.to(dtype),
        angle_deg=angle_from_norms(delta_norm, distance).to(dtype),
        rank=ranks,
    )


def knn_projection(
    perturbed: Tensor,
    reference: Tensor,
    train: Tensor,
    k: int = 50,
    *,
    neighbours_of: str = "reference",
    neighbours: Tensor | None = None,
    max_elements: int = 2**24,
) -> KNNProjection:
    """Distance of x̃ = ``perturbed`` to x + span{x_i − x}, x = ``reference``, x_i its
    k nearest ``train`` images (``neighbours_of="reference"``, the article's choice) or
    those of x̃ (``"perturbed"``); precomputed ``neighbours`` [N, k] indices skip the
    search."""
    if neighbours_of not in NEIGHBOURS_OF:
        raise ValueError(
            f"neighbours_of must be one of {NEIGHBOURS_OF}, got {neighbours_of!r}"
        )
    if neighbours is None:
        query = reference if neighbours_of == "reference" else perturbed
        neighbours, _ = nearest_neighbours(query, train, k, max_elements=max_elements)
    result = project_onto_span(perturbed, reference, _flat(train)[neighbours])
    result.neighbours = neighbours
    return result


def anchored_projection(
    x: Tensor, train: Tensor, k: int = 50, *, max_elements: int = 2**24
) -> KNNProjection:
    """Distance of (test) images x to the k-NN subspace around their nearest training
    image x_a: x_a + span{x_i − x_a}, x_i the k nearest training images of x_a other
    than x_a; δ = x − x_a. (Anchoring at x itself would give distance 0 by
    construction.)"""
    anchor, _ = nearest_neighbours(x, train, 1, max_elements=max_elements)
    anchor = anchor.squeeze(1)
    flat = _flat(train)
    neighbours, _ = nearest_neighbours(
        flat[anchor], train, k, exclude=anchor, max_elements=max_elements
    )
    result = project_onto_span(x, flat[anchor].reshape(x.shape), flat[neighbours])
    result.neighbours = neighbours
    return result
