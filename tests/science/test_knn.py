"""The k-NN subspace projector: exact neighbours and an orthogonal projection."""

import numpy as np
import pytest
import torch

from advmanifold.science.manifolds.knn import (
    KNNProjection,
    knn_projection,
    nearest_neighbours,
    project_onto_span,
    anchored_projection,
)


def _data(n=6, k=5, d=12, seed=0, rank_deficient=False):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, d, generator=g, dtype=torch.float64)
    pts = torch.rand(n, k, d, generator=g, dtype=torch.float64)
    if rank_deficient:  # a repeated neighbour and one in the span of two others
        pts[:, 1] = pts[:, 0]
        pts[:, 4] = x + 0.5 * (pts[:, 2] - x) - 2.0 * (pts[:, 3] - x)
    xt = x + torch.randn(n, d, generator=g, dtype=torch.float64)
    return xt, x, pts


@pytest.mark.parametrize("rank_deficient", [False, True])
def test_matches_numpy_lstsq(rank_deficient):
    xt, x, pts = _data(rank_deficient=rank_deficient)
    result = project_onto_span(xt, x, pts)
    for i in range(len(x)):
        basis = (pts[i] - x[i]).numpy().T  # D × k
        delta = (xt[i] - x[i]).numpy()
        coef, *_ = np.linalg.lstsq(basis, delta, rcond=None)
        ref = x[i].numpy() + basis @ coef
        np.testing.assert_allclose(result.projected[i].numpy(), ref, atol=1e-9)
        np.testing.assert_allclose(
            result.distance[i].item(), np.linalg.norm(xt[i].numpy() - ref), atol=1e-9
        )
    assert result.rank.tolist() == [3 if rank_deficient else 5] * len(x)


@pytest.mark.parametrize("rank_deficient", [False, True])
def test_idempotent_and_orthogonal_residual(rank_deficient):
    xt, x, pts = _data(seed=1, rank_deficient=rank_deficient)
    first = project_onto_span(xt, x, pts)
    again = project_onto_span(first.projected, x, pts)
    torch.testing.assert_close(again.projected, first.projected, atol=1e-10, rtol=0)
    assert again.distance.abs().max() < 1e-10
    residual = xt - first.projected
    basis = pts - x.unsqueeze(1)
    assert torch.einsum("nkd,nd->nk", basis, residual).abs().max() < 1e-10
    # Pythagoras: ‖δ‖² = ‖Pδ‖² + distance², and the angle follows from it
    p_norm = (first.projected - x).norm(dim=1)
    torch.testing.assert_close(first.delta_norm**2, p_norm**2 + first.distance**2)
    torch.testing.assert_close(
        torch.sin(torch.deg2rad(first.angle_deg)), first.distance / first.delta_norm
    )


def test_point_in_span_has_zero_distance_and_far_point_is_orthogonal():
    _, x, pts = _data(seed=2)
    g = torch.Generator().manual_seed(3)
    inside = x + torch.einsum(
        "nk,nkd->nd",
        torch.randn(len(x), pts.shape[1], generator=g, dtype=torch.float64),
        pts - x.unsqueeze(1),
    )
    result = project_onto_span(inside, x, pts)
    assert result.distance.max() < 1e-9 and result.angle_deg.max() < 1e-3
    # a δ orthogonal to every basis vector: distance = ‖δ‖, angle = 90°
    basis = pts - x.unsqueeze(1)
    delta = torch.randn(x.shape, generator=g, dtype=torch.float64)
    q, _ = torch.linalg.qr(basis.transpose(1, 2))
    delta = delta - torch.einsum("ndk,nk->nd", q, torch.einsum("ndk,nd->nk", q, delta))
    result = project_onto_span(x + delta, x, pts)
    torch.testing.assert_close(result.distance, delta.norm(dim=1))
    torch.testing.assert_close(
        result.angle_deg, torch.full((len(x),), 90.0, dtype=torch.float64)
    )


def test_exact_neighbours_match_brute_force_across_chunks():
    g = torch.Generator().manual_seed(4)
    train, queries = torch.rand(500, 30, generator=g), torch.rand(40, 30, generator=g)
    ref = torch.cdist(queries.double(), train.double())
    ref_d, ref_i = ref.sort(1)
    for max_elements in (
        2**24,
        700,
        1,
    ):  # one block; chunks over queries and over training points
        idx, dist = nearest_neighbours(queries, train, 7, max_elements=max_elements)
        assert torch.equal(idx, ref_i[:, :7])
        torch.testing.assert_close(dist, ref_d[:, :7].float())


def test_exclude_drops_own_index():
    g = torch.Generator().manual_seed(5)
    train = torch.rand(200, 10, generator=g)
    own = torch.arange(0, 200, 20)
    idx, _ = nearest_neighbours(train[own], train, 5, exclude=own)
    assert not (idx == own.unsqueeze(1)).any()
    full, _ = nearest_neighbours(train[own], train, 6)
    assert torch.equal(full[:, 0], own) and torch.equal(idx, full[:, 1:])


def test_knn_projection_uses_neighbours_of_reference():
    g = torch.Generator().manual_seed(6)
    train = torch.rand(300, 1, 4, 4, generator=g)
    x = torch.rand(8, 1, 4, 4, generator=g)
    xt = (x + 0.3 * torch.randn(x.shape, generator=g)).clamp(0, 1)
    result = knn_projection(xt, x, train, k=5)
    assert isinstance(result, KNNProjection) and result.projected.shape == x.shape
    idx, _ = nearest_neighbours(x, train, 5)
    assert torch.equal(result.neighbours, idx)
    other = knn_projection(xt, x, train, k=5, neighbours_of="perturbed")
    assert torch.equal(other.neighbours, nearest_neighbours(xt, train, 5)[0])
    same = project_onto_span(xt, x, train.flatten(1)[idx])
    torch.testing.assert_close(result.distance, same.distance)


def test_anchored_projection_anchors_at_nearest_training_image():
    g = torch.Generator().manual_seed(7)
    train = torch.rand(300, 16, generator=g)
    x = train[:5] + 0.01 * torch.randn(
        5, 16, generator=g
    )  # nearest training image: train[:5]
    result = anchored_projection(x, train, k=6)
    assert not (result.neighbours == torch.arange(5).unsqueeze(1)).any()
    torch.testing.assert_close(result.delta_norm, (x - train[:5]).norm(dim=1))
    ref = project_onto_span(x, train[:5], train[result.neighbours])
    torch.testing.assert_close(result.distance, ref.distance)


def test_bad_arguments():
    x = torch.rand(3, 4)
    with pytest.raises(ValueError, match="k must"):
        nearest_neighbours(x, torch.rand(5, 4), 6)
    with pytest.raises(ValueError, match="neighbours_of"):
        knn_projection(x, x, torch.rand(5, 4), 2, neighbours_of="x")
    with pytest.raises(ValueError, match="same shape"):
        project_onto_span(x, torch.rand(3, 5), torch.rand(3, 2, 4))


def test_empty_batch():
    train = torch.rand(20, 1, 4, 4)
    idx, dist = nearest_neighbours(train[:0], train, 3)
    assert idx.shape == dist.shape == (0, 3)
    result = knn_projection(train[:0], train[:0], train, 3)
    assert result.distance.shape == (0,) and result.projected.shape == (0, 1, 4, 4)
