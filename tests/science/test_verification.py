"""Independent attack checks: agreement with torchattacks, worst case, masking flags."""

import math

import pytest
import torch

from advmanifold.science import attacks, models, training, verification


@pytest.fixture(scope="module")
def problem():
    torch.manual_seed(0)
    x = torch.rand(300, 1, 28, 28) * 1.6 - 0.3  # PMNIST-like: leaves [0, 1]
    y = (x.flatten(1) @ torch.randn(784, 10)).argmax(1)
    model = models.MLP((784, 64, 10))
    training.train(model, x, y, epochs=4, batch_size=50, progress=False)
    return model, x[:150], y[:150]


@pytest.mark.skipif(
    not verification.torchattacks_available(), reason="torchattacks not installed"
)
@pytest.mark.parametrize("box", [(None, None), (0.0, 1.0)])
def test_our_fgsm_matches_torchattacks(problem, box):
    model, x, y = problem
    if box == (0.0, 1.0):
        x = x.clamp(0, 1)
    ours = attacks.fgsm(model, x, y, eps=0.05, lower=box[0], upper=box[1])
    theirs = verification._third_party(
        model, x, y, 0.05, box=box, steps=5, restarts=1, seed=0, margin=False
    )
    assert torch.equal(ours.success, theirs["torchattacks FGSM"])


def small_verify(model, x, y, **options):
    """:func:`verification.verify` at ε = 0.05, no box, 10 and 20 steps (the small
    settings of these tests), with the other ``options`` given."""
    return verification.verify(
        model, x, y, 0.05, box=(None, None), steps=10, strong_steps=20, **options
    )


def test_worst_case_is_below_every_attack(problem):
    model, x, y = problem
    v = small_verify(model, x, y, restarts=2, targets=2)
    acc = v.accuracies()
    assert all(acc["worst case"] <= a + 1e-9 for a in acc.values())
    assert acc["worst case"] <= v.clean.float().mean().item()


def test_masking_flags_fire_on_constructed_cases(problem):
    model, x, y = problem
    v = small_verify(model, x, y, restarts=1, third_party=False)
    flags = verification.masking_flags(v, large_eps_accuracy=0.0, zero_gradients=0.0)
    assert flags == {
        "fgsm_beats_pgd": False,
        "zero_gradients": False,
        "large_eps_not_zero": False,
    }
    assert math.isnan(verification.third_party_gap(v))  # NaN without torchattacks
    # a model with a constant output has zero input gradients
    flat = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 10))
    torch.nn.init.zeros_(flat[1].weight)
    assert verification.zero_gradient_fraction(flat, x, y) == 1.0
    flags = verification.masking_flags(v, large_eps_accuracy=0.5, zero_gradients=1.0)
    assert flags["large_eps_not_zero"] and flags["zero_gradients"]
    # FGSM, one step, leaves fewer images correct than PGD: the third flag fires too
    clean = torch.ones(4, dtype=torch.bool)
    fooled_by = {
        "ours FGSM": torch.tensor([True, True, True, False]),
        "ours PGD-10": torch.tensor([True, False, False, False]),
    }
    stronger_fgsm = verification.Verification(0.05, clean, fooled_by)
    flags = verification.masking_flags(
        stronger_fgsm, large_eps_accuracy=0.0, zero_gradients=0.0
    )
    assert flags == {
        "fgsm_beats_pgd": True,
        "zero_gradients": False,
        "large_eps_not_zero": False,
    }


def test_margin_pgd_reaches_the_closed_form_on_a_linear_model():
    """For f(x) = W x with two classes the largest margin over the L∞ ball is
    M(x) + ε ‖w_other − w_y‖₁, reached at x + ε sign(w_other − w_y): fooled iff > 0."""
    g = torch.Generator().manual_seed(0)
    w = torch.randn(2, 20, generator=g)
    model = lambda v: v @ w.T  # noqa: E731
    x = torch.randn(200, 20, generator=g)
    y = (x @ w.T).argmax(1)
    eps = 0.05
    res = attacks.margin_pgd(
        model, x, y, eps=eps, steps=10, restarts=1, lower=None, upper=None, seed=0
    )
    sign = 1 - 2 * y.float()  # +1 when y = 0, else −1
    dw = (w[1] - w[0]).unsqueeze(0) * sign.unsqueeze(1)  # w_other − w_y
    best = (x @ dw.T).diagonal() + eps * dw.abs().sum(1)
    clear = best.abs() > 1e-4  # float32 rounding decides ties
    assert torch.equal(res.success[clear], (best > 0)[clear])
    assert 0 < res.success.float().mean() < 1  # the case is not trivial
    assert (res.adversarial - x).abs().max() <= eps + 1e-6


def test_margin_logits_are_the_cw_margin(problem):
    model, x, y = problem
    two = attacks.views.margin_logits(model, y)(x)
    logits = model(x)
    others = logits.clone()
    others[torch.arange(len(y)), y] = -float("inf")
    expected = others.max(1).values - logits[torch.arange(len(y)), y]
    torch.testing.assert_close(two[:, 1], expected)
    assert torch.equal(two[:, 0], torch.zeros(len(y)))
    with pytest.raises(RuntimeError, match="whole batch"):
        attacks.views.margin_logits(model, y)(x[:3])


def test_margin_attacks_join_the_worst_case(problem):
    model, x, y = problem
    v = small_verify(model, x, y, restarts=1, targets=2)
    names = list(v.successes)
    assert "ours PGD-CW-20×1" in names
    if verification.torchattacks_available():
        assert {"torchattacks APGD-DLR", "torchattacks APGD-T"} <= set(names)
    acc = v.accuracies()
    assert acc["worst case"] == pytest.approx(v.worst_case())
    assert v.margin_gain() >= 0
    ce = [n for n in names if not verification.is_margin(n)]
    assert v.margin_gain() == pytest.approx(v.worst_case(ce) - acc["worst case"])
    rows = {r["attack"]: r for r in v.lowering()}
    for name in names:
        assert rows[name]["accuracy"] == pytest.approx(acc[name])
        assert rows[name]["lowers CE worst case by"] >= 0
        assert (rows[name]["loss"] == "margin") == verification.is_margin(name)
    plain = small_verify(model, x, y, restarts=1, margin=False)
    assert not any(verification.is_margin(n) for n in plain.successes)
    assert plain.margin_gain() == 0
    with pytest.raises(ValueError, match="targets"):
        verification.verify(model, x, y, 0.05, targets=0)
