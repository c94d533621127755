"""The one-pass alignment loss equals the composed one, value and weight gradients."""

import pytest
import torch
from torch import nn

from advmanifold.science import alignment, training
from advmanifold.science.manifolds.linear import LinearManifold


@pytest.mark.parametrize("mode", ["global", "per_class"])
def test_aligned_cross_entropy_equals_composed_objective(mode):
    torch.manual_seed(0)
    x, y = torch.randn(64, 20), torch.arange(64) % 3
    manifold = LinearManifold.fit(x, y, k=4, mode=mode)
    model = nn.Sequential(nn.Linear(20, 32), nn.Tanh(), nn.Linear(32, 3))
    one_pass = alignment.aligned_cross_entropy(manifold, alpha=0.7)(model, x, y)
    composed = training.combined(
        training.cross_entropy(), alignment.alignment_penalty(manifold, alpha=0.7)
    )(model, x, y)
    assert torch.allclose(one_pass, composed, rtol=1e-6)
    g1 = torch.autograd.grad(one_pass, list(model.parameters()))
    g2 = torch.autograd.grad(composed, list(model.parameters()))
    assert all(torch.allclose(a, b, rtol=1e-5, atol=1e-7) for a, b in zip(g1, g2))
    assert g1[0].abs().sum() > 0


def test_aligned_cross_entropy_rejects_negative_alpha():
    manifold = LinearManifold.fit(torch.randn(30, 5), k=2)
    with pytest.raises(ValueError, match="alpha"):
        alignment.aligned_cross_entropy(manifold, alpha=-1.0)


@pytest.mark.parametrize("measure", sorted(alignment.PENALTIES))
def test_a_flat_network_does_not_score_below_the_measures_minimum(measure):
    """A network whose input gradient is 0 (constant logits) must not beat an aligned
    one: the ratio's minimum is 1 (it used to score 0), the rejection share's worst
    value is 1."""
    torch.manual_seed(0)
    x, y = torch.randn(32, 20), torch.arange(32) % 3
    manifold = LinearManifold.fit(x, k=4)
    flat = nn.Linear(20, 3)
    nn.init.zeros_(flat.weight)
    g = alignment.input_gradients(flat, x, y)
    assert g.abs().max() == 0
    value = alignment.PENALTIES[measure](g, manifold)
    on_manifold = manifold.project_vectors(torch.randn(32, 20))
    aligned = alignment.PENALTIES[measure](on_manifold, manifold)
    assert torch.all(value >= aligned - 1e-5)
    expected = 1.0  # ratio: its minimum; rejection share: its maximum
    assert torch.allclose(value, torch.full_like(value, expected))
    penalty = alignment.alignment_penalty(manifold, alpha=0.5, measure=measure)
    assert penalty(flat, x, y).item() == pytest.approx(0.5 * expected)


def test_rejection_share_is_one_minus_cosine_squared_and_ratio_unchanged():
    torch.manual_seed(1)
    x = torch.randn(50, 12)
    manifold = LinearManifold.fit(x, k=3)
    g = torch.randn(40, 12)
    cos = alignment.cosine(g, manifold)
    share = alignment.rejection_share(g, manifold)
    assert torch.all((share >= 0) & (share <= 1))
    assert torch.allclose(share, 1 - cos**2, atol=1e-5)
    full, on, _ = alignment.norms(g, manifold)
    assert torch.equal(alignment.ratio(g, manifold), full / on)  # bitwise, g ≠ 0
    with pytest.raises(ValueError, match="measure"):
        alignment.alignment_penalty(manifold, measure="cosine")
