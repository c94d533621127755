"""Independent attack checks: agreement with torchattacks, worst case, masking flags."""
import pytest
import torch

from advmanifold import attacks, models, training, verification


@pytest.fixture(scope="module")
def problem():
    torch.manual_seed(0)
    x = torch.rand(300, 1, 28, 28) * 1.6 - 0.3  # PMNIST-like: leaves [0, 1]
    y = (x.flatten(1) @ torch.randn(784, 10)).argmax(1)
    model = models.MLP((784, 64, 10))
    training.train(model, x, y, epochs=4, batch_size=50, progress=False)
    return model, x[:150], y[:150]


@pytest.mark.skipif(not verification.torchattacks_available(), reason="torchattacks not installed")
@pytest.mark.parametrize("box", [(None, None), (0.0, 1.0)])
def test_our_fgsm_matches_torchattacks(problem, box):
    model, x, y = problem
    if box == (0.0, 1.0):
        x = x.clamp(0, 1)
    ours = attacks.fgsm(model, x, y, eps=0.05, lower=box[0], upper=box[1])
    theirs = verification._third_party(model, x, y, 0.05, box=box, steps=5, restarts=1, seed=0)
    assert torch.equal(ours.success, theirs["torchattacks FGSM"])


def test_worst_case_is_below_every_attack(problem):
    model, x, y = problem
    v = verification.verify(model, x, y, 0.05, box=(None, None), steps=10, strong_steps=20, restarts=2)
    acc = v.accuracies()
    assert all(acc["worst case"] <= a + 1e-9 for a in acc.values())
    assert acc["worst case"] <= v.clean.float().mean().item()


def test_masking_flags_fire_on_constructed_cases(problem):
    model, x, y = problem
    v = verification.verify(model, x, y, 0.05, box=(None, None), steps=10, strong_steps=20, restarts=1,
                            third_party=False)
    flags = verification.masking_flags(v, large_eps_accuracy=0.0, zero_gradients=0.0)
    assert flags == {"fgsm_beats_pgd": False, "zero_gradients": False, "large_eps_not_zero": False}
    assert verification.third_party_gap(v) != verification.third_party_gap(v)  # NaN without torchattacks
    # a model with a constant output has zero input gradients
    flat = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 10))
    torch.nn.init.zeros_(flat[1].weight)
    assert verification.zero_gradient_fraction(flat, x, y) == 1.0
    assert verification.masking_flags(v, large_eps_accuracy=0.5, zero_gradients=1.0)["large_eps_not_zero"]
