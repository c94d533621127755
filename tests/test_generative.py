"""Class-specific VAE-GANs (grouped training) and the latent on-manifold attack."""
import pytest
import torch
from torch import nn

from advmanifold import cache
from advmanifold.generative import (VAEGANs, cached_vaegans, decode_by_class, encode_by_class, onmanifold_attack,
                                    sample, train_vaegans)


def _toy(n_per_class=6, classes=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(classes).repeat_interleave(n_per_class)
    x = torch.rand(len(y), 1, 28, 28, generator=g) * 0.2
    x[:, :, 4:24, 4:24] += (y.float() / classes).view(-1, 1, 1, 1)   # class-dependent brightness
    return x.clamp(0, 1), y


def test_shapes_latent_and_range():
    torch.manual_seed(0)
    model = VAEGANs(3).eval()
    x = torch.rand(4, 3, 28, 28)
    mu, logvar = model.encode(x)
    assert mu.shape == logvar.shape == (4, 3, 10)
    out = model.decode(mu)
    assert out.shape == (4, 3, 28, 28) and out.min() >= 0 and out.max() <= 1
    assert model.discriminate(x).shape == (4, 3)
    assert sample(model, 5).shape == (5, 3, 28, 28)
    with pytest.raises(ValueError, match="n_models"):
        VAEGANs(0)


def test_member_equals_its_group():
    torch.manual_seed(1)
    model = VAEGANs(3)
    for module in model.modules():   # non-trivial batch-norm statistics
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.normal_()
            module.running_var.uniform_(0.5, 2)
    model.eval()
    x, z = torch.rand(5, 3, 28, 28), torch.randn(5, 3, 10)
    for g in range(3):
        one = model.member(g)
        torch.testing.assert_close(one.decode(z[:, g:g + 1])[:, 0], model.decode(z)[:, g])
        torch.testing.assert_close(one.encode(x[:, g:g + 1])[0][:, 0], model.encode(x)[0][:, g])
        torch.testing.assert_close(one.discriminate(x[:, g:g + 1])[:, 0], model.discriminate(x)[:, g])


def test_from_members_inverts_member():
    torch.manual_seed(3)
    model = VAEGANs(3).eval()
    back = VAEGANs.from_members([model.member(g) for g in range(3)])
    for (name, p), q in zip(model.state_dict().items(), back.state_dict().values()):
        assert torch.equal(p, q), name


def test_grouped_and_sequential_training_agree():
    """Same initial weights, batches and noise: the two strategies are the same ten trainings."""
    x, y = _toy(n_per_class=8)
    kwargs = dict(epochs=1, batch_size=4, betas=(2.25, 5.0, 2.25), seed=5, progress=False)
    grouped, h_grouped = train_vaegans(x, y, strategy="grouped", **kwargs)
    sequential, h_sequential = train_vaegans(x, y, strategy="sequential", **kwargs)
    for key in ("kl", "l1", "gan", "disc"):
        assert h_grouped[0][key] == pytest.approx(h_sequential[0][key], rel=1e-3), key
    z = torch.randn(4, 3, 10)
    a, b = grouped.decode(z), sequential.decode(z)
    # float rounding differs between grouped and dense convolutions and Adam amplifies it a
    # little; a mix-up of classes or weights would differ by far more (pixels in [0, 1])
    assert (a - b).abs().max() < 0.05 and (a - b).abs().mean() < 5e-3


def test_groups_train_independently():
    """Training on classes {0,1,2} and changing only class 2's images leaves model 0 as it was."""
    x, y = _toy()
    m1, _ = train_vaegans(x, y, epochs=1, batch_size=4, betas=(2.25, 5.0, 2.25), strategy="grouped", progress=False)
    x2 = x.clone()
    x2[y == 2] = torch.rand_like(x2[y == 2])
    m2, _ = train_vaegans(x2, y, epochs=1, batch_size=4, betas=(2.25, 5.0, 2.25), strategy="grouped", progress=False)
    z = torch.randn(3, 1, 10)
    torch.testing.assert_close(m1.member(0).decode(z), m2.member(0).decode(z))
    assert not torch.allclose(m1.member(2).decode(z), m2.member(2).decode(z))


def test_training_is_deterministic_and_reduces_reconstruction_error():
    x, y = _toy(n_per_class=8)
    betas = (2.25, 5.0, 2.25)
    a, hist = train_vaegans(x, y, epochs=6, batch_size=8, betas=betas, seed=3, progress=False)
    b, _ = train_vaegans(x, y, epochs=6, batch_size=8, betas=betas, seed=3, progress=False)
    for (name, p), q in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(p, q), name
    assert hist[-1]["l1"] < hist[0]["l1"]


def test_cached_training_loads_the_same_model(tmp_path, monkeypatch):
    monkeypatch.setenv("ADVMANIFOLD_CACHE", str(tmp_path))
    x, y = _toy(n_per_class=4)
    kwargs = dict(epochs=1, batch_size=4, betas=(2.25, 5.0, 2.25), progress=False)
    first, _ = cached_vaegans(x, y, **kwargs)
    assert len(list(tmp_path.glob("vaegans-mnist-*.pt"))) == 1
    second, _ = cached_vaegans(x, y, **kwargs)
    for p, q in zip(first.state_dict().values(), second.state_dict().values()):
        assert torch.equal(p, q)


def test_training_rejects_missing_class():
    x, y = _toy()
    with pytest.raises(ValueError, match="every class"):
        train_vaegans(x[y != 1], y[y != 1], epochs=1, betas=(1.0, 1.0, 1.0), progress=False)


def test_onmanifold_attack_stays_in_latent_ball():
    torch.manual_seed(2)
    model = VAEGANs(3).eval()
    classifier = nn.Sequential(nn.Flatten(), nn.Linear(784, 3)).eval()
    x, y = _toy(n_per_class=4)
    res = onmanifold_attack(classifier, model, x, y, eta=0.3, bound=2.0, steps=5, restarts=2)
    torch.testing.assert_close(res.z0, encode_by_class(model, x, y))
    assert (res.z - res.z0).abs().max() <= 0.3 + 1e-6
    torch.testing.assert_close(res.images, decode_by_class(model, res.z, y))
    with torch.no_grad():
        pred = classifier(res.images).argmax(1)
    assert torch.equal(res.fooled, pred != y)
    assert torch.equal(res.valid, res.z.abs().amax(1) <= 2.0)
    assert torch.equal(res.success, res.fooled & res.valid)
    again = onmanifold_attack(classifier, model, x, y, eta=0.3, bound=2.0, steps=5, restarts=2)
    assert torch.equal(res.z, again.z)
    assert all(p.requires_grad for p in classifier.parameters())
