"""The dimpled manifold chapter: exact tangent projectors, L2 PGD, the random
baseline, line searches to the boundary, checkpoints, settings and claims."""

import math
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from advmanifold.book import ledger
from advmanifold.chapters import claims, dimpled
from advmanifold.science import attacks, decoders, dimples, glyphs, models, training
from advmanifold.science.tangent import TangentSpace

MEASURE = SimpleNamespace(
    l2_eps=2.0,
    linf_eps=0.3,
    attack_steps=5,
    t_min=0.05,
    t_max=28.0,
    grid=8,
    iterations=8,
)


def _prototypes(n_fonts=3, seed=0, dtype=torch.float64):
    """Smooth random prototypes (blurred noise in the centre), so that the warp has
    few kinks at the scale of a finite difference."""
    g = torch.Generator().manual_seed(seed)
    raw = torch.rand(n_fonts, 10, 28, 28, generator=g)
    raw[..., :5, :] = raw[..., -5:, :] = 0
    raw[..., :5] = raw[..., -5:] = 0
    protos = glyphs.blur(raw, sigma=1.2)
    return (protos / protos.amax((-1, -2), keepdim=True)).to(dtype)


def _data(n=64, seed=1):
    decoder = decoders.FontDecoder(_prototypes(dtype=torch.float32))
    g = torch.Generator().manual_seed(seed)
    font = torch.randint(3, (n,), generator=g)
    letter = torch.randint(10, (n,), generator=g)
    theta = decoders.sample_theta(n, "easy", g)
    with torch.no_grad():
        x = decoder(font, letter, theta)
    return decoder, font, letter, theta, x


# ------------------------------------------------------------- tangent spaces


def test_tangent_projector_at_the_test_images_spans_the_finite_differences(
    monkeypatch,
):
    protos = _prototypes()
    monkeypatch.setattr(dimpled, "fonts_used", lambda proto, s: protos)
    s = SimpleNamespace(n_eval=48, n_fonts=None)
    test = dimpled.eval_set(None, s)
    exact = dimpled.tangent_spaces(None, s, test)
    decoder = decoders.FontDecoder(protos).double()  # the buffer is float32 otherwise
    numeric = TangentSpace.from_jacobian(
        decoder.tangents(test.font, test.letter, test.theta.double(), h=1e-6)
    )
    p_exact = exact.basis @ exact.basis.transpose(1, 2)
    p_numeric = numeric.basis.double() @ numeric.basis.double().transpose(1, 2)
    gap = torch.linalg.matrix_norm(p_exact.double() - p_numeric, ord=2)
    # equal projectors (the chapter's in float32) away from the rare kink of the
    # bilinear warp inside ±h
    assert (gap < 1e-3).float().mean() > 0.9
    assert gap.median() < 1e-4
    assert exact.basis.shape == (48, 784, 6)


def test_tangent_share_is_the_norm_of_the_projection():
    decoder, font, letter, theta, _ = _data(16)
    space = TangentSpace.of(decoder, font, letter, theta)
    v = torch.randn(16, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    share = dimples.tangent_share(space, v)
    flat = v.flatten(1)
    expected = space.project_vectors(flat).norm(dim=1) / flat.norm(dim=1)
    assert torch.allclose(share, expected, atol=1e-6)
    inside = space.project_vectors(flat)
    assert torch.allclose(dimples.tangent_share(space, inside), torch.ones(16))
    assert torch.isnan(dimples.tangent_share(space, torch.zeros_like(v))).all()
    u_t, u_n = dimples.tangent_and_normal(space, v)
    assert torch.allclose(u_t.flatten(1).norm(dim=1), torch.ones(16), atol=1e-5)
    assert (u_t.flatten(1) * u_n.flatten(1)).sum(1).abs().max() < 1e-5
    assert dimples.tangent_share(space, u_n).max() < 1e-5


# ------------------------------------------------------------------ baseline


def test_random_baseline_mean_matches_the_beta_law_and_sqrt_k_over_d():
    g = torch.Generator().manual_seed(0)
    n, d, k = 40, 784, 6
    basis, _ = torch.linalg.qr(torch.randn(n, d, k, generator=g))
    shares = dimples.random_shares(TangentSpace(basis), 200, seed=1)
    assert shares.shape == (n, 200)
    exact = dimples.expected_random_share(k, d)
    # E s = Γ((k+1)/2)Γ(d/2)/(Γ(k/2)Γ((d+1)/2)): within 3 standard errors
    se = shares.std() / math.sqrt(shares.numel())
    assert abs(shares.mean().item() - exact) < 3 * se
    assert abs(exact / math.sqrt(k / d) - 1) < 0.05  # ≈ √(k/d), a little below
    # E s² = k/d exactly
    assert abs((shares**2).mean().item() - k / d) < 3 * (shares**2).std() / 90
    assert dimples.expected_random_share(d, d) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="k <= d"):
        dimples.expected_random_share(7, 6)
    with pytest.raises(ValueError, match="n_directions"):
        dimples.random_shares(TangentSpace(basis), 0)


