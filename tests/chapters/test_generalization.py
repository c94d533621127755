"""Generalization chapter: tangent projector, alignment loss, on-manifold training
examples, data streams, determinism, units and claims."""

import math

import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from advmanifold.book import ledger, record
from advmanifold.book.results import Results
from advmanifold.science import attacks, decoders, glyphs, models
from advmanifold.chapters import claims, generalization as G
from advmanifold.chapters import generalization_results as GR
from advmanifold.science.tangent import TangentSpace, jacobian


def _decoder(n_fonts=3, seed=0, dtype=torch.float32):
    """A decoder on smooth random prototypes (blurred noise blobs in the centre)."""
    g = torch.Generator().manual_seed(seed)
    raw = torch.rand(n_fonts, 10, 28, 28, generator=g)
    raw[..., :5, :] = raw[..., -5:, :] = 0
    raw[..., :5] = raw[..., -5:] = 0
    protos = glyphs.blur(raw, sigma=1.2)
    protos = (protos / protos.amax((-1, -2), keepdim=True)).to(dtype)
    return decoders.FontDecoder(protos).to(dtype)


def _codes(n, n_fonts=3, seed=1, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    font = torch.randint(n_fonts, (n,), generator=g)
    letter = torch.randint(10, (n,), generator=g)
    # stay away from the range limits so that central differences stay inside
    theta = decoders.sample_theta(n, "easy", g).to(dtype)
    return font, letter, theta


def test_tangent_projector_is_an_orthogonal_projector():
    dec = _decoder()
    font, letter, theta = _codes(16)
    space = TangentSpace.of(dec, font, letter, theta)
    v = torch.randn(16, 784, generator=torch.Generator().manual_seed(2))
    pv = space.project_vectors(v)
    assert torch.allclose(space.project_vectors(pv), pv, atol=1e-5)  # P² = P
    assert (((v - pv) * pv).sum(1).abs() < 1e-4 * v.norm(dim=1) ** 2).all()  # ⟂
    w = torch.randn_like(v)
    # symmetric: <P v, w> = <v, P w>
    lhs, rhs = (pv * w).sum(1), (v * space.project_vectors(w)).sum(1)
    assert torch.allclose(lhs, rhs, atol=1e-4)
    assert space.basis.shape == (16, 784, 6)


def test_jacobian_matches_central_differences():
    dec = _decoder(dtype=torch.float64)
    font, letter, theta = _codes(8, dtype=torch.float64)
    exact = jacobian(dec, font, letter, theta)
    numeric = dec.tangents(font, letter, theta, h=1e-6)
    rel = (exact - numeric).norm(dim=1) / numeric.norm(dim=1)
    # the warp is piecewise linear in θ: a central difference that straddles a kink
    # (a grid point crossing a pixel line) averages two slopes, the rest agree exactly
    assert (rel < 1e-6).float().mean() > 0.9
    assert rel.max() < 0.05


def test_range_contains_the_change_of_the_image_under_a_small_step_in_theta():
    dec = _decoder(dtype=torch.float64)
    font, letter, theta = _codes(32, dtype=torch.float64)
    space = TangentSpace.of(dec, font, letter, theta)
    g = torch.Generator().manual_seed(3)
    step = 1e-6 * torch.randn(32, 6, generator=g, dtype=torch.float64)
    with torch.no_grad():
        change = (dec(font, letter, theta + step) - dec(font, letter, theta)).flatten(1)
    residual = change - space.project_vectors(change)
    rel = residual.norm(dim=1) / change.norm(dim=1)
    # first order in the step (second-order terms ~ 1e-6 here), up to the rare step
    # that moves a grid point across a pixel line (a kink of the bilinear warp)
    assert (rel < 1e-4).float().mean() > 0.9
    assert rel.max() < 0.1
    # a random direction of the same size is far from the range
    noise = torch.randn_like(change)
    off = noise - space.project_vectors(noise)
    assert (off.norm(dim=1) > 0.9 * noise.norm(dim=1)).all()


def _split(n=12, n_fonts=3):
    dec = _decoder(n_fonts)
    font, letter, theta = _codes(n, n_fonts)
    with torch.no_grad():
        x = dec(font, letter, theta)
    return dec, G.Split(font, letter, theta, x)


def _settings(**kw):
    s = G.settings("smoke")
    for k, v in kw.items():
        setattr(s, k, v)
    return s


def test_alignment_loss_equals_its_definition():
    dec, data = _split()
    torch.manual_seed(0)
    model = models.ConvNet().eval()  # eval: batch norm does not couple examples
    alpha = 0.7
    idx = torch.arange(len(data))
    loss = G.objective("Aligned", data, dec, _settings(alpha=alpha))(model, idx, data.y)
    # the definition, example by example, P = J (JᵀJ)⁻¹ Jᵀ by least squares (no QR):
    # CE + α · mean rejection share (‖g − P g‖² + ε)/(‖g‖² + ε), ε negligible here
    ces, shares = [], []
    for i in range(len(data)):
        x = data.x[i : i + 1].clone().requires_grad_(True)
        ce = F.cross_entropy(model(x), data.y[i : i + 1])
        (g,) = torch.autograd.grad(ce, x)
        jac = jacobian(
            dec, data.font[i : i + 1], data.letter[i : i + 1], data.theta[i : i + 1]
        )[0].double()  # checked in its own test
        g = g.flatten().double()
        coef = torch.linalg.lstsq(jac, g.unsqueeze(1)).solution
        pg = (jac @ coef).squeeze(1)
        ces.append(ce.item())
        shares.append(((g - pg).norm() ** 2 / g.norm() ** 2).item())
    assert all(0 <= s <= 1 for s in shares)
    expected = sum(ces) / len(ces) + alpha * sum(shares) / len(shares)
    assert loss.item() == pytest.approx(expected, rel=2e-3)


def test_onmanifold_training_examples_stay_in_ball_and_ranges():
    dec, data = _split(20)
    torch.manual_seed(0)
    model = models.ConvNet()
    theta = decoders.sample_theta(20, "hard", torch.Generator().manual_seed(4))
    eps = 0.3
    adv = attacks.onmanifold_examples(
        model, dec, data.font, data.letter, theta, eps=eps, steps=5, seed=0
    )
    lower, upper = decoders.theta_box("hard")
    assert ((adv - theta).abs() <= eps + 1e-6).all()
    assert ((adv >= lower - 1e-6) & (adv <= upper + 1e-6)).all()
    assert (adv - theta).abs().amax() > 0.05  # it moved
    rnd = G.random_theta(theta, eps=eps, generator=torch.Generator().manual_seed(5))
    assert ((rnd - theta).abs() <= eps + 1e-6).all()
    assert ((rnd >= lower - 1e-6) & (rnd <= upper + 1e-6)).all()


def test_training_examples_leave_the_weights_untouched():
    dec, data = _split(10)
    torch.manual_seed(0)
    model = models.ConvNet().train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    attacks.onmanifold_examples(
        model, dec, data.font, data.letter, data.theta, eps=0.3, steps=3, seed=0
    )
    assert model.training
    assert all(p.requires_grad for p in model.parameters())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_codes_are_nested_and_test_stream_differs():
    a = G.draw_codes(2500, 7, stream="train", seed=3)
    b = G.draw_codes(900, 7, stream="train", seed=3)
    assert all(torch.equal(x[:900], y) for x, y in zip(a, b))
    c = G.draw_codes(900, 7, stream="test", seed=3)
    assert not torch.equal(b[2], c[2])
    lower, upper = decoders.theta_box("hard")
    assert ((a[2] >= lower) & (a[2] <= upper)).all() and a[0].max() < 7


@pytest.mark.parametrize("method", G.METHODS)
def test_training_is_deterministic(method):
    dec, data = _split(40)
    s = _settings(epochs=1, batch_size=20, train_steps=2)
    m1 = G.train_model(method, data, dec, s, seed=3, progress=False)
    m2 = G.train_model(method, data, dec, s, seed=3, progress=False)
    for k, v in m1.state_dict().items():
        assert torch.equal(v, m2.state_dict()[k]), k


def test_evaluate_measures_are_in_range():
    dec, data = _split(30)
    s = _settings(
        n_test=30, n_attack=10, n_align=10, attack_steps=3, attempts=2,
        original_steps=3, adam_lr=0.005, n_original_on=10, n_original_off=8,
    )
    model = G.train_model(
        "Normal", data, dec, _settings(epochs=1, batch_size=10), 0, progress=False
    )
    out = G.evaluate(model, dec, data, s) | G.evaluate_original(model, dec, data, s)
    assert set(out) == set(G.MEASURES)
    for key in set(G.MEASURES) - {"alignment_ratio"}:
        assert 0.0 <= out[key] <= 1.0, key
    assert out["alignment_ratio"] >= 1.0
    # robust accuracy counts the attacked images correct and not fooled: never above
    # their clean accuracy (the attacked images are the first n_attack)
    clean = (models.predict(model, data.x[:10]) == data.y[:10]).float().mean().item()
    assert out["pgd_accuracy"] <= clean + 1e-6
    assert out["fgsm_accuracy"] <= clean + 1e-6


def test_original_protocol_is_deterministic():
    dec, data = _split(30)
    s = _settings(
        n_test=30, n_attack=20, n_align=10, attack_steps=10, restarts=3, attempts=3,
        original_steps=10, adam_lr=0.005, n_original_on=20, n_original_off=20,
    )
    model = G.train_model(
        "Normal", data, dec, _settings(epochs=1, batch_size=10), 0, progress=False
    )
    a = G.evaluate_original(model, dec, data, s, seed=4)
    assert a == G.evaluate_original(model, dec, data, s, seed=4)


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="sizes"):
        G.settings("quick", sizes=())
    with pytest.raises(ValueError, match="n_seeds"):
        G.settings("quick", n_seeds=0)
    with pytest.raises(ValueError, match="profile"):
        G.settings("huge")
    dec, data = _split()
    with pytest.raises(ValueError, match="method"):
        G.objective("Bogus", data, dec, _settings())


