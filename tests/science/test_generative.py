"""Class-specific VAE-GANs (grouped training) and the latent on-manifold attack."""

import pytest
import torch
from torch import nn

from advmanifold.science.generative import (
    VAEGANs,
    concat_onmanifold,
    count_onmanifold,
    decode_by_class,
    encode_by_class,
    latent_box,
    onmanifold_attack,
    sample,
    vaegans_from_payload,
)
from advmanifold.science.vaegan_training import (
    assemble_vaegans,
    train_vaegan_class,
    train_vaegans,
)


def _toy(n_per_class=6, classes=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(classes).repeat_interleave(n_per_class)
    x = torch.rand(len(y), 1, 28, 28, generator=g) * 0.2
    x[:, :, 4:24, 4:24] += (y.float() / classes).view(-1, 1, 1, 1)  # class brightness
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
    for module in model.modules():  # non-trivial batch-norm statistics
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.normal_()
            module.running_var.uniform_(0.5, 2)
    model.eval()
    x, z = torch.rand(5, 3, 28, 28), torch.randn(5, 3, 10)
    for g in range(3):
        one = model.member(g)
        part = slice(g, g + 1)
        torch.testing.assert_close(one.decode(z[:, part])[:, 0], model.decode(z)[:, g])
        torch.testing.assert_close(
            one.encode(x[:, part])[0][:, 0], model.encode(x)[0][:, g]
        )
        torch.testing.assert_close(
            one.discriminate(x[:, part])[:, 0], model.discriminate(x)[:, g]
        )


def test_from_members_inverts_member():
    torch.manual_seed(3)
    model = VAEGANs(3).eval()
    back = VAEGANs.from_members([model.member(g) for g in range(3)])
    for (name, p), q in zip(model.state_dict().items(), back.state_dict().values()):
        assert torch.equal(p, q), name


def test_grouped_and_sequential_training_agree():
    """Same initial weights, batches and noise: both strategies train the same."""
    x, y = _toy(n_per_class=8)
    kwargs = dict(
        epochs=1, batch_size=4, betas=(2.25, 5.0, 2.25), seed=5, progress=False
    )
    grouped, h_grouped = train_vaegans(x, y, strategy="grouped", **kwargs)
    sequential, h_sequential = train_vaegans(x, y, strategy="sequential", **kwargs)
    for key in ("kl", "l1", "gan", "disc"):
        assert h_grouped[0][key] == pytest.approx(h_sequential[0][key], rel=1e-3), key
    z = torch.randn(4, 3, 10)
    a, b = grouped.decode(z), sequential.decode(z)
    # float rounding differs between grouped and dense convolutions and Adam amplifies
    # it a little; a mix-up of classes or weights would differ by far more (pixels in
    # [0, 1])
    assert (a - b).abs().max() < 0.05 and (a - b).abs().mean() < 5e-3


def test_groups_train_independently():
    """Changing only class 2's images leaves the model of class 0 as it was."""
    x, y = _toy()
    kwargs = dict(
        epochs=1,
        batch_size=4,
        betas=(2.25, 5.0, 2.25),
        strategy="grouped",
        progress=False,
    )
    m1, _ = train_vaegans(x, y, **kwargs)
    x2 = x.clone()
    x2[y == 2] = torch.rand_like(x2[y == 2])
    m2, _ = train_vaegans(x2, y, **kwargs)
    z = torch.randn(3, 1, 10)
    torch.testing.assert_close(m1.member(0).decode(z), m2.member(0).decode(z))
    assert not torch.allclose(m1.member(2).decode(z), m2.member(2).decode(z))


def test_training_is_deterministic_and_reduces_reconstruction_error():
    x, y = _toy(n_per_class=8)
    betas = (2.25, 5.0, 2.25)
    kwargs = dict(epochs=6, batch_size=8, betas=betas, seed=3, progress=False)
    a, hist = train_vaegans(x, y, **kwargs)
    b, _ = train_vaegans(x, y, **kwargs)
    for (name, p), q in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(p, q), name
    assert hist[-1]["l1"] < hist[0]["l1"]



def test_classes_trained_alone_equal_the_combined_run_bitwise():
    """Each class trained alone (its own unit) is bit for bit the matching member of
    the sequential run over all classes, and so is the assembled history; another
    seed gives another model (the comparison can fail)."""
    x, y = _toy(n_per_class=7)
    kwargs = dict(
        epochs=2, batch_size=4, betas=(2.25, 5.0, 2.25), seed=5, progress=False
    )
    whole, history = train_vaegans(x, y, strategy="sequential", **kwargs)
    members = [train_vaegan_class(x, y, g, **kwargs) for g in range(3)]
    assert all(m.n_models == 1 and t.shape == (2, 2, 4) for m, t in members)
    assembled, assembled_history = assemble_vaegans(members)
    state = assembled.state_dict()
    for name, p in whole.state_dict().items():
        assert torch.equal(p, state[name]), name
    assert assembled_history == history
    other, _ = train_vaegan_class(x, y, 1, **{**kwargs, "seed": 6})
    assert not torch.equal(other.mu.weight, members[1][0].mu.weight)
    with pytest.raises(ValueError, match="classes"):
        train_vaegan_class(x, y, 3, **kwargs)

def test_payload_round_trip():
    torch.manual_seed(4)
    model = VAEGANs(3).eval()
    back = vaegans_from_payload({"state": model.state_dict(), "history": []})
    assert back.n_models == 3 and back.latent == 10 and not back.training
    z = torch.randn(2, 3, 10)
    torch.testing.assert_close(back.decode(z), model.decode(z))


def test_learning_rate_decays_per_batch_as_the_original():
    """lr after b of S batches of epoch e is lr0 · 0.9^(e + 1 + b/S)."""
    from advmanifold.science.vaegan_training import _lr_factor

    assert _lr_factor(0, 0.9, 10) == pytest.approx(0.9)
    assert _lr_factor(25, 0.9, 10) == pytest.approx(0.9**3.5)


def test_training_rejects_missing_class():
    x, y = _toy()
    with pytest.raises(ValueError, match="every class"):
        train_vaegans(
            x[y != 1], y[y != 1], epochs=1, betas=(1.0, 1.0, 1.0), progress=False
        )


def _attack_setup():
    torch.manual_seed(2)
    model = VAEGANs(3).eval()
    classifier = nn.Sequential(nn.Flatten(), nn.Linear(784, 3)).eval()
    x, y = _toy(n_per_class=6)
    return model, classifier, x, y


def test_onmanifold_attack_keeps_box_and_ball_at_every_step(monkeypatch):
    """Every iterate the attack evaluates lies in the pooled box and within η of z0."""
    from advmanifold.science import attacks

    model, classifier, x, y = _attack_setup()
    mu = encode_by_class(model, x, y)
    lo, hi = latent_box(mu)
    lo, hi = lo + 0.3 * (hi - lo), hi - 0.3 * (hi - lo)  # a box that binds
    seen = []
    real_pgd = attacks.latent_pgd

    def spy(classifier, decode, z0, *args, **kwargs):
        def watched(v):  # the decoder sees every code the attack evaluates
            seen.append((v.detach().clone(), z0))
            return decode(v)

        return real_pgd(classifier, watched, z0, *args, **kwargs)

    monkeypatch.setattr(attacks, "latent_pgd", spy)
    eta = 0.3
    res = onmanifold_attack(
        classifier,
        model,
        x,
        y,
        box=(lo, hi),
        eta=eta,
        bound=50.0,
        steps=6,
        step_size=0.2,
        attempts=2,
    )
    assert res.attacked.any() and len(seen) >= 6
    for v, v0 in seen:
        assert (v >= lo - 1e-6).all() and (v <= hi + 1e-6).all()
        if len(v) == len(v0):  # before early stopping compacts the batch
            assert ((v - v0).abs() <= eta + 1e-6).all()
    z = res.z[:, res.attacked]
    assert (z >= lo - 1e-6).all() and (z <= hi + 1e-6).all()
    assert ((z - res.z0[res.attacked]).abs() <= eta + 1e-6).all()


def test_onmanifold_attack_outcome_and_determinism():
    model, classifier, x, y = _attack_setup()
    box = latent_box(encode_by_class(model, x, y))
    res = onmanifold_attack(
        classifier, model, x, y, box=box, eta=0.3, bound=2.0, steps=5, attempts=3
    )
    torch.testing.assert_close(res.z0, encode_by_class(model, x, y))
    assert res.z.shape == (3, len(x), 10) and res.fooled.shape == (3, len(x))
    with torch.no_grad():
        for a in range(3):
            pred = classifier(decode_by_class(model, res.z[a], y)).argmax(1)
            assert torch.equal(res.fooled[a] & res.attacked, (pred != y) & res.attacked)
        clean = classifier(decode_by_class(model, res.z0, y)).argmax(1) == y
    assert torch.equal(res.clean_correct, clean)
    # skipped examples (cannot count under either rule) are left at z0, never fooled
    skipped = ~res.attacked
    assert torch.equal(skipped, ~clean | (res.z0.abs().amax(1) > 2.3))
    assert not res.fooled[:, skipped].any()
    again = onmanifold_attack(
        classifier, model, x, y, box=box, eta=0.3, bound=2.0, steps=5, attempts=3
    )
    assert torch.equal(res.z, again.z)
    assert all(p.requires_grad for p in classifier.parameters())
    with pytest.raises(ValueError, match="attempts"):
        onmanifold_attack(classifier, model, x, y, box=box, attempts=0)



class _Nearest(nn.Module):
    """Logits −‖v − c_k‖₂: the nearest of the centroids ``c`` [K, 1, 28, 28]."""

    def __init__(self, c):
        super().__init__()
        self.c = nn.Parameter(c.flatten(1))

    def forward(self, v):
        return -torch.cdist(v.flatten(1), self.c)


def test_onmanifold_attack_in_chunks_equals_one_attack():
    """With ``ids`` (and the encoder means given), chunks of examples attacked apart
    and concatenated equal the attack of all examples, field by field."""
    torch.manual_seed(2)
    one = VAEGANs(1).eval()
    model = VAEGANs.from_members([one, one, one]).eval()  # classes differ only by z
    x, y = _toy(n_per_class=6)
    mu = encode_by_class(model, x, y)
    clean = decode_by_class(model, mu, y)
    classifier = _Nearest(torch.stack([clean[y == c].mean(0) for c in range(3)]))
    # codes of untrained encoders spread by about 0.005: η = 0.005 fools about half
    kw = dict(box=latent_box(mu), eta=0.005, bound=2.0, steps=5, attempts=3, seed=4)
    ids = torch.arange(len(x))
    whole = onmanifold_attack(classifier, model, x, y, z0=mu, ids=ids, **kw)
    assert 0 < whole.fooled[:, whole.attacked].float().mean() < 1
    cuts = (slice(0, 5), slice(5, 11), slice(11, len(x)))
    parts = [
        onmanifold_attack(
            classifier, model, x[c], y[c], z0=mu[c], ids=ids[c], **kw
        )
        for c in cuts
    ]
    joined = concat_onmanifold(parts)
    for field in ("z0", "z", "fooled", "clean_correct", "image_correct", "attacked"):
        assert torch.equal(getattr(joined, field), getattr(whole, field)), field
    assert torch.equal(joined.steps, whole.steps)
    plain = concat_onmanifold(
        [onmanifold_attack(classifier, model, x[c], y[c], **kw) for c in cuts]
    )
    assert not torch.equal(plain.z, whole.z)  # one generator per call: other starts

def test_counting_protocols_differ_on_a_constructed_case():
    """Four examples, two attempts, bound 2:

    0: ‖z0‖∞ = 1.9, dec(z0) right, x right; fooled in both attempts with ‖z̃‖∞ = 2.1
    1: ‖z0‖∞ = 2.1, dec(z0) right, x right; fooled in attempt 0 with ‖z̃‖∞ = 1.9
    2: ‖z0‖∞ = 1.0, dec(z0) right, x WRONG;  fooled in attempt 1 with ‖z̃‖∞ = 1.2
    3: ‖z0‖∞ = 0.5, dec(z0) WRONG, x right;  never fooled

    original: validity on z0 → counted attempts (0,a0), (0,a1), (2,a1) = 3 out of
    A · #{dec(z0) right} = 2 · 3 = 6 → 0.5 (example 1 counts as a failure);
    strict: validity on z̃, eligible = x and dec(z0) right = {0, 1} → example 1 only,
    1 of 2 → 0.5 with a different count.
    """
    z0 = torch.zeros(4, 10)
    z0[:, 0] = torch.tensor([1.9, 2.1, 1.0, 0.5])
    z = z0.unsqueeze(0).repeat(2, 1, 1)
    z[:, 0, 0] = 2.1
    z[0, 1, 0] = 1.9
    z[1, 2, 0] = 1.2
    fooled = torch.tensor([[True, True, False, False], [True, False, True, False]])
    clean_correct = torch.tensor([True, True, True, False])
    image_correct = torch.tensor([True, True, False, True])
    original = count_onmanifold(fooled, z, z0, clean_correct, image_correct, bound=2.0)
    strict = count_onmanifold(
        fooled, z, z0, clean_correct, image_correct, bound=2.0, protocol="strict"
    )
    assert (original.successes, original.denominator) == (3, 6)
    assert original.success.nonzero().tolist() == [[0, 0], [1, 0], [1, 2]]
    assert (strict.successes, strict.denominator) == (1, 2)
    assert strict.success.tolist() == [False, True, False, False]
    assert original.rate == strict.rate == 0.5
    with pytest.raises(ValueError, match="protocol"):
        count_onmanifold(fooled, z, z0, clean_correct, image_correct, protocol="any")
