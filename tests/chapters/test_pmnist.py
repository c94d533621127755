"""PMNIST chapter: linear projector, alignment metrics and loss, boundary crossings."""

import pytest
import torch
from torch import nn

from advmanifold.science import alignment, attacks, boundaries
from advmanifold import chapters as registry
from advmanifold.book import results
from advmanifold.chapters import pmnist
from advmanifold.science.manifolds.linear import ATTACK_BOX, LinearManifold, pca_basis


def _data(n=300, d=20, k=4, classes=3, seed=0):
    """Points near class-specific k-dim subspaces plus a little noise, labels."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % classes
    bases = torch.linalg.qr(torch.randn(classes, d, k, generator=g))[0].transpose(1, 2)
    z = torch.randn(n, k, generator=g) * torch.linspace(3, 1, k)
    noise = 0.01 * torch.randn(n, d, generator=g)
    x = torch.einsum("nk,nkd->nd", z, bases[y]) + noise + 0.5
    return x, y


@pytest.fixture(params=["global", "per_class"])
def fitted(request):
    x, y = _data()
    return LinearManifold.fit(x, y, k=4, mode=request.param), x, y


def _labels(m, y):
    return y if m.mode == "per_class" else None


def test_pca_basis_orthonormal_and_matches_svd():
    x, _ = _data()
    basis, mean = pca_basis(x, 4)
    assert torch.allclose(basis @ basis.T, torch.eye(4), atol=1e-5)
    u, s, vt = torch.linalg.svd((x - x.mean(0)).double(), full_matrices=False)
    # same subspace as the top-4 right singular vectors
    projector = basis.double().T @ basis.double()
    assert torch.allclose(projector, vt[:4].T @ vt[:4], atol=1e-5)
    assert torch.allclose(mean, x.mean(0), atol=1e-6)


def test_projector_identities(fitted):
    m, x, y = fitted
    lab = _labels(m, y)
    v = torch.randn_like(x)
    pv = m.project_vectors(v, lab)
    assert torch.allclose(m.project_vectors(pv, lab), pv, atol=1e-5)  # P² = P
    r = m.residual(v, lab)
    assert (r * pv).sum(1).abs().max() < 1e-4  # residual ⟂ subspace
    squares = pv.norm(dim=1) ** 2 + r.norm(dim=1) ** 2
    assert torch.allclose(v.norm(dim=1) ** 2, squares, rtol=1e-4)
    px = m.project(x, lab)
    assert torch.allclose(m.project(px, lab), px, atol=1e-5)  # on-manifold points stay
    assert m.distance(px, lab).max() < 1e-4
    assert m.distance(x, lab).min() > 0


def test_exact_recovery_of_on_manifold_points(fitted):
    m, x, y = fitted
    lab = _labels(m, y)
    basis = m.bases[0] if m.mode == "global" else m.bases[y]
    z = torch.randn(len(x), m.k)
    on = torch.einsum("nk,kd->nd" if m.mode == "global" else "nk,nkd->nd", z, basis)
    assert torch.allclose(m.project(on, lab), on, atol=1e-5)
    proj = m.projection(on + 0.0, on - m.residual(torch.ones_like(on), lab), lab)
    # δ is orthogonal to the subspace: 90° for every example, not only for one
    assert proj.distance.max() < 1e-4 and proj.angle_deg.min() > 89.9


def test_shapes_global_vs_per_class():
    x, y = _data()
    g = LinearManifold.fit(x, k=4)
    p = LinearManifold.fit(x, y, k=4, mode="per_class")
    assert g.bases.shape == (1, 4, 20) and p.bases.shape == (3, 4, 20)
    assert g.matrix().shape == (20, 20) and p.matrix(y[:5]).shape == (5, 20, 20)
    P = g.matrix()
    assert torch.allclose(P @ P, P, atol=1e-5) and torch.allclose(P, P.T, atol=1e-6)
    with pytest.raises(ValueError, match="labels"):
        p.project(x)
    with pytest.raises(ValueError, match="mode"):
        LinearManifold.fit(x, k=4, mode="local")
    # per-class subspaces fit their own class better than the global one
    assert p.distance(x, y).mean() < g.distance(x).mean()


def test_centring_is_a_constant_shift():
    x, _ = _data()
    lin, aff = LinearManifold.fit(x, k=4), LinearManifold.fit(x, k=4, center=True)
    shift = aff.project(x) - lin.project(x)
    assert torch.allclose(shift, shift[:1].expand_as(shift), atol=1e-5)
    assert torch.allclose(shift[0], lin.residual(x.mean(0, keepdim=True))[0], atol=1e-5)
    assert aff.distance(x).mean() < lin.distance(x).mean()
    assert ATTACK_BOX == (None, None)


def _mlp(d=20, seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(d, 32), nn.Tanh(), nn.Linear(32, 3))


def test_ratio_is_one_inside_the_subspace_and_metrics_agree(fitted):
    m, x, y = fitted
    lab = _labels(m, y)
    g_in = m.project_vectors(torch.randn_like(x), lab)
    assert torch.allclose(alignment.ratio(g_in, m, lab), torch.ones(len(x)), atol=1e-4)
    g = torch.randn_like(x)
    r, c = alignment.ratio(g, m, lab), alignment.cosine(g, m, lab)
    rej = alignment.rejection(g, m, lab)
    assert (r > 1).all() and torch.allclose(r * c, torch.ones(len(x)), atol=1e-5)
    ones = torch.ones(len(x))
    assert torch.allclose(c**2 + (rej / g.norm(dim=1)) ** 2, ones, atol=1e-5)


def test_input_gradients_are_per_example():
    model, (x, y) = _mlp(), _data(n=6)
    g = alignment.input_gradients(model, x, y)
    for i in (0, 3):
        xi = x[i : i + 1].clone().requires_grad_(True)
        nn.functional.cross_entropy(model(xi), y[i : i + 1]).backward()
        assert torch.allclose(g[i], xi.grad[0], atol=1e-6)
    assert torch.allclose(alignment.input_gradients(model, x, y, batch_size=4), g)


def test_alignment_loss_reaches_weights_and_improves_alignment(fitted):
    m, x, y = fitted
    model = _mlp()
    penalty = alignment.alignment_penalty(m, alpha=1.0)
    loss = penalty(model, x, y)
    grads = torch.autograd.grad(loss, list(model.parameters()), allow_unused=True)
    assert all(g is not None for g in grads)
    # first-layer weights get a gradient through double backprop
    assert grads[0].abs().sum() > 0
    grad = alignment.input_gradients(model, x, y)
    before = alignment.ratio(grad, m, _labels(m, y)).mean()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(30):
        opt.zero_grad()
        penalty(model, x, y).backward()
        opt.step()
    grad = alignment.input_gradients(model, x, y)
    after = alignment.ratio(grad, m, _labels(m, y)).mean()
    assert after < before - 0.1


def test_bisection_and_angle_of_a_linear_classifier():
    torch.manual_seed(1)
    d = 10
    lin = nn.Linear(d, 2)  # one boundary, z_0 − z_1 = 0, a hyperplane
    w = lin.weight.detach()
    x0 = torch.randn(64, d)
    a = lin(x0).argmax(1)
    b = 1 - a
    normal = w[a] - w[b]
    # end points pushed across the boundary along a random direction with the right sign
    v = torch.randn(64, d)
    v = v * torch.sign(-(v * normal).sum(1, keepdim=True))
    margin = (lin(x0).gather(1, a[:, None]) - lin(x0).gather(1, b[:, None])).squeeze(1)
    t_star = margin / (-(v * normal).sum(1))  # z_a − z_b = 0 at x0 + t v
    x1 = x0 + 2 * t_star[:, None] * v  # crossing at t = 1/2 of the path
    cr = boundaries.crossing(lin, x0, x1, iterations=30, batch_size=20)
    assert cr.valid.all() and (cr.class_b == b).all()
    assert torch.allclose(cr.t, torch.full((64,), 0.5), atol=1e-5)
    cos = (v * normal).sum(1).abs() / (v.norm(dim=1) * normal.norm(dim=1))
    expected = torch.rad2deg(torch.asin(cos))
    assert torch.allclose(cr.angle_deg, expected, atol=1e-3)
    assert torch.allclose(cr.normal, normal, atol=1e-5)
    # perpendicular crossing gives 90°, a path that does not cross is flagged invalid
    step = (margin[:4] / normal[:4].norm(dim=1) ** 2)[:, None]
    perp = boundaries.crossing(lin, x0[:4], x0[:4] - 3 * normal[:4] * step)
    assert torch.allclose(perp.angle_deg, torch.full((4,), 90.0), atol=1e-2)
    same = boundaries.crossing(lin, x0[:4], x0[:4])
    assert not same.valid.any() and torch.isnan(same.angle_deg).all()


def test_fgsm_equals_one_pgd_step_of_size_eps():
    model, (x, y) = _mlp(), _data(n=50)
    for p in model.parameters():
        p.requires_grad_(False)
    # every example starts correctly classified, so PGD takes its one step
    y = model(x).argmax(1)
    lower, upper = ATTACK_BOX
    f = attacks.fgsm(model, x, y, eps=0.1, lower=lower, upper=upper)
    p = attacks.pgd(
        model,
        x,
        y,
        eps=0.1,
        steps=1,
        step_size=0.1,
        random_start=False,
        mode="first",
        lower=lower,
        upper=upper,
    )
    assert (p.steps == 1).all()
    assert torch.allclose(p.adversarial, f.adversarial, atol=1e-6)
    assert torch.equal(p.success, f.success)
    assert torch.allclose((f.adversarial - x).abs(), torch.full_like(x, 0.1), atol=1e-6)


def test_targeted_view_and_training_objectives():
    model, (x, _) = _mlp(), _data(n=8)
    u = attacks.targeted(model, 2)(x)
    z = model(x)
    assert u.shape == (8, 2) and torch.allclose(u[:, 1], z[:, 2])
    assert torch.equal(u.argmax(1) == 1, (z[:, 2] > torch.logsumexp(z[:, :2], 1)))
    with pytest.raises(ValueError, match="model name"):
        pmnist.objective("fancy", None, pmnist.TRAINING["smoke"])
    with pytest.raises(ValueError, match="settings lack"):
        pmnist.training_settings({"k": 28})


def test_seeds_and_mean_std_over_seeds():
    assert pmnist.seeds(3, seed=5) == [5, 6, 7]
    assert all(pmnist.N_SEEDS[p] >= 2 for p in ("smoke", "quick"))
    assert pmnist.N_SEEDS["paper"] >= 3
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="n_seeds"):
            pmnist.seeds(bad)
    values = [0.91, 0.95, 0.87, 0.93]
    mean, std = results.mean_std(values)
    assert mean == pytest.approx(0.915)
    # sample standard deviation (n − 1), not the population one
    assert std == pytest.approx((sum((v - 0.915) ** 2 for v in values) / 3) ** 0.5)
    assert results.mean_std(torch.tensor([0.5])) == (0.5, 0.0)
    with pytest.raises(ValueError, match="finite"):
        results.mean_std([0.1, float("nan")])
    with pytest.raises(ValueError, match="at least one"):
        results.mean_std([])


@pytest.mark.parametrize("center", [False, True])
def test_subspace_distances_equal_projecting_onto_each_subspace(center):
    x, y = _data()
    m = LinearManifold.fit(x, y, k=4, mode="per_class", center=center)
    expected = torch.stack([m.distance(x, torch.full_like(y, c)) for c in range(3)], 1)
    assert torch.allclose(m.subspace_distances(x), expected, atol=1e-4)
    on = m.project(x, y)
    # the label leak of per_class
    assert (m.subspace_distances(on).argmin(1) == y).all()


def test_units_are_listed_without_building_anything(tmp_path, monkeypatch):
    from advmanifold.chapters import bridge

    monkeypatch.setenv("ADVMANIFOLD_CACHE", str(tmp_path / "cache"))
    listed = registry.chapter_units("03_pmnist", "paper", {"seed": 0})
    names = sorted({u.name for u in listed})
    assert names == sorted(
        ["pmnist-pca"]
        + [
            f"pmnist-{kind}-{m.replace('_', '-')}"
            for kind in ("mlp", "eval")
            for m in pmnist.MODELS
        ]
    )
    n_seeds = pmnist.N_SEEDS["paper"]
    assert len(listed) == 2 + 2 * len(pmnist.MODELS) * n_seeds  # two PCA fits
    assert not list((tmp_path / "cache").glob("*"))  # nothing built, nothing cached
    model = next(u for u in listed if u.name == "pmnist-mlp-baseline")
    pca = model.deps[0]
    assert model.config["data"] == {"pca": pca.key, "n_train": 60_000}
    # the bridge reuses exactly the PMNIST chapter's model units (same keys)
    bridge_units = registry.chapter_units("04_bridge", "paper", {"seed": 0})
    bridge_keys = {u.key for u in bridge_units}
    assert {
        u.key
        for u in listed
        if u.name.startswith("pmnist-mlp") and u.config["seed"] == 0
    } < bridge_keys
    # overrides reach the units; another seed or n_train is another unit
    other = registry.chapter_units("03_pmnist", "paper", {"seed": 0, "n_train": 1000})
    assert not {u.key for u in other if "mlp" in u.name} & {u.key for u in listed}
    assert bridge.units("paper", {"seed": 0})[0].estimate_s > 0


def test_paper_profile_fits_its_time_budget_by_its_own_estimate():

    for stem in ("03_pmnist", "04_bridge"):
        total = sum(u.estimate_s for u in registry.chapter_units(stem, "paper", {}))
        assert 600 < total < 2.5 * 3600, (stem, total)
    s = pmnist.settings("paper")
    assert (s.k, s.adv_eps, s.n_train) == (28, 0.1, None)  # the paper's own settings


def test_settings_reject_bad_values_before_any_work():
    with pytest.raises(ValueError, match="pca_mode"):
        pmnist.settings("smoke", pca_mode="local")
    with pytest.raises(ValueError, match="n_train"):
        pmnist.settings("smoke", n_train=70_000)
    with pytest.raises(ValueError, match="n_seeds"):
        pmnist.settings("smoke", n_seeds=0)
    with pytest.raises(ValueError, match="unknown setting"):
        pmnist.settings("smoke", momentum=0.9)
    with pytest.raises(ValueError, match="profile"):
        pmnist.settings("huge")


def test_partners_have_another_label():
    y = torch.tensor([0, 0, 1, 1, 1, 2, 0])
    p = pmnist.partners(y)
    assert (y[p] != y).all()
    assert p.tolist() == [2, 2, 5, 5, 5, 6, 2]  # cyclic: 6 → 0 → 1 → 2
