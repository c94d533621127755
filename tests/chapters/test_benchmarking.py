"""The benchmark helpers: timing bookkeeping, the original k-NN pipeline, targets, logs.

The benchmarks themselves (`make benchmarks`) are not part of the test run; these tests
check the pieces they are built from, on tiny inputs, without asserting any timing.
"""

import json
import sys

import pytest
import torch

from advmanifold.chapters import benchmarks as B
from advmanifold.chapters.benchmarks import report
from advmanifold.science import compute
from advmanifold.science.models import MLP
from advmanifold.science.manifolds.knn import knn_projection


def test_interleaved_rotates_order_and_skips_warmup():
    calls = []
    times = B.interleaved(
        {
            "a": lambda: calls.append("a"),
            "b": lambda: calls.append("b"),
            "c": lambda: calls.append("c"),
        },
        repeats=3,
        warmup=1,
    )
    assert calls == ["a", "b", "c", "b", "c", "a", "c", "a", "b", "a", "b", "c"]
    assert {k: len(v) for k, v in times.items()} == {"a": 3, "b": 3, "c": 3}
    assert all(t >= 0 for v in times.values() for t in v)
    with pytest.raises(ValueError, match="repeats"):
        B.interleaved({"a": lambda: None}, repeats=0)
    with pytest.raises(ValueError, match="warmup"):
        B.interleaved({"a": lambda: None}, repeats=1, warmup=-1)


def test_summary_and_per_round_ratios():
    assert B.summary([3.0, 1.0, 2.0], "x") == {"x": 2.0, "x_min": 1.0, "x_max": 3.0}
    assert B.ratios([4.0, 9.0], [2.0, 3.0]) == [2.0, 3.0]


def test_mlp_flops_counts_forward_and_input_backward():
    forward = 2 * (784 * 1568 + 1568 * 1568 + 1568 * 10)
    assert B.mlp_flops(backward=False) == forward
    assert B.mlp_flops() == 2 * forward
    assert B.mlp_flops((3, 4), backward=False) == 24


def test_fixed_threads_sets_and_restores():
    before = torch.get_num_threads()
    other = before + 1  # never the count in force, so a missing restore shows
    with compute.threads(other) as n:
        assert n == other and torch.get_num_threads() == other
    assert torch.get_num_threads() == before
    with pytest.raises(ValueError, match="threads"):
        with compute.threads(0):
            pass


def test_neighbour_overlap_is_the_fraction_of_exact_neighbours_found():
    exact = torch.tensor([[1, 2, 3, 4], [5, 6, 7, 8]])
    found = torch.tensor([[4, 3, 9, 1], [0, 10, 11, 12]])  # order does not matter
    assert B.neighbour_overlap(found, exact).tolist() == [0.75, 0.0]