def test_units_of_smoke_profile(tmp_path, monkeypatch):
    monkeypatch.setenv("ADVMANIFOLD_CACHE", str(tmp_path))
    s = G.settings("smoke")
    listed = G.units("smoke", {"seed": 0})
    n_models = len(G.METHODS) * len(s.sizes) * s.n_seeds
    assert len(listed) == 1 + 3 * n_models
    assert len({u.key for u in listed}) == len(listed)
    assert listed[0].name == "fonts-prototypes"
    assert all(u.estimate_s > 0 for u in listed)
    evals = [u for u in listed if u.name == "gen-eval"]
    assert all(e.deps[0].name == "gen-cnn" for e in evals)
    assert not any(u.is_cached() for u in listed)


def test_prototypes_unit_is_the_fonts_chapter_entry():
    from advmanifold.chapters import fonts

    ours, theirs = G.prototypes_unit(), fonts.prototypes_unit()
    assert ours.key == theirs.key and ours.build.func is theirs.build.func


def _results(**values):
    base = {"n_small": 250, "n_large": 1000, "n_seeds": 2}
    return {G.STEM: {**base, **values}}


def test_claims_judge_synthetic_results():
    by_key = {c.key: c for c in claims.of_chapter(G.STEM)}
    good = _results(
        test_error_Normal_n250=0.5,
        test_error_Normal_n250_std=0.01,
        test_error_OnAdvTrain_n250=0.3,
        test_error_OnAdvTrain_n250_std=0.01,
    )
    assert by_key["onadv-generalizes"].verdict(good).verdict == ledger.REPRODUCED
    bad = _results(
        test_error_Normal_n250=0.3,
        test_error_Normal_n250_std=0.01,
        test_error_OnAdvTrain_n250=0.5,
        test_error_OnAdvTrain_n250_std=0.01,
    )
    assert by_key["onadv-generalizes"].verdict(bad).verdict == ledger.NOT_REPRODUCED
    never = _results(
        **{
            f"test_error_{m}_n{n}{sfx}": v
            for n in (250, 1000)
            for m, v in (("Normal", 0.3), ("OffAdvTrain", 0.35))
            for sfx, v in (("", v), ("_std", 0.01))
        }
    )
    assert (
        by_key["offadv-no-generalization"].verdict(never).verdict == ledger.REPRODUCED
    )
    never[G.STEM]["test_error_OffAdvTrain_n1000"] = 0.1
    assert (
        by_key["offadv-no-generalization"].verdict(never).verdict
        == ledger.NOT_REPRODUCED
    )
    rho = _results(
        rank_corr_onmanifold_success_vs_test_error=0.8,
        rank_corr_onmanifold_success_vs_test_error_std=0.05,
    )
    assert (
        by_key["onmanifold-is-generalization"].verdict(rho).verdict == ledger.REPRODUCED
    )
    assert by_key["curved-alignment-fgsm"].verdict(rho).verdict == ledger.NOT_RUN
    regular = by_key["robustness-not-generalization"]  # no positive ρ: ρ ≤ 0.3
    for value, std, verdict in (
        (0.2, 0.05, ledger.REPRODUCED),
        (0.4, 0.2, ledger.PARTLY),  # ρ − 2·SE = 0.4 − 2·0.2/√2 ≤ 0.3
        (0.4, 0.01, ledger.NOT_REPRODUCED),
    ):
        found = _results(
            rank_corr_regular_success_vs_test_error=value,
            rank_corr_regular_success_vs_test_error_std=std,
        )
        assert regular.verdict(found).verdict == verdict