def test_random_baseline_is_deterministic_under_its_seed():
    basis, _ = torch.linalg.qr(torch.randn(5, 784, 6))
    space = TangentSpace(basis)
    a = dimples.random_shares(space, 20, seed=3)
    assert torch.equal(a, dimples.random_shares(space, 20, seed=3))
    assert not torch.equal(a, dimples.random_shares(space, 20, seed=4))


# -------------------------------------------------------------------- L2 PGD


def _small_net(seed=0):
    torch.manual_seed(seed)
    return models.freeze(models.ConvNet())


@pytest.mark.parametrize("mode", ["first", "best"])
@pytest.mark.parametrize("random_start", [True, False])
def test_l2_pgd_stays_in_its_ball_and_the_box(mode, random_start):
    *_, x = _data(32)
    y = torch.arange(32) % 10
    eps = 1.5
    result = attacks.pgd_l2(
        _small_net(),
        x,
        y,
        eps=eps,
        steps=10,
        random_start=random_start,
        mode=mode,
        batch_size=12,
    )
    delta = (result.adversarial - x).flatten(1)
    assert delta.norm(dim=1).max() <= eps + 1e-5
    assert result.adversarial.min() >= 0 and result.adversarial.max() <= 1
    assert result.success.shape == (32,) and result.steps.max() <= 10


def test_l2_pgd_moves_along_the_gradient_of_a_linear_model_and_finds_its_boundary():
    # two classes, logits z = W x: the CE gradient points along w_1 − w_0 everywhere,
    # so without box and random start δ ∥ w_1 − w_0 and the label flips at the margin
    g = torch.Generator().manual_seed(0)
    w = torch.randn(2, 50, generator=g)
    x = torch.randn(8, 50, generator=g)
    label = (x @ w.T).argmax(1)
    net = nn.Linear(50, 2, bias=False)
    net.weight.data = w
    models.freeze(net)
    normal = w[1] - w[0]
    margin = (x @ w.T).gather(1, label[:, None]).squeeze(1) - (x @ w.T).gather(
        1, 1 - label[:, None]
    ).squeeze(1)
    distance = margin / normal.norm()
    eps = float(distance.max()) * 1.5
    result = attacks.pgd_l2(
        net,
        x,
        label,
        eps=eps,
        steps=200,
        step_size=eps / 100,
        lower=None,
        upper=None,
        random_start=False,
        mode="first",
    )
    delta = result.adversarial - x
    cosine = (delta @ normal).abs() / (delta.norm(dim=1) * normal.norm())
    assert torch.allclose(cosine, torch.ones(8), atol=1e-5)
    assert result.success.all()
    # the first iterate past the boundary: at most one step beyond the distance
    assert (delta.norm(dim=1) >= distance - 1e-5).all()
    assert (delta.norm(dim=1) <= distance + eps / 100 + 1e-5).all()


def test_l2_pgd_rejects_bad_values_naming_them():
    x, y = torch.rand(2, 4), torch.zeros(2, dtype=torch.long)
    net = nn.Linear(4, 2)
    for kwargs, name in (
        (dict(eps=0.0), "eps"),
        (dict(eps=1.0, steps=0), "steps"),
        (dict(eps=1.0, step_size=-1.0), "step_size"),
        (dict(eps=1.0, mode="worst"), "mode"),
    ):
        with pytest.raises(ValueError, match=name):
            attacks.pgd_l2(net, x, y, **kwargs)


