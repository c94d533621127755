"""The claims ledger judges from results files, and its rules can say no."""
from advmanifold import claims


def fonts(test=0.01, onm=0.02, reg=3.0, ratio=0.97):
    return {"01_fonts": {"distance_test_median": test, "distance_onmanifold_median": onm,
                         "distance_regular_median": reg, "regular_distance_over_l2_median": ratio}}


def by_key(results):
    return {c.key: c.verdict(results).verdict for c in claims.CLAIMS}


def test_fonts_rules_reproduce_and_refute():
    good = by_key(fonts())
    assert good["fonts-test-on-manifold"] == claims.REPRODUCED
    assert good["fonts-regular-off"] == claims.REPRODUCED
    assert good["fonts-orthogonal"] == claims.REPRODUCED
    bad = by_key(fonts(test=2.0, reg=2.1, ratio=0.5))
    assert bad["fonts-test-on-manifold"] == claims.NOT_REPRODUCED
    assert bad["fonts-regular-off"] == claims.PARTLY
    assert bad["fonts-orthogonal"] == claims.NOT_REPRODUCED


def test_missing_chapter_is_not_run():
    verdicts = by_key(fonts())
    assert verdicts["pmnist-baseline-accuracy"] == claims.NOT_RUN
    assert verdicts["mnist-orthogonal"] == claims.NOT_RUN


def test_seed_spread_turns_a_small_effect_into_partly():
    record = {"alignment_cosine_median_robust": 0.30, "alignment_cosine_median_baseline": 0.28}
    single = claims.greater("03_pmnist", "alignment_cosine_median_robust", "alignment_cosine_median_baseline")
    assert single({"03_pmnist": record}).verdict == claims.REPRODUCED
    noisy = {**record, "n_seeds": 4, "alignment_cosine_median_robust_std": 0.05,
             "alignment_cosine_median_baseline_std": 0.05}
    assert single({"03_pmnist": noisy}).verdict == claims.PARTLY
    reversed_ = {**record, "alignment_cosine_median_robust": 0.2}
    assert single({"03_pmnist": reversed_}).verdict == claims.NOT_REPRODUCED


def test_ledger_has_one_row_per_claim():
    frame = claims.ledger(fonts())
    assert len(frame) == len(claims.CLAIMS) and len(set(frame["key"])) == len(frame)
    assert set(frame["verdict"]) <= {claims.REPRODUCED, claims.PARTLY, claims.NOT_REPRODUCED, claims.NOT_RUN}
