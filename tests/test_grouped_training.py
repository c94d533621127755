"""Seeds of an MLP trained as one grouped network equal the seeds trained apart."""

import pytest
import torch

from advmanifold import alignment, models, training
from advmanifold.manifolds.linear import LinearManifold

SIZES = (20, 24, 24, 3)
SEEDS = (3, 4, 5)


def _data(n=90, d=20, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g)
    y = (x[:, 0] > 0).long() + (x[:, 1] > 0.5).long()
    return x, y


def _objectives(manifold):
    return {
        "cross_entropy": training.cross_entropy,
        "adversarial": lambda: training.adversarial(0.1, 3, lower=None, upper=None),
        "aligned": lambda: alignment.aligned_cross_entropy(manifold, 1.0),
        "adversarial+alignment": lambda: training.combined(
            training.adversarial(0.1, 3, lower=None, upper=None),
            alignment.alignment_penalty(manifold, 1.0),
        ),
    }


def _fresh(seed):
    torch.manual_seed(seed)
    return models.MLP(SIZES)


@pytest.mark.parametrize(
    "name", ["cross_entropy", "adversarial", "aligned", "adversarial+alignment"]
)
def test_grouped_training_equals_training_apart(name):
    x, y = _data()
    manifold = LinearManifold.fit(x, k=5)
    make = _objectives(manifold)[name]
    kwargs = dict(epochs=2, batch_size=32, lr=1e-2, progress=False)
    apart = []
    for s in SEEDS:
        net = _fresh(s)
        training.train(net, x, y, make(), seed=s, **kwargs)
        apart.append(net)
    group = models.GroupedMLP([_fresh(s) for s in SEEDS])
    history = training.train_group(group, x, y, make(), seeds=SEEDS, **kwargs)
    assert len(history) == 2
    for alone, member in zip(apart, group.members()):
        moved = False
        pairs = zip(alone.state_dict().items(), member.state_dict().values())
        for (key, a), b in pairs:
            assert torch.allclose(a, b, atol=2e-5, rtol=1e-4), (name, key)
            moved |= not torch.allclose(a, _fresh(0).state_dict()[key])
        assert moved
    # the members differ from each other: their seeds, not one shared trajectory
    first, second = (m.state_dict()["net.1.weight"] for m in group.members()[:2])
    assert not torch.allclose(first, second)


def test_grouped_mlp_forward_and_members():
    nets = [_fresh(s) for s in SEEDS]
    group = models.GroupedMLP(nets)
    x = torch.randn(len(SEEDS) * 7, SIZES[0])
    out = group(x)
    expected = torch.cat([net(x[7 * i : 7 * (i + 1)]) for i, net in enumerate(nets)])
    assert torch.allclose(out, expected, atol=1e-6)
    for net, member in zip(nets, group.members()):
        for a, b in zip(net.state_dict().values(), member.state_dict().values()):
            assert torch.equal(a, b)
    with pytest.raises(ValueError, match="seeds"):
        training.train_group(group, x, x[:, 0].long(), seeds=[1], epochs=1)
    with pytest.raises(ValueError, match="nets"):
        models.GroupedMLP([])
