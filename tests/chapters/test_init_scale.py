"""Initialisation-scale chapter: the init knob, SGD's off-subspace factor, restricted
L2 PGD, determinism, settings and claims."""

import math

import pytest
import torch

from advmanifold.chapters import claims, init_scale, pmnist
from advmanifold.science import implicit_bias as ib
from advmanifold.science import attacks, models
from advmanifold.science.manifolds.linear import LinearManifold

D, K, CLASSES = 40, 5, 3


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def problem():
    """Data exactly in a K-dim subspace of R^D (projected), labels from the subspace
    coordinates, the fitted manifold and a small trained net."""
    g = torch.Generator().manual_seed(0)
    raw = torch.randn(600, K, generator=g) @ torch.randn(K, D, generator=g)
    manifold = LinearManifold.fit(raw, k=K)
    x = manifold.project(raw + 0.1 * torch.randn(600, D, generator=g))
    y = (x @ torch.randn(D, CLASSES, generator=g)).argmax(1)
    torch.manual_seed(0)
    net = models.MLP((D, 32, CLASSES))
    ib.train_sgd(net, x, y, epochs=5, batch_size=64, lr=0.1, progress=False)
    return manifold, x, y, models.freeze(net)


@pytest.mark.parametrize("c", [0.1, 1.0, 3.0])
def test_scale_init_multiplies_the_default_init_exactly(c):
    sizes = (784, 64, 64, 10)
    torch.manual_seed(7)
    default = models.MLP(sizes).state_dict()
    scaled = init_scale.build_model(sizes, c, seed=7).state_dict()
    assert scaled.keys() == default.keys()
    for name, value in default.items():  # biases too
        assert torch.equal(scaled[name], value * c), name


@pytest.mark.parametrize("c", [0, -1.0, math.nan, math.inf, True, "1"])
def test_scale_init_rejects_bad_scales(c):
    with pytest.raises(ValueError, match="c must be"):
        ib.scale_init(models.MLP((4, 3, 2)), c)


def test_off_subspace_factor_is_the_sgd_recursion():
    lr, beta, wd, steps = 0.1, 0.9, 0.01, 57
    w, v = 1.0, 0.0
    for _ in range(steps):
        v = beta * v + wd * w
        w -= lr * v
    assert ib.off_subspace_factor(steps, lr, beta, wd) == pytest.approx(w, rel=1e-12)
    assert ib.off_subspace_factor(steps, lr, beta, 0.0) == 1.0


@pytest.mark.parametrize("wd", [0.0, 0.01])
def test_sgd_never_moves_the_first_layers_off_subspace_weights(problem, wd):
    manifold, x, y, _ = problem
    net = init_scale.build_model((D, 32, CLASSES), 1.0, seed=3)
    weight = ib.first_linear(net).weight
    _, off0 = ib.weight_split(weight, manifold)
    out = ib.train_sgd(
        net, x, y, epochs=3, batch_size=50, lr=0.1, weight_decay=wd, progress=False
    )
    _, off1 = ib.weight_split(weight, manifold)
    rho = ib.off_subspace_factor(out["steps"], 0.1, 0.9, wd)
    assert out["steps"] == 3 * 12
    assert float(off1 / off0) == pytest.approx(rho, rel=1e-4)


@pytest.mark.parametrize("where", ib.WHERE)
def test_restricted_attacks_stay_in_their_subspace_and_ball(problem, where):
    manifold, x, y, net = problem
    eps = torch.linspace(0.5, 3.0, 100)  # one ε per example
    found = attacks.restricted_l2_pgd(
        net,
        x[:100],
        y[:100],
        eps=eps,
        steps=15,
        restrict=ib.restriction(manifold, where),
        seed=1,
    )
    delta = found.adversarial - x[:100]
    on = manifold.project_vectors(delta)
    norms = delta.norm(dim=1)
    assert bool((norms <= eps * (1 + 1e-5)).all())
    assert norms.max() > 0.4  # it moved
    if where == "orthogonal":
        assert on.norm(dim=1).max() < 1e-5
    if where == "subspace":
        assert (delta - on).norm(dim=1).max() < 1e-5
    with torch.no_grad():
        wrong = net(found.adversarial).argmax(1) != y[:100]
    assert torch.equal(wrong, found.success)


def test_attacks_and_training_are_deterministic_under_a_seed(problem):
    manifold, x, y, net = problem

    def attack(seed):
        q = ib.restriction(manifold, "orthogonal")
        return attacks.restricted_l2_pgd(
            net, x, y, eps=2.0, steps=5, restrict=q, seed=seed
        )

    a, b, c = attack(0), attack(0), attack(1)
    assert torch.equal(a.adversarial, b.adversarial)
    assert torch.equal(a.success, b.success)
    assert not torch.equal(a.adversarial, c.adversarial)

    def trained(seed):
        net = init_scale.build_model((D, 16, CLASSES), 0.5, seed)
        ib.train_sgd(net, x, y, epochs=2, lr=0.05, seed=seed, progress=False)
        return net.state_dict()

    first, again = trained(4), trained(4)
    assert all(torch.equal(first[k], again[k]) for k in first)


