"""The attack view of the ConvNet is the same function with the same input gradient;
``frozen`` restores what it found."""

import pytest
import torch
import torch.nn.functional as F

from advmanifold.science import attacks, models


def _trained_convnet(seed=0):
    torch.manual_seed(seed)
    net = models.ConvNet()
    net.train()
    with torch.no_grad():  # non-trivial batch-norm statistics and affine parameters
        for _ in range(3):
            net(torch.rand(64, 1, 28, 28))
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
    return net.eval()


def _input_gradient(f, x, y):
    v = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(F.cross_entropy(f(v), y, reduction="sum"), v)
    return g


def test_folded_convnet_has_the_logits_and_input_gradients_of_the_network():
    # in float64 the fold is exact up to rounding
    net = _trained_convnet().double()
    view = models.attack_view(net)
    assert isinstance(view, models.FoldedConvNet)
    assert not any(p.requires_grad for p in view.parameters())
    x, y = torch.rand(20, 1, 28, 28, dtype=torch.float64), torch.randint(0, 10, (20,))
    assert torch.allclose(view(x), net(x), rtol=1e-10, atol=1e-12)
    assert torch.allclose(
        _input_gradient(view, x, y), _input_gradient(net, x, y), rtol=1e-9, atol=1e-14
    )
    # in float32 rounding may flip a ReLU whose input is ≈ 0, nothing more
    net, x = net.float(), x.float()
    view = models.attack_view(net)
    g_net, g_view = _input_gradient(net, x, y), _input_gradient(view, x, y)
    assert torch.allclose(view(x), net(x), atol=1e-5)
    assert (g_net.sign() == g_view.sign()).float().mean() > 0.999
    assert F.cosine_similarity(g_net.flatten(1), g_view.flatten(1)).min() > 0.99
    # the same attack result either way (sign steps from the same start)
    with models.frozen(net):
        a = attacks.pgd(net, x, y, eps=0.1, steps=5, mode="best", seed=3)
        b = attacks.pgd(view, x, y, eps=0.1, steps=5, mode="best", seed=3)
    assert (a.adversarial - b.adversarial).abs().gt(1e-6).float().mean() < 0.01
    assert (a.success == b.success).float().mean() >= 0.95


def test_attack_views_can_be_switched_off_and_training_models_are_not_folded():
    net = _trained_convnet()
    with models.attack_views(False):
        assert models.attack_view(net) is net
    assert isinstance(models.attack_view(net), models.FoldedConvNet)
    net.train()
    assert models.attack_view(net) is net  # batch statistics: no fold in train mode


def test_frozen_restores_the_flags_and_mode_it_found():
    net = _trained_convnet().train()
    first = next(net.parameters())
    first.requires_grad_(False)  # a layer the caller had frozen itself
    flags = [p.requires_grad for p in net.parameters()]
    with models.frozen(net) as same:
        assert same is net and not net.training
        assert not any(p.requires_grad for p in net.parameters())
    assert [p.requires_grad for p in net.parameters()] == flags
    assert net.training
    with pytest.raises(RuntimeError):
        with models.frozen(net):
            raise RuntimeError("the flags come back on errors too")
    assert [p.requires_grad for p in net.parameters()] == flags