# ------------------------------------------------------- distances to boundary


def test_boundary_distance_is_exact_for_a_linear_classifier():
    g = torch.Generator().manual_seed(2)
    w, b = torch.randn(2, 30, generator=g), torch.randn(2, generator=g)
    net = nn.Linear(30, 2)
    net.weight.data, net.bias.data = w, b
    models.freeze(net)
    x = torch.randn(20, 30, generator=g)
    u = torch.randn(20, 30, generator=g)
    u = u / u.norm(dim=1, keepdim=True)
    z = net(x)
    a = z.argmax(1)
    m = (z[:, 1] - z[:, 0]) * torch.where(a == 1, 1.0, -1.0)  # margin > 0
    slope = (u @ (w[1] - w[0])) * torch.where(a == 1, 1.0, -1.0)
    exact = torch.where(slope < 0, m / -slope, torch.inf)  # ∞: moving away
    found = dimples.boundary_distance(
        net, x, u, t_min=0.01, t_max=1e4, grid=30, iterations=30
    )
    reachable = exact < 1e4
    assert torch.allclose(found[reachable], exact[reachable], rtol=1e-4)
    assert torch.isinf(found[~reachable]).all()
    nan_u = u.clone()
    nan_u[0] = torch.nan
    assert torch.isnan(dimples.boundary_distance(net, x, nan_u)[0])


# ------------------------------------------------- checkpoints and determinism


def test_checkpoint_steps_hold_zero_the_early_ones_and_every_epoch_end():
    steps = dimples.checkpoint_steps(100, 3, 5)
    assert steps[0] == 0 and steps == sorted(set(steps))
    assert {1, 100, 200, 300} <= set(steps)
    assert len([t for t in steps if 0 < t < 100]) == 4  # 1, 3, 10, 32 (100 is an end)
    with pytest.raises(ValueError, match="n_early"):
        dimples.checkpoint_steps(100, 3, 0)


def _train(seed, steps=(0, 1, 3, 8)):
    *_, letter, _, x = _data(64)
    torch.manual_seed(seed)
    net = models.ConvNet()
    kept = dimples.train_with_checkpoints(
        net,
        x,
        letter,
        steps,
        epochs=2,
        batch_size=16,
        lr=0.01,
        seed=seed,
        progress=False,
    )
    return net, kept, x, letter


def test_checkpoints_are_deterministic_and_do_not_change_the_training():
    net, kept, x, y = _train(0)
    assert [t for t, _ in kept] == [0, 1, 3, 8]
    _, again, *_ = _train(0)
    for (t, a), (u, b) in zip(kept, again):
        assert t == u and all(torch.equal(a[k], b[k]) for k in a)
    # the last checkpoint is the model as train() leaves it
    assert all(torch.equal(kept[-1][1][k], v) for k, v in net.state_dict().items())
    torch.manual_seed(0)
    plain = models.ConvNet()
    training.train(
        plain, x, y, epochs=2, batch_size=16, lr=0.01, seed=0, progress=False
    )
    assert all(torch.equal(kept[-1][1][k], v) for k, v in plain.state_dict().items())
    # step 0 is the initial weights
    torch.manual_seed(0)
    fresh = models.ConvNet().state_dict()
    assert all(torch.equal(kept[0][1][k], v) for k, v in fresh.items())
    with pytest.raises(ValueError, match="exceed"):
        _train(0, steps=(0, 9))


def test_measure_is_deterministic():
    decoder, font, letter, theta, x = _data(24)
    space = TangentSpace.of(decoder, font, letter, theta)
    _, kept, *_ = _train(0)
    model = dimples.load_state(kept[-1][1])
    a = dimples.measure(model, x, letter, space, MEASURE)
    b = dimples.measure(dimples.load_state(kept[-1][1]), x, letter, space, MEASURE)
    assert set(a) == set(dimples.COLUMNS)
    for key in dimples.COLUMNS:
        assert torch.equal(
            a[key].isnan() if a[key].is_floating_point() else a[key],
            b[key].isnan() if b[key].is_floating_point() else b[key],
        )
        assert torch.allclose(
            a[key].float().nan_to_num(7.0),
            b[key].float().nan_to_num(7.0),
            equal_nan=True,
        )
    shares = a["grad_share"]
    assert ((shares >= 0) & (shares <= 1 + 1e-6)).all()
    frame = dimpled.frame(dimples.stack([a, b]) | {"step": torch.tensor([0, 5])})
    assert len(frame) == 48 and set(frame.step) == {0, 5}
    summary = dimpled.summary(frame[frame.step == 5], MEASURE.t_max, "_final")
    assert summary["grad_share_mean_final_n"] == 24
    assert 0 <= summary["normal_closer_fraction_final"] <= 1