def test_rank_correlation_and_summary():
    import pandas as pd

    assert GR.rank_correlation([1, 2, 3, 4], [10, 20, 30, 45]) == pytest.approx(1.0)
    assert GR.rank_correlation([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    # ties take average ranks: ranks (1, 2.5, 2.5, 4) against (1, 2, 3, 4)
    assert GR.rank_correlation([1, 2, 2, 3], [1, 2, 3, 4]) == pytest.approx(
        4.5 / math.sqrt(4.5 * 5)
    )
    assert math.isnan(GR.rank_correlation([1, 1, 1], [1, 2, 3]))
    rows = [
        {"method": m, "n": n, "seed": sd, **{k: float(n + sd) for k in G.MEASURES}}
        for m in G.METHODS[:2]
        for n in (10, 20)
        for sd in (0, 1)
    ]
    table = GR.summary(pd.DataFrame(rows))
    assert len(table) == 4
    row = table[(table.method == "Normal") & (table.n == 20)].iloc[0]
    assert row.test_error == pytest.approx(20.5)
    assert row.test_error_std == pytest.approx(math.sqrt(0.5))


def test_coverage_extent_is_the_largest_complete_n_and_its_fewest_seeds():
    rows = [("Normal", n, sd, f"{n}{sd}") for n in (10, 20, 40) for sd in (0, 1, 2)]
    rows += [("OffAdvTrain", n, sd, f"o{n}{sd}") for n in (10, 20) for sd in (0, 1)]
    frame = _models_frame(rows)
    assert GR.complete_sizes(frame) == [10, 20]
    assert GR.coverage_extent(frame) == (20, 2)  # N = 40 has one method only
    third = _models_frame(rows + [("OffAdvTrain", 10, 2, "o102")])
    assert GR.coverage_extent(third) == (20, 2)  # N = 20 still has two seeds
    _, _, std, count = GR.correlations(frame, "test_error", "onmanifold_success")
    assert count == 0 and std == 0.0  # constant columns: no finite per-seed ρ
    res = Results(G.STEM, profile="paper", seed=0)
    for m in G.MEASURES:  # measures that vary, so that every ρ is defined
        frame[m] = frame.n * (1 + G.MEASURES.index(m)) + frame.seed
    GR.add_results(res, frame)  # every cell and extent says how many seeds made it
    assert res.metrics["test_error_Normal_n40_n"] == 3
    assert res.metrics["test_error_OffAdvTrain_n20_n"] == 2
    assert (res.metrics["n_large_original"], res.metrics["n_seeds_original"]) == (20, 2)


def test_models_near_chance_are_counted_per_method():
    rows = [("Normal", 250, sd, f"n{sd}") for sd in range(3)]
    rows += [("AlignedAdv", 250, sd, f"a{sd}") for sd in range(3)]
    frame = _models_frame(rows)
    for m in G.MEASURES:  # measures that vary, so that every ρ is defined
        frame[m] = [0.1, 0.5, 0.3, 0.7, 0.2, 0.6]
    frame["test_error"] = [0.2, 0.3, 0.849, 0.9, 0.85, 0.4]
    res = Results(G.STEM, profile="paper", seed=0)
    GR.add_results(res, frame)
    assert res.metrics["n_models_Normal"] == res.metrics["n_models_AlignedAdv"] == 3
    assert res.metrics["n_at_chance_Normal"] == 0  # 0.849 is below the threshold
    assert res.metrics["n_at_chance_AlignedAdv"] == 2
    assert res.metrics["chance_error"] == G.CHANCE_ERROR  # the prose's threshold
    learned = frame[frame.test_error < G.CHANCE_ERROR]  # the four models that learned
    rho = GR.rank_correlation(learned.onmanifold_success, learned.test_error)
    key = "rank_corr_onmanifold_success_vs_test_error"
    assert res.metrics[f"{key}_learned"] == pytest.approx(rho)
    assert res.metrics[f"{key}_learned"] != pytest.approx(res.metrics[key])
    frame["test_error"] = [0.86, 0.87, 0.88, 0.9, 0.91, 0.92]  # every model at chance
    res = Results(G.STEM, profile="paper", seed=0)
    GR.add_results(res, frame)
    assert f"{key}_learned" not in res.metrics and key in res.metrics


def test_flat_models_are_counted_and_left_out_of_the_alignment_mean():
    rows = [("AlignedAdv", 250, sd, f"a{sd}") for sd in range(3)]
    rows += [("AlignedAdv", 500, sd, f"b{sd}") for sd in range(2)]
    rows += [("Normal", n, 0, f"n{n}") for n in (250, 500)]
    frame = _models_frame(rows)
    for m in G.MEASURES:  # measures that vary, so that every ρ is defined
        frame[m] = [0.1, 0.5, 0.3, 0.7, 0.2, 0.4, 0.6]
    nan = float("nan")
    frame["alignment_cosine"] = [0.2, nan, 0.4, nan, nan, 0.5, 0.6]
    res = Results(G.STEM, profile="paper", seed=0)
    GR.add_results(res, frame)  # a zero input gradient leaves the cosine undefined
    assert res.metrics["n_flat_AlignedAdv"] == 3
    assert res.metrics["alignment_cosine_AlignedAdv_n250"] == pytest.approx(0.3)
    assert res.metrics["alignment_cosine_AlignedAdv_n250_n"] == 2
    assert res.metrics["test_error_AlignedAdv_n250_n"] == 3
    assert "alignment_cosine_AlignedAdv_n500" not in res.metrics  # all flat


def test_anchor_leaves_out_and_counts_models_near_chance():
    n = 2500
    readme = G.ANCHOR["OffAdvTrain"][n]
    rows = [("OffAdvTrain", n, sd, f"o{sd}") for sd in range(3)]
    frame = _models_frame(rows)
    frame["test_error"] = [0.40, 0.45, 0.90]  # the third model collapsed
    frame["onmanifold_success_original"] = [readme + 0.20, readme + 0.22, 0.0]
    row = GR.anchor_table(frame).set_index(["method", "N"]).loc[("OffAdvTrain", n)]
    assert row["seeds"] == 2 and row["at chance, left out"] == 1
    assert row["difference (original protocol)"] == "+0.21"
    assert row["within tolerance"] == "no"  # with it, the spread would have passed it
    spread = frame.onmanifold_success_original.std()
    assert GR.anchor_agrees(
        frame.onmanifold_success_original.mean(), spread, 3, readme
    )


def _models_frame(rows):
    frame = pd.DataFrame(rows, columns=["method", "n", "seed", "eval_key"])
    for m in G.MEASURES:
        frame[m] = 0.5
    frame["train_key"] = "gen-cnn-" + frame["eval_key"]
    return frame


def test_a_second_recording_run_adds_its_new_row_and_changes_no_other(tmp_path):
    first = _models_frame([("Normal", 250, 0, "a"), ("OnAdvTrain", 250, 0, "b")])
    recorded = record.grow_record(G.read_record(tmp_path / "none.csv"), first, {
        "commit": "1e53000", "finished": "2026-12-05", "machine": "here"})
    path = tmp_path / "models.csv"
    recorded.to_csv(path, index=False)
    before = G.read_record(path)
    assert before.commit.tolist() == ["1e53000", "1e53000"]  # a hash, not a float
    # the next run finds the two recorded units again and builds one more
    second = _models_frame(
        [("Normal", 250, 0, "a"), ("OnAdvTrain", 250, 0, "b"), ("Normal", 500, 0, "c")]
    )
    second.loc[0, "test_error"] = 0.1  # even a differing re-evaluation changes nothing
    grown = record.grow_record(before, second, {
        "commit": "abc1234", "finished": "2026-12-06", "machine": "there"})
    assert len(grown) == 3
    pd.testing.assert_frame_equal(grown.iloc[:2], before)
    assert grown.iloc[2][["method", "n", "eval_key", "commit"]].tolist() == [
        "Normal", 500, "c", "abc1234"]


def test_build_order_puts_seeds_then_sizes_first_and_evaluations_after_trainings():
    from advmanifold.book.fanout import build_order
    from advmanifold.chapters import registry

    s = G.settings("smoke", sizes=(100, 200), n_seeds=2)
    rows = G.grid(s)
    units = [r["eval"] for r in rows]  # trainings and prototypes come as dependencies
    order = build_order(reversed(units), registry().priority)
    assert order[0].name == "fonts-prototypes"
    position = {u.key: i for i, u in enumerate(order)}
    for r in rows:
        assert position[r["train"].key] < position[r["eval"].key]
    ranks = [G.priority(u) for u in order[1:]]
    assert ranks == sorted(ranks)
    assert [G.priority(u)[:3] for u in order[1:3]] == [(False, 0, 100)] * 2
    aligned = [i for i, u in enumerate(order[1:]) if G.priority(u)[0]]
    assert min(aligned) > max(set(range(len(order) - 1)) - set(aligned))


def test_original_order_is_font_major_letter_minor_and_tiled():
    font, letter, theta = G.original_codes(45, 2, stream="train")
    assert font.tolist() == [0] * 10 + [1] * 10 + [0] * 10 + [1] * 10 + [0] * 5
    assert letter.tolist() == list(range(10)) * 4 + list(range(5))
    # nested in N, and the same data set for every model seed
    assert torch.equal(G.original_codes(20, 2, stream="train")[2], theta[:20])
    dec = _decoder(n_fonts=2)
    a = G.train_split(dec, 30, seed=0, order="original")
    b = G.train_split(dec, 30, seed=5, order="original")
    assert torch.equal(a.x, b.x)
    with pytest.raises(ValueError, match="order"):
        G.train_split(dec, 30, seed=0, order="shuffled")
    with pytest.raises(ValueError, match="order"):
        G.settings("smoke", order="shuffled")


def test_stn_examples_warp_the_image_near_the_identity():
    dec, data = _split(20)
    model = models.ConvNet().eval()
    x, y = data.x[:8], data.y[:8]
    # at the identity the second warp returns the image (align_corners=True)
    same = decoders.warp(x, decoders.IDENTITY.expand(8, 6))
    assert torch.allclose(same, x, atol=1e-5)
    tilde = attacks.stn_examples(model, x, y, eps=0.3, steps=3, seed=0)
    assert tilde.shape == x.shape and tilde.min() >= 0 and tilde.max() <= 1
    assert not torch.allclose(tilde, x)
    with torch.no_grad():  # the attack raises the loss
        before = F.cross_entropy(model(x), y)
        after = F.cross_entropy(model(tilde), y)
    assert after >= before
