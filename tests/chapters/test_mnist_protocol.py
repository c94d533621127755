"""The MNIST chapter's settings and units (issue 12 §1)."""

import math

import pytest
import torch

from advmanifold.chapters import mnist
from advmanifold.science import generative, vaegan_training
from advmanifold import chapters as registry


def test_settings_per_profile_and_overrides():
    quick = mnist.settings("quick", n_onmanifold=10, attempts=None)
    assert quick.n_onmanifold == 10
    assert quick.attempts == mnist.TABLE["quick"]["attempts"]
    paper = mnist.settings("paper")
    # the original's budgets: 2,500 test images × 5 attempts; VAE-GANs with batch 100,
    # 30 epochs on all training images
    assert (paper.n_onmanifold, paper.attempts) == (2500, 5)
    assert (paper.vaegan_batch, paper.vaegan_epochs) == (100, 30)
    assert paper.vaegan_per_class is None
    with pytest.raises(ValueError, match="profile"):
        mnist.settings("huge")
    with pytest.raises(ValueError, match="unknown setting"):
        mnist.settings("quick", epochs=3)


def test_vaegan_subset_takes_the_first_images_of_each_digit():
    y = torch.tensor([3, 1, 3, 0, 1, 3, 2, 0, 2, 1, 4, 5, 6, 7, 8, 9, 9])
    idx = mnist.vaegan_subset(y, 2)
    assert idx.tolist() == sorted(idx.tolist())
    for c in range(10):
        assert idx[y[idx] == c].tolist() == (y == c).nonzero().squeeze(1)[:2].tolist()
    assert torch.equal(mnist.vaegan_subset(y, None), torch.arange(len(y)))


def test_units_are_listed_without_building(tmp_path, monkeypatch):
    monkeypatch.setenv("ADVMANIFOLD_CACHE", str(tmp_path))
    listed = registry.chapter_units("02_mnist", "smoke", {"seed": 0})
    names = [u.name for u in listed]
    S = mnist.settings("smoke")
    n_regular = math.ceil(S.n_test / S.attack_chunk)
    n_onmanifold = math.ceil(S.n_onmanifold / S.attack_chunk)
    assert names == (
        ["convnet-mnist"]
        + ["vaegan-mnist"] * 10
        + ["vaegans-mnist", "mnist-test-codes"]
        + ["mnist-regular-attack"] * n_regular
        + ["mnist-onmanifold-attack"] * n_onmanifold
        + ["mnist-verify"] * 2
    )
    assert n_regular > 1 and n_onmanifold > 1  # the chunks are shared out
    assert [u.config["digit"] for u in listed[1:11]] == list(range(10))
    gans = listed[11]
    assert gans.deps == tuple(listed[1:11])  # the assembly waits for the ten
    # every unit lists the units it reads, and their keys are in its configuration
    for unit in listed[12:]:
        assert unit.deps and all(d.key in unit.config.values() for d in unit.deps)
    assert [u.config["eps"] for u in listed[-2:]] == [mnist.EPS, S.verify_small_eps]
    rows = [(u.config["start"], u.config["stop"]) for u in listed[13:-2]]
    assert rows[:n_regular] == mnist.chunks(S.n_test, S.attack_chunk)
    assert rows[n_regular:] == mnist.chunks(S.n_onmanifold, S.attack_chunk)
    assert not any(tmp_path.iterdir())  # nothing built by listing
    assert all(u.estimate_s > 0 and not u.is_cached() for u in listed)
    # the device is not part of a unit's configuration
    on_cuda = registry.chapter_units("02_mnist", "smoke", {"seed": 0, "device": "cuda"})
    assert [u.key for u in on_cuda] == [u.key for u in listed]
    other = registry.chapter_units("02_mnist", "smoke", {"seed": 1, "vaegan_epochs": 2})
    assert all(a.key != b.key for a, b in zip(other, listed))