# --------------------------------------------------------------- settings


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("n_eval", 0),
        ("n_early", 1.5),
        ("epochs", 0),
        ("attack_steps", -1),
        ("n_random", 0),
        ("grid", 1),
        ("early_fraction", 0.0),
        ("early_fraction", 1.5),
        ("l2_eps", 0.0),
        ("linf_eps", -0.1),
        ("t_max", 0.01),
        ("gen_n", 0),
        ("n_fonts", 0),
    ],
)
def test_settings_reject_bad_values_naming_the_parameter(key, value):
    with pytest.raises(ValueError, match=key):
        dimpled.settings("smoke", **{key: value})


def test_settings_take_the_fonts_chapters_data_and_reject_unknown_keys():
    for profile in ("smoke", "quick", "paper"):
        s = dimpled.settings(profile)
        for key in dimpled.DATA_KEYS:
            assert getattr(s, key) == fonts_chapter_setting(profile, key)
    with pytest.raises(ValueError, match="unknown"):
        dimpled.settings("quick", n_evals=3)
    with pytest.raises(ValueError, match="profile"):
        dimpled.settings("huge")


def fonts_chapter_setting(profile, key):
    from advmanifold.chapters import fonts

    return fonts.SETTINGS[profile][key]


def test_schedule_puts_the_early_step_among_the_checkpoints():
    s = dimpled.settings("quick")
    steps, per_epoch, early = dimpled.schedule(80_000, s)
    assert per_epoch == 800 and early == 80 and early in steps
    assert steps[-1] == 800 * s.epochs and steps[0] == 0


# ------------------------------------------------------------------ claims


def _metrics(l2=0.1, linf=0.12, step0=0.12, early=0.08, closer=0.8, n=300):
    return {
        "random_share_mean": 0.084,
        "l2_share_mean_final": l2,
        "linf_share_mean_final": linf,
        "grad_share_mean_step0": step0,
        "grad_share_mean_step0_std": 0.03,
        "grad_share_mean_step0_n": n,
        "grad_share_mean_early": early,
        "grad_share_mean_early_std": 0.03,
        "grad_share_mean_early_n": n,
        "normal_closer_fraction_final": closer,
        "normal_closer_fraction_final_std": math.sqrt(closer * (1 - closer)),
        "normal_closer_fraction_final_n": n,
        "chance_fraction": 0.5,
    }


def test_the_chapters_claims_can_hold_and_fail():
    keys = [c.key for c in claims.of_chapter(dimpled.STEM)]
    assert keys == [
        "dimpled-perturbations-normal",
        "dimpled-clinging",
        "dimpled-normal-closer",
    ]
    good = claims.verdicts(dimpled.STEM, _metrics()).verdict
    assert (good == ledger.REPRODUCED).all()
    bad = claims.verdicts(
        dimpled.STEM, _metrics(l2=0.5, step0=0.08, early=0.12, closer=0.4)
    ).verdict
    assert (bad == ledger.NOT_REPRODUCED).all()
    # within noise: a drop of 0.002 with SE 0.03/√300 each is only partly
    small = claims.verdicts(dimpled.STEM, _metrics(step0=0.082, early=0.080)).verdict
    assert small["dimpled-clinging"] == ledger.PARTLY
    text = dimpled.conclusions(
        {
            **_metrics(),
            "early_step": 80,
            "grad_share_peak_over_random": 2.0,
            "grad_share_peak_step": 5,
            "grad_share_mean_final": 0.2,
            "d_normal_median_final": 1.0,
            "d_tangent_median_final": 3.0,
        }
    )
    assert "as clinging predicts" in text and "(most of them)" in text