def test_a_network_blind_off_the_subspace_survives_orthogonal_attacks(problem):
    """A net that sees only P x cannot be fooled by δ ⟂ S, however large."""
    manifold, x, y, net = problem

    def blind(v):
        return net(manifold.project_vectors(v))

    survive = ib.restricted_robustness(
        blind, x[:60], y[:60], manifold, [1.0, 5.0], steps=5
    )
    clean = blind(x[:60]).argmax(1) == y[:60]
    assert survive.shape == (3, 2, 60)
    assert torch.equal(survive[0, 1], clean)  # orthogonal: nothing flips
    assert survive[1, 1].sum() < clean.sum()  # within S: some flip


@pytest.mark.parametrize(
    ("override", "word"),
    [
        ({"n_train": 0}, "n_train"),
        ({"n_train": 70_000}, "n_train"),
        ({"epochs": 0}, "epochs"),
        ({"hidden": 2.5}, "hidden"),
        ({"n_seeds": 0}, "n_seeds"),
        ({"n_eval": -3}, "n_eval"),
        ({"lr": 0}, "lr"),
        ({"momentum": 1.0}, "momentum"),
        ({"clip": -1.0}, "clip"),
        ({"init_scales": [2.0, 1.0]}, "init_scales"),
        ({"init_scales": [0.1, 1.0, -1.0]}, "init_scales"),
        ({"init_scales": "0.1"}, "init_scales"),
        ({"weight_decays": [0.001]}, "weight_decays"),
        ({"weight_decays": [0.0, -0.1]}, "weight_decays"),
        ({"eps_grid": [0.0, 1.0]}, "eps_grid"),
        ({"pgd_steps": 0}, "pgd_steps"),
        ({"nonsense": 1}, "unknown setting"),
    ],
)
def test_settings_reject_bad_values_naming_the_parameter(override, word):
    with pytest.raises(ValueError, match=word):
        init_scale.settings("quick", **override)


def test_units_one_model_and_evaluation_per_grid_point_and_seed():
    s = init_scale.settings("smoke")
    listed = init_scale.units("smoke", {"seed": 5})
    assert len(listed) == len(init_scale.ARCHS) * len(init_scale.grid(s)) * s.n_seeds
    assert len({u.key for u in listed}) == len(listed)
    assert {u.config["seed"] for u in listed} == {5, 6}
    models_ = [u.deps[0] for u in listed]
    assert {(m.config["init_scale"], m.config["weight_decay"]) for m in models_} == {
        (0.1, 0.0),
        (1.0, 0.0),
        (1.0, 0.01),
    }
    # the PCA unit is the PMNIST chapter's own (one cache entry for both chapters)
    pca = pmnist.pca_unit(pmnist.settings("smoke"))
    assert {m.deps[0].key for m in models_} == {pca.key}


def _metrics(orth_gain: float, sub_gain: float, std: float = 0.01) -> dict:
    """Chapter results where the small init and weight decay lower the share by 0.2,
    raise survival ⟂ S by ``orth_gain`` and survival in S by ``sub_gain``."""
    m = {"n_seeds": 3}
    for arch in init_scale.ARCHS:
        for point in init_scale.POINTS:
            moved = point != "base"
            values = {
                "orth_share": 0.3 - 0.2 * moved,
                "survival_orthogonal": 0.7 + orth_gain * moved,
                "survival_subspace": 0.4 + sub_gain * moved,
            }
            for metric, value in values.items():
                m[f"{metric}_{arch}_{point}"] = value
                m[f"{metric}_{arch}_{point}_std"] = std
    return m


def test_claims_read_the_chapters_keys_and_judge_them():
    holds = claims.verdicts(init_scale.STEM, _metrics(0.2, 0.0)).verdict
    assert set(holds.index) == {
        "initscale-small-init",
        "initscale-weight-decay",
        "initscale-no-gain-in-subspace",
    }
    assert all(v == "reproduced" for v in holds)
    fails = claims.verdicts(init_scale.STEM, _metrics(-0.1, 0.2)).verdict
    assert all(v == "not reproduced" for v in fails)


def test_the_gains_summary_reads_the_recorded_keys():
    text = init_scale.gains_markdown(_metrics(0.2, -0.05))
    assert text.count("\n") == len(init_scale.ARCHS) - 1
    assert "+0.200 with the smallest c" in text and "within S by -0.050" in text