def test_building_the_units_creates_exactly_the_listed_entries(tmp_path, monkeypatch):
    """What the notebook does (``unit.get()`` through the package) writes the listed
    cache entries and nothing else; a second listing finds them cached."""
    monkeypatch.setenv("ADVMANIFOLD_CACHE", str(tmp_path))
    torch.set_num_threads(1)
    listed = registry.chapter_units("02_mnist", "smoke", {"seed": 0})
    found = mnist.grid("smoke", {"seed": 0})
    net = mnist.classifier(found["classifier"])
    model, history = mnist.vaegans(found["vaegans"])
    assert model.n_models == 10
    assert len(history) == mnist.TABLE["smoke"]["vaegan_epochs"]
    assert not any(p.requires_grad for p in net.parameters())
    index, regular = mnist.regular_result(found["regular"])
    onman = mnist.onmanifold_result(found["onmanifold"])
    assert len(index) == len(regular.success) and onman.z.shape[1] == 60
    checks = mnist.verifications(found["verify"])
    S = mnist.settings("smoke")
    assert sorted(checks) == sorted([mnist.EPS, S.verify_small_eps])
    assert all(len(c.clean) == S.verify_n for c in checks.values())
    stems = {p.stem for p in tmp_path.glob("*.pt")}
    assert stems == {u.key for u in listed}
    again = registry.chapter_units("02_mnist", "smoke", {"seed": 0})
    assert all(u.is_cached() for u in again)
    assert all(u.build_seconds() > 0 for u in again)

    # the ten digit units assembled are bit for bit the sequential training of all ten
    S = mnist.settings("smoke")
    x, y = mnist.train_set(S)
    idx = mnist.vaegan_subset(y, S.vaegan_per_class)
    whole, whole_history = vaegan_training.train_vaegans(
        x[idx],
        y[idx],
        epochs=S.vaegan_epochs,
        batch_size=S.vaegan_batch,
        seed=0,
        strategy="sequential",
        progress=False,
        **mnist.VAEGAN,
    )
    state = model.state_dict()
    for name, value in whole.state_dict().items():
        assert torch.equal(value, state[name]), name
    assert history == whole_history

    # the attack chunks concatenated equal one attack over all the images
    x_test, y_test = mnist.test_set()
    n = S.n_test
    one = mnist.regular_attack(net, x_test[:n], y_test[:n], S, seed=0)
    assert torch.equal(index, one["index"])
    for field in ("adversarial", "success", "steps"):
        assert torch.equal(getattr(regular, field), one[field]), field
    assert not torch.equal(regular.adversarial, x_test[index])  # it moved
    mu = mnist.test_codes(found["codes"])
    torch.testing.assert_close(mu, generative.encode_by_class(model, x_test, y_test))
    m = S.n_onmanifold
    whole_on = generative.onmanifold_attack(
        net,
        model,
        x_test[:m],
        y_test[:m],
        box=generative.latent_box(mu),
        eta=mnist.ETA,
        bound=mnist.Z_BOUND,
        steps=S.steps,
        attempts=S.attempts,
        seed=0,
        z0=mu[:m],
        ids=torch.arange(m),
        progress=False,
    )
    assert onman.attacked.sum() > 0
    for field in ("z0", "z", "fooled", "clean_correct", "attacked", "steps"):
        assert torch.equal(getattr(onman, field), getattr(whole_on, field)), field


def test_prior_bound_probability():
    g = torch.Generator().manual_seed(0)
    z = torch.randn(200_000, 10, generator=g)
    empirical = (z.abs().amax(1) > 2.0).float().mean().item()
    assert mnist.prior_linf_above(2.0, 10) == pytest.approx(empirical, abs=0.005)


def test_smoke_run_creates_exactly_the_listed_units(tmp_path, monkeypatch):
    """The chapter executed in ``smoke`` writes exactly the cache entries that
    :func:`mnist.units` lists, and the results the issue asks for."""
    import json
    from pathlib import Path

    papermill = pytest.importorskip("papermill")
    root = Path(__file__).resolve().parents[2]
    for var, sub in (
        ("ADVMANIFOLD_CACHE", "cache"),
        ("ADVMANIFOLD_RESULTS", "results"),
        ("ADVMANIFOLD_FIGURES", "figures"),
    ):
        (tmp_path / sub).mkdir()
        monkeypatch.setenv(var, str(tmp_path / sub))
    papermill.execute_notebook(
        str(root / "notebooks" / "02_mnist.ipynb"),
        str(tmp_path / "out.ipynb"),
        parameters={"profile": "smoke", "threads": 1},
        cwd=str(root / "notebooks"),
        progress_bar=False,
    )
    listed = {u.key for u in registry.chapter_units("02_mnist", "smoke", {"seed": 0})}
    assert {p.stem for p in (tmp_path / "cache").glob("*.pt")} == listed
    result = json.loads((tmp_path / "results" / "02_mnist.json").read_text())
    metrics = result.get("metrics", result)
    assert metrics["cache_misses"] == len(listed)
    for key in (
        "onmanifold_success_rate",
        "onmanifold_success_rate_strict",
        "onmanifold_count",
        "encoder_mean_outside_bound_fraction",
    ):
        assert key in metrics, key
    assert 0 <= metrics["onmanifold_success_rate"] <= 1
