"""The MNIST chapter's settings and units (issue 12 §1)."""

import pytest
import torch

from advmanifold.chapters import mnist
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
    assert [u.name for u in listed] == ["convnet-mnist", "vaegans-mnist"]
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
    by_name = {u.name: u for u in listed}
    net = mnist.classifier(by_name["convnet-mnist"])
    model, history = mnist.vaegans(by_name["vaegans-mnist"])
    assert model.n_models == 10
    assert len(history) == mnist.TABLE["smoke"]["vaegan_epochs"]
    assert not any(p.requires_grad for p in net.parameters())
    stems = {p.stem for p in tmp_path.glob("*.pt")}
    assert stems == {u.key for u in listed}
    again = registry.chapter_units("02_mnist", "smoke", {"seed": 0})
    assert all(u.is_cached() for u in again)


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