def _cloud(n_train=300, n=12, d=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    train = torch.rand(n_train, 1, 4, 4, generator=g)
    reference = torch.rand(n, 1, 4, 4, generator=g)
    perturbed = reference + 0.1 * torch.randn(n, 1, 4, 4, generator=g)
    return perturbed, reference, train


def test_original_pipeline_with_all_components_matches_the_exact_projection():
    # with as many PCA components as dimensions the kd-tree search is exact, so the
    # original pipeline must return our neighbours and our distances
    perturbed, reference, train = _cloud()
    stages = {}
    idx, dist = B.knn_original(
        perturbed, reference, train, k=5, n_components=16, stages=stages
    )
    ours = knn_projection(perturbed, reference, train, k=5)
    assert B.neighbour_overlap(idx, ours.neighbours).min().item() == 1.0
    torch.testing.assert_close(dist, ours.distance.double(), atol=1e-5, rtol=1e-5)
    assert set(stages) == {"pca_fit", "kdtree_build", "kdtree_query", "qr_loop"}


def test_original_pipeline_with_few_components_misses_some_neighbours():
    perturbed, reference, train = _cloud(seed=1)
    idx, _ = B.knn_original(perturbed, reference, train, k=10, n_components=2)
    exact = knn_projection(perturbed, reference, train, k=10).neighbours
    assert B.neighbour_overlap(idx, exact).mean().item() < 1.0


def test_targets_compare_in_the_right_direction_and_skip_unmeasured():
    rows = {
        r["metric"]: r
        for r in B.targets(
            {"pgd_speedup_vs_torchattacks": 3.0, "alignment_step_over_plain": 2.6}
        )
    }
    assert rows["pgd_speedup_vs_torchattacks"]["met"] is True
    assert rows["alignment_step_over_plain"]["met"] is False
    assert "knn_speedup_vs_original" not in rows


def test_book_times_reads_the_runner_logs(tmp_path):
    log = {
        "profile": "smoke",
        "chapters_s": {"01_fonts": 30.0, "02_mnist": 60.0},
        "total_s": 90.0,
    }
    (tmp_path / "book_run_smoke.json").write_text(json.dumps(log))
    found = B.book_times(tmp_path)
    assert list(found) == ["smoke"]
    assert (
        found["smoke"]["total_s"] == 90.0
        and found["smoke"]["chapters_s"]["02_mnist"] == 60.0
    )


def test_partial_book_log_gives_no_whole_book_time(tmp_path, monkeypatch):
    monkeypatch.setenv("ADVMANIFOLD_RESULTS", str(tmp_path))
    monkeypatch.setattr(
        report, "book_chapters", lambda root=None: ["01_fonts", "02_mnist"]
    )
    log = {"profile": "quick", "chapters_s": {"01_fonts": 120.0}, "total_s": 120.0}
    (tmp_path / "book_run_quick.json").write_text(json.dumps(log))
    run = B.run_benchmarks({}, pieces=("book",))
    assert "book_quick_minutes" not in run["metrics"]
    assert run["metrics"]["book_quick_partial_minutes"] == 2.0
    assert any("lacks 1 of 2 chapters" in note for note in run["notes"])
    log["chapters_s"]["02_mnist"] = 60.0
    log["total_s"], log["units_s"] = 180.0, 540.0
    (tmp_path / "book_run_quick.json").write_text(json.dumps(log))
    run = B.run_benchmarks({}, pieces=("book",))
    assert run["metrics"]["book_quick_minutes"] == 12.0  # units_s + total_s
    assert [
        t["met"] for t in run["targets"] if t["metric"] == "book_quick_minutes"
    ] == [True]


def test_pgd_benchmark_without_reference_reports_our_attack(monkeypatch):
    torch.manual_seed(0)
    model = MLP()
    x, y = torch.rand(6, 1, 28, 28), torch.randint(0, 10, (6,))
    out = {}
    metrics, rows = B.pgd_benchmark(
        model, x, y, steps=2, repeats=1, warmup=0, reference=False, out=out
    )
    assert metrics["pgd_examples"] == 6 and 0 <= metrics["pgd_ours_success_rate"] <= 1
    assert (out["ours"].adversarial - x).abs().max() <= 0.1 + 1e-6
    assert {r["candidate"] for r in rows} == {"ours", "torch.mm"}
    assert "pgd_speedup_vs_torchattacks" not in metrics
    assert all(p.requires_grad for p in model.parameters())  # restored


def test_missing_torchattacks_is_reported_clearly(monkeypatch):
    monkeypatch.setitem(
        sys.modules, "torchattacks", None
    )  # makes `import torchattacks` fail
    with pytest.raises(B.MissingDependency, match="pip install --no-deps torchattacks"):
        B.require_torchattacks()


def test_run_benchmarks_rejects_unknown_settings_and_pieces():
    with pytest.raises(ValueError, match="pieces"):
        B.run_benchmarks({}, pieces=("nope",))
    with pytest.raises(ValueError, match="setting"):
        B.run_benchmarks({"pgd_exampels": 3})


def test_gemm_shapes_of_a_convolution_carry_its_flops():
    # forward, input gradient and weight gradient: three GEMMs of 2·m·k·n FLOPs each,
    # which together are what the FLOP counter counts
    conv = torch.nn.Conv2d(3, 8, 4, 2, 1)
    x = torch.rand(5, 3, 12, 12, requires_grad=True)

    def step():
        conv(x).sum().backward()

    shapes = B.gemm_shapes(step)
    assert shapes == {(1, 5 * 6 * 6, 48, 8), (1, 180, 8, 48), (1, 8, 180, 48)}
    assert sum(2 * b * m * k * n for b, m, k, n in shapes) == B.flops(step)


def test_every_fraction_of_peak_is_at_most_one_by_construction():
    # tiny square products (64, 128) make a weak peak; the workloads' own GEMMs and
    # their own rates belong to the peak set, so no fraction can exceed 1 and none is
    # capped: a rate measured elsewhere that beats the rest becomes the peak
    metrics, _ = B.convnet_rates(
        (1, 2),
        peak_sizes=(64, 128),
        repeats=1,
        pgd_steps=2,
        batch=20,
        extra_rates={1: {"elsewhere": 1e6}},  # 1 PFLOP/s: beats every GEMM
    )
    fractions = B.fractions_of_peak(metrics)
    assert len(fractions) == 7  # three steps at two thread counts, and "elsewhere"
    assert all(0 < v <= 1 for v in fractions.values()), fractions
    assert metrics["elsewhere_fraction_of_peak"] == 1.0
    assert metrics["peak_gflops_1t"] == 1e6 and metrics["peak_from_workload_1t"] == 1
    steps = ("attack_step", "train_step", "adv_train_step")
    rates = [metrics[f"{k}_gflops_2t"] for k in steps]
    assert metrics["peak_gflops_2t"] == max(
        metrics["peak_square_gflops_2t"], metrics["peak_shapes_gflops_2t"], *rates
    )
    assert {"load_1t", "load_2t"} <= set(metrics)
    assert metrics["adv_train_step_mflop"] > metrics["train_step_mflop"]
    found = B.fractions_of_peak({"a_fraction_of_peak": 1, "b_fraction_of_peak_16t": 2})
    assert found == {"a_fraction_of_peak": 1, "b_fraction_of_peak_16t": 2}
    assert B.fractions_of_peak({"fraction_of_peak_x": 3, "peak_gflops_1t": 9}) == {}


def test_levers_are_measured_one_by_one_against_the_plain_network():
    metrics, rows = B.attack_levers(repeats=1, batches=(100,))
    names = [r["candidate"] for r in rows]
    expected = set(B.lever_names((100,))) - {
        "torch.compile of the attack view",  # compile_s None
        "1 process × 2 threads",  # parallel_s None
        "1 process × 2 threads, passive wait",
        "2 processes × 1 thread",
    }
    if compute.cores() < 2:  # no two-thread levers on one core
        expected = {n for n in expected if "2 thread" not in n}
    assert set(names) == expected
    assert names[0] == "plain" and rows[0]["speedup"] == 1.0
    assert all(r["reason"] for r in rows)
    assert {r["kept"] for r in rows} <= {"", "yes", "no"}
    assert metrics.pop("lever_notes") == []


def test_processes_vs_threads_starts_only_the_processes_it_lacks(monkeypatch):
    from advmanifold.chapters.benchmarks import levers

    started = []

    class Done:
        def __init__(self, rate):
            self.rate = rate

        def communicate(self):
            return json.dumps({"steps_per_s": self.rate}), None

    def start(program, args, env=None):
        started.append((args["threads"], (env or {}).get("OMP_WAIT_POLICY")))
        return Done(10.0 * args["threads"])

    monkeypatch.setattr(levers, "start_fresh", start)
    found = levers.processes_vs_threads(0.1, {"default": 4.0, "passive": 5.0})
    assert started == [(1, None), (1, None)]  # the pair only
    assert found["processes_over_threads"] == 20.0 / 4.0
    assert found["processes_over_threads_passive"] == 20.0 / 5.0
    started.clear()
    found = levers.processes_vs_threads(0.1, {"default": 4.0})
    assert started == [(2, "PASSIVE"), (1, None), (1, None)]
    assert found["attack_steps_per_s_1proc_2threads_passive"] == 20.0


@pytest.mark.skipif(compute.cores() < 2, reason="fresh processes at every core")
def test_unit_processes_measure_one_process_attack_rate_first():
    metrics, rows = B.unit_time(
        epochs=1, n=100, bundled_fonts=True, budget_s=0.2, train_steps=1, attack_s=0.1
    )
    rates = metrics.pop("one_process_attack_rates")
    assert set(rates) == {"default", "passive"}
    assert all(rate > 0 for rate in rates.values())
    assert len(rows) == 4 and metrics["unit_before_s"] > 0


def test_denormal_comparison_runs_the_settings_one_after_the_other():
    # in one process, in the order that only adds flags (given here the other way)
    metrics, rows = B.denormal_comparison(
        steps=20, window=10, sizes=(784, 256, 10), settings=("every thread", "no flush")
    )
    assert [r["candidate"] for r in rows] == ["no flush"] * 2 + ["every thread"] * 2
    assert {r["candidate"] for r in rows} == {"no flush", "every thread"}
    assert [r["step"] for r in rows] == [10, 20, 10, 20]
    assert metrics["denormal_every_thread_all_threads_flush"] == 1
    assert metrics["denormal_no_flush_all_threads_flush"] == 0
    assert metrics["denormal_every_thread_max_count"] == 0
    assert metrics["denormal_no_flush_max_count"] > 0  # so the check can fail
    with pytest.raises(ValueError, match="settings"):
        B.denormal_comparison(steps=2, window=1, settings=("no flush", "sometimes"))


def test_appendix_settings_per_profile():
    assert set(B.PROFILE_SETTINGS) == {"smoke", "quick", "paper"}
    for profile, table in B.PROFILE_SETTINGS.items():
        assert set(table) - {"threads"} <= set(B.FULL), profile
    s = B.settings("smoke", repeats=2)
    assert s.pgd_repeats == s.knn_repeats == s.step_repeats == 2
    assert B.settings("paper").convnet_unit_epochs == 20  # the whole unit
    assert B.settings("quick").convnet_unit_epochs == 1  # one epoch of it
    with pytest.raises(ValueError, match="repeats"):
        B.settings("smoke", repeats=0)
    with pytest.raises(ValueError, match="profile"):
        B.settings("huge")


def test_units_are_the_cache_entries_the_appendix_reads(tmp_path, monkeypatch):
    from advmanifold.book import cache

    monkeypatch.setenv("ADVMANIFOLD_CACHE", str(tmp_path))
    params = {"profile": "smoke", "seed": 0, "threads": None, "repeats": None}
    listed = B.units("smoke", params)
    assert {u.name for u in listed} == {"benchmark-mlp", "fonts-prototypes"}
    assert all(u.chapter == "90_benchmarks" and u.estimate_s > 0 for u in listed)
    mlp = next(u for u in listed if u.name == "benchmark-mlp")
    assert mlp.config["epochs"] == 1 and not mlp.is_cached()
    # the decoder the pieces load reads exactly the listed prototypes entry
    decoder, source = B.decoder_and_source(3, bundled_only=True)
    assert source == "matplotlib" and decoder.n_fonts <= 3
    fonts_unit = next(u for u in listed if u.name == "fonts-prototypes")
    assert fonts_unit.is_cached()
    assert cache.exists(fonts_unit.name, fonts_unit.config)


def test_the_harness_loops_count_what_they_say():
    from advmanifold.chapters.benchmarks import harness

    calls = []
    seconds = harness.per_call_times(lambda: calls.append(1), 3, inner=4)
    assert len(seconds) == 3 and len(calls) == 1 + 3 * 4  # one warm-up call
    calls.clear()
    seconds = harness.per_call_times(lambda: calls.append(1), 3, inner=4, warmup=False)
    assert len(seconds) == 3 and len(calls) == 3 * 4  # no warm-up call
    with pytest.raises(ValueError, match="inner"):
        harness.per_call_times(lambda: None, 3, warmup=False)
    calls.clear()
    harness.median_time(lambda: calls.append(1), 2, warmup=False)
    assert len(calls) == 2
    calls.clear()
    rows = harness.windowed_rates(
        lambda: calls.append(1), 6, 2, lambda: {"seen": len(calls)}
    )
    assert [(r["step"], r["seen"]) for r in rows] == [(2, 2), (4, 4), (6, 6)]
    assert all(r["steps_per_s"] > 0 for r in rows)
    assert harness.steps_per_second(lambda: None, 0.01) > 0


def test_a_fresh_process_imports_no_other_chapter():
    # its import is paid once per fresh process: the package imports no chapter
    import subprocess

    probe = ["matplotlib", "seaborn", "scipy", "advmanifold.chapters.fonts"]
    code = (
        "import sys, json, advmanifold.chapters.benchmarks.fresh; "
        f"print(json.dumps([m for m in {probe!r} if m in sys.modules]))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert json.loads(done.stdout) == []
    # so the check can fail: CHAPTERS loads every chapter
    every = code.replace("; print", "; advmanifold.chapters.CHAPTERS; print")
    done = subprocess.run(
        [sys.executable, "-c", every], capture_output=True, text=True, check=True
    )
    assert set(json.loads(done.stdout)) == set(probe)


def test_fresh_programs_run_by_name_and_refuse_others(capsys):
    from advmanifold.chapters.benchmarks import fresh

    assert set(fresh.PROGRAMS) == {"compile", "attack_rate", "unit", "denormals"}
    with pytest.raises(SystemExit, match="unknown program"):
        fresh.main(["nope", "{}"])
    with pytest.raises(ValueError, match="order"):  # a flag cannot be cleared
        fresh.main(["denormals", '{"settings": ["every thread", "no flush"], '
                    '"steps": 2, "window": 1, "sizes": [4, 3, 2], "scale": 1e-37}'])
    args = '{"settings": ["no flush"], "steps": 2, "window": 1, '
    args += '"sizes": [4, 3, 2], "scale": 1e-37}'
    before = torch.get_num_threads()
    try:  # here, in this process: the program sets two threads
        assert fresh.main(["denormals", args]) == 0
    finally:
        torch.set_num_threads(before)
    found = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert [r["step"] for r in found["runs"][0]["rows"]] == [1, 2]


def test_machine_metrics_come_from_the_book_wings_machine():
    from advmanifold.book.results import machine

    found = B.machine_metrics()
    assert found["cpu_model"] == machine()["cpu"]
    assert found["cores_available"] == compute.cores()
    assert found["threads"] == torch.get_num_threads()
    assert {"torch_version", "numpy_version", "python_version", "platform"} <= set(
        found
    )


def test_bfloat16_view_is_the_attack_view_at_lower_precision():
    from advmanifold.chapters.benchmarks import ceiling, workloads
    from advmanifold.science import models

    net = workloads.trained_like_convnet()
    x, _ = workloads.random_batch(8)
    with models.frozen(net):
        view = models.attack_view(net)
        half = ceiling._BFloat16View(view)
        assert all(b.dtype == torch.bfloat16 for b in half.buffers())
        full, low = view(x), half(x)
    assert low.dtype == torch.float32
    assert not torch.equal(full, low)  # a different arithmetic ...
    scale = full.abs().max()
    assert (full - low).abs().max() < 0.05 * scale  # ... of the same function


def test_attack_ceiling_times_the_attack_both_ways_and_its_floor():
    from advmanifold.chapters.benchmarks import ceiling

    m = ceiling.attack_ceiling(repeats=1, n=4, steps=2)
    off, on, floor = (
        m[f"ceiling_{k}_ms"] for k in ("attack_off", "attack_on", "classifier")
    )
    assert min(off, on, floor) > 0
    assert m["ceiling_speedup"] == pytest.approx(off / floor)
    assert m["ceiling_attack_speedup"] == pytest.approx(off / on)
    assert m["ceiling_overhead_ms"] == pytest.approx(on - floor)
    assert 0 <= m["ceiling_same_theta_share"] <= 1
    assert m["ceiling_loss_off"] > 0 and m["ceiling_loss_on"] > 0
