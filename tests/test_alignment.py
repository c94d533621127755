"""The one-pass alignment loss equals the composed one, value and weight gradients."""

import pytest
import torch
from torch import nn

from advmanifold import alignment, training
from advmanifold.manifolds.linear import LinearManifold


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
