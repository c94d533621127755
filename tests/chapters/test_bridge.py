"""Bridge chapter: settings, units shared with the PMNIST chapter, generated summary."""

import pytest

from advmanifold.chapters import bridge, pmnist
from advmanifold import chapters as registry


def test_settings_and_bad_values():
    s = bridge.settings("smoke", n_verify=8)
    assert s.n_verify == 8 and s.eps == 0.1
    with pytest.raises(ValueError, match="n_verify"):
        bridge.settings("smoke", n_verify=0)
    with pytest.raises(ValueError, match="unknown setting"):
        bridge.settings("smoke", n_train=10)


def test_units_are_one_verification_per_model_on_the_pmnist_model_units(
    tmp_path, monkeypatch
):
    monkeypatch.setenv("ADVMANIFOLD_CACHE", str(tmp_path / "cache"))
    listed = bridge.units("quick", {"seed": 1})
    assert [u.name for u in listed] == [
        f"bridge-verify-{m.replace('_', '-')}" for m in pmnist.MODELS
    ]
    quick = pmnist.settings("quick")
    for unit, name in zip(listed, pmnist.MODELS):
        model = pmnist.model_unit(quick, name, 1)
        assert unit.deps[0].key == model.key == unit.config["model"]
        assert len(unit.config["code"]) == 16  # the verification code is in the key
    # overriding n_verify changes the verification units, not the models
    other = bridge.units("quick", {"seed": 1, "n_verify": 10})
    assert {u.key for u in other}.isdisjoint({u.key for u in listed})
    assert [u.deps[0].key for u in other] == [u.deps[0].key for u in listed]
    assert not list((tmp_path / "cache").glob("*"))
    # the plan lists the PCA fit and the models as dependencies, each once
    assert len(registry.chapter_units("04_bridge", "quick", {"seed": 1})) == 1 + 4 + 4


def test_verification_estimate_grows_with_the_work():
    small = bridge.verification_seconds(vars(bridge.settings("smoke")))
    large = bridge.verification_seconds(vars(bridge.settings("paper")))
    assert 0 < small < large


def test_summary_is_generated_from_the_numbers():
    models = list(pmnist.MODELS)
    metrics = {
        f"offmanifold_fraction_median_{m}_pgd": v
        for m, v in zip(models, (0.95, 0.9, 0.8, 0.85))
    }
    metrics.update(
        random_sign_offmanifold_fraction=0.98,
        knn_vs_exact_distance_mae=1e-7,
        knn_vs_exact_distance_mae_k5=0.2,
        max_gap_chapter_pgd_vs_worst=0.01,
        masking_flags_total=0,
    )
    cosines = {
        f"alignment_cosine_median_{m}": v for m, v in zip(models, (0.5, 0.6, 0.9, 0.7))
    }
    text, added = bridge.summary(metrics, models, cosines)
    assert "80.0% to 95.0%" in text and "all above one half" in text
    # off fractions 0.8 < 0.85 < 0.9 < 0.95 in the order of falling cosines
    assert added == {"offfraction_order_matches_alignment": 1}
    text, added = bridge.summary(metrics, models, None)
    assert "not available" in text and added == {}
