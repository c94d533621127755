"""The fast path of the OnAdvTrain attack (attack views on) computes what the old
one (views off) computes: the closed-form grid is ``F.affine_grid``, the warp and its
θ-gradient are the same, the largest-loss bookkeeping keeps the same rows, and the
on-manifold examples of one seed agree."""

import pytest
import torch
import torch.nn.functional as F

from advmanifold.science import attacks, decoders, models
from advmanifold.science.attacks import engine

from test_fonts import random_prototypes
from test_models import _trained_convnet


@pytest.mark.filterwarnings("ignore:Since version 1.3.0")
def test_closed_form_grid_is_affine_grid():
    theta = decoders.sample_theta(40, generator=torch.Generator().manual_seed(0))
    matrices = decoders.affine_matrices(theta)
    for size in ((40, 1, 28, 28), (40, 3, 5, 9), (40, 1, 1, 4)):
        expected = F.affine_grid(matrices, list(size), align_corners=True)
        got = decoders.affine_grid(matrices, size)
        assert got.shape == expected.shape
        assert torch.allclose(got, expected, rtol=1e-6, atol=1e-6)


def test_closed_form_warp_has_the_images_and_theta_gradient_of_the_old_warp():
    images = torch.rand(30, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    weights = torch.randn(30, 1, 28, 28, generator=torch.Generator().manual_seed(2))
    theta = decoders.sample_theta(30, generator=torch.Generator().manual_seed(3))

    def warped(closed_form):
        t = theta.clone().requires_grad_(True)
        out = decoders.warp(images, t, closed_form=closed_form)
        (grad,) = torch.autograd.grad((out * weights).sum(), t)
        return out, grad

    (old, g_old), (new, g_new) = warped(False), warped(True)
    assert torch.allclose(new, old, atol=1e-6)
    assert torch.allclose(g_new, g_old, rtol=1e-5, atol=1e-5 * g_old.abs().max())


def test_where_bookkeeping_keeps_the_rows_of_the_masked_one():
    gen = torch.Generator().manual_seed(4)
    best, v = torch.randn(12, 8, generator=gen), torch.randn(12, 8, generator=gen)
    better = torch.rand(12, generator=gen) > 0.5
    expected = best.clone()
    expected[better] = v[better]  # what the engine did before
    assert torch.equal(engine._keep_where(best, v, better), expected)
    assert not torch.equal(expected, best)  # the test can tell rows apart


def test_onmanifold_examples_agree_with_views_on_and_off():
    dec = decoders.FontDecoder(random_prototypes(3))
    gen = torch.Generator().manual_seed(5)
    n = 50
    font, letter = torch.randint(0, 3, (n,), generator=gen), torch.arange(n) % 10
    theta = decoders.sample_theta(n, generator=gen)
    net = _trained_convnet(1)
    found = {}
    for views in (False, True):
        with models.attack_views(views):
            found[views] = attacks.onmanifold_examples(
                net, dec, font, letter, theta, eps=0.3, steps=10, seed=7
            )
    old, new = found[False], found[True]
    assert not torch.equal(old, theta)  # the attack moved θ
    # sign steps: float rounding may flip a step where a θ-gradient is ≈ 0, rarely
    assert (new - old).abs().gt(1e-5).any(1).float().mean() <= 0.04
    with torch.no_grad():
        loss = [
            F.cross_entropy(net(dec(font, letter, t)), letter, reduction="none")
            for t in (old, new)
        ]
    assert (loss[1] - loss[0]).abs().le(1e-4).float().mean() >= 0.96
