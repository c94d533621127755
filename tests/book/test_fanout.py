"""Units and their fan-out on Dask: same cache entries anywhere, failures reported."""

import functools
import json
import math
import sys
from types import SimpleNamespace

import pytest
import torch

from advmanifold import chapters
from advmanifold.book import cache, fanout, units

pytest.importorskip("dask.distributed")


def make_weights(seed: int, size: int) -> dict:
    """A tiny deterministic 'training': the payload depends only on the
    configuration."""
    generator = torch.Generator().manual_seed(seed)
    w = torch.randn(size, size, generator=generator)
    for _ in range(20):
        w = torch.tanh(w @ w.T / size)
    return {"w": w}


def sum_of(dependency: units.Unit) -> dict:
    return {"total": dependency.get()["w"].sum()}


def explode(seed: int) -> dict:
    raise RuntimeError(f"diverged at seed {seed}")


def unit(seed: int, size: int = 64) -> units.Unit:
    return units.Unit(
        "99_test",
        "test-weights",
        {"seed": seed, "size": size},
        functools.partial(make_weights, seed, size),
        estimate_s=0.1,
    )


@pytest.fixture
def fresh_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ADVMANIFOLD_CACHE", str(tmp_path / "cache"))
    # the build functions live in this test module, which workers cannot import
    import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    yield tmp_path / "cache"
    cloudpickle.unregister_pickle_by_value(sys.modules[__name__])


def payload_hash(u: units.Unit, directory) -> str:
    meta = json.loads((directory / f"{u.key}.json").read_text())
    return meta["sha256"]


def test_unit_key_is_name_and_config_hash():
    a, b = unit(0), unit(0)
    assert a.key == b.key == f"test-weights-{cache.config_key({'seed': 0, 'size': 64})}"
    assert unit(1).key != a.key


def test_unique_orders_dependencies_first_and_drops_repeats():
    base = unit(0)
    top = units.Unit(
        "99_test",
        "test-sum",
        {"of": base.key},
        functools.partial(sum_of, base),
        deps=(base,),
    )
    assert [u.key for u in units.unique([top, base, top])] == [base.key, top.key]


def test_cache_counts_hits_and_misses_and_records_build_time(fresh_cache):
    cache.reset_stats()
    u = unit(3)
    assert not u.is_cached()
    first = u.get()
    second = u.get()
    assert torch.equal(first["w"], second["w"])
    assert cache.stats() == {"hits": 1, "misses": 1}
    assert u.is_cached()
    (record,) = cache.build_records("test-weights")
    assert (
        record["build_s"] >= 0
        and record["estimate_s"] == 0.1
        and record["chapter"] == "99_test"
    )
    assert u.build_seconds() == record["build_s"]
    assert cache.metadata(u.name, u.config) == record
    assert math.isnan(unit(4).build_seconds())  # not built: no record


def test_estimate_is_corrected_by_large_timings_on_a_calm_machine(
    fresh_cache, monkeypatch
):
    big = units.Unit(
        "99_test",
        "test-weights",
        {"seed": 4, "size": 64},
        functools.partial(make_weights, 4, 64),
        estimate_s=10.0,
    )
    assert units.estimate(big) == (10.0, "model")
    monkeypatch.setattr("os.getloadavg", lambda: (0.5, 0.5, 0.5))
    big.get()
    (record,) = cache.build_records("test-weights")
    seconds, basis = units.estimate(unit(5))  # estimate_s 0.1, scaled by the 10 s build
    assert (
        seconds == pytest.approx(0.1 * record["build_s"] / 10.0) and "1 timing" in basis
    )
    # builds too small (fixed costs dominate) or made on an overloaded machine do not
    # count
    monkeypatch.setattr("os.getloadavg", lambda: (50.0, 50.0, 50.0))
    unit(6).get()
    units.Unit(
        "99_test",
        "test-weights",
        {"seed": 7, "size": 64},
        functools.partial(make_weights, 7, 64),
        estimate_s=10.0,
    ).get()
    assert units.estimate(unit(5)) == (seconds, basis)


def test_unit_built_on_a_local_cluster_is_byte_identical_to_a_local_build(
    fresh_cache, tmp_path
):
    u = unit(7)
    report = fanout.build_missing([u], workers=2, heartbeat_s=600)
    assert report.built == [u.key] and not report.failed
    remote = payload_hash(u, fresh_cache)
    local_dir = tmp_path / "local"
    cache.cached(u.name, u.config, u.build, directory=local_dir)
    assert payload_hash(u, local_dir) == remote


def test_failing_unit_is_named_and_the_others_are_still_built(fresh_cache, capsys):
    good = [unit(10), unit(11)]
    bad = units.Unit(
        "99_test", "test-diverges", {"seed": 12}, functools.partial(explode, 12)
    )
    report = fanout.build_missing(
        [good[0], bad, good[1]], workers=2, retries=0, heartbeat_s=600
    )
    assert sorted(report.built) == sorted(u.key for u in good)
    assert [u.key for u, _ in report.failed] == [bad.key]
    text = report.describe_failures()
    assert "99_test / test-diverges (seed=12)" in text and "diverged at seed 12" in text
    assert all(u.is_cached() for u in good) and not bad.is_cached()
    # a second fan-out has nothing left to build but the failing unit
    again = fanout.build_missing(good, workers=2, heartbeat_s=600)
    assert not again.built and not again.failed


def test_dependencies_are_built_before_dependents(fresh_cache):
    base = unit(20)
    top = units.Unit(
        "99_test",
        "test-sum",
        {"of": base.key},
        functools.partial(sum_of, base),
        deps=(base,),
    )
    report = fanout.build_missing([top], workers=2, heartbeat_s=600)
    assert set(report.built) == {base.key, top.key}
    assert float(top.get()["total"]) == pytest.approx(float(base.get()["w"].sum()))


def test_plan_lists_units_with_cache_state_and_estimate(fresh_cache, monkeypatch):
    chapter = SimpleNamespace(
        units=lambda profile, params: [unit(params["seed"]), unit(params["seed"] + 1)]
    )
    monkeypatch.setattr(chapters, "chapter_module", lambda stem: chapter)
    found = chapters.registry()
    planned = fanout.plan_units({"99_test": {"seed": 30}}, "smoke", found)
    assert [p.unit.key for p in planned] == [unit(30).key, unit(31).key]
    assert not any(p.cached for p in planned)
    unit(30).get()
    planned = fanout.plan_units({"99_test": {"seed": 30}}, "smoke", found)
    assert [p.cached for p in planned] == [True, False]
    text = fanout.format_plan(planned, workers=2)
    assert "99_test: 2 unit(s), 1 to build" in text and "cached" in text


def stub(key: str, seconds: float, deps=()) -> SimpleNamespace:
    return SimpleNamespace(key=key, seconds=seconds, deps=tuple(deps))


def test_critical_path_is_own_time_plus_the_longest_chain_of_dependents():
    # a(1) → b(5) → d(1);  a → c(2);  e(4) alone
    a = stub("a", 1)
    b, c = stub("b", 5, [a]), stub("c", 2, [a])
    d, e = stub("d", 1, [b]), stub("e", 4)
    level = fanout.critical_path([a, b, c, d, e], lambda u: u.seconds)
    assert level == {"a": 7, "b": 6, "c": 2, "d": 1, "e": 4}
    chain = fanout.longest_chain([a, b, c, d, e], {"a": 1, "b": 5, "c": 2, "d": 1})
    assert chain == ["a", "b", "d"]
    text = fanout.format_schedule({"a": 1, "b": 5, "c": 2, "d": 1, "e": 4}, level, 2)
    # 13 s of work, chain 7 s: two workers need at least max(7, 6.5) s
    assert "13 s of unit work" in text and "the longest chain 7 s" in text
    assert "at least 7 s" in text


def test_critical_path_skips_a_dependency_that_is_not_to_be_built():
    # a(3) is cached: only b and c are built, and a's time counts nowhere
    a = stub("a", 3)
    b, c = stub("b", 5, [a]), stub("c", 2, [a])
    level = fanout.critical_path([b, c], lambda u: {"b": 5, "c": 2}[u.key])
    assert level == {"b": 5, "c": 2}


def test_one_worker_takes_the_head_of_the_longest_chain_first(fresh_cache):
    short = [unit(40 + i, size=8) for i in range(3)]
    base = units.Unit(
        "99_test",
        "test-weights",
        {"seed": 50, "size": 256},  # also the longest in measured time
        functools.partial(make_weights, 50, 256),
        estimate_s=30.0,  # the long chain's head, listed last
    )
    top = units.Unit(
        "99_test",
        "test-sum",
        {"of": base.key},
        functools.partial(sum_of, base),
        deps=(base,),
        estimate_s=30.0,
    )
    report = fanout.build_missing([*short, top], workers=1, heartbeat_s=600)
    # its dependent becomes ready only when it ends, and may then queue behind a
    # short unit the worker already holds
    assert list(report.seconds)[0] == base.key
    assert report.chain == [base.key, top.key]
    assert set(report.built) == set(report.seconds)


def test_under_a_budget_the_chapters_own_order_comes_first(fresh_cache):
    first = unit(60, size=8)
    long_head = units.Unit(
        "99_test",
        "test-weights",
        {"seed": 61, "size": 8},
        functools.partial(make_weights, 61, 8),
        estimate_s=30.0,
    )
    report = fanout.build_missing(
        [first, long_head], workers=1, heartbeat_s=600, budget_s=600
    )
    assert list(report.seconds) == [first.key, long_head.key]


def test_a_cached_unit_needs_none_of_its_dependencies_built(fresh_cache):
    parts = [unit(70 + i, size=8) for i in range(2)]
    whole = units.Unit(
        "99_test",
        "test-sum",
        {"of": [p.key for p in parts]},
        functools.partial(sum_of, parts[0]),
        deps=tuple(parts),
    )
    assert [u.key for u in fanout.to_build([*parts, whole])] == [
        *(p.key for p in parts),
        whole.key,
    ]
    whole.get()  # builds parts[0] too; parts[1] stays unbuilt
    assert not parts[1].is_cached()
    assert fanout.to_build([*parts, whole]) == []  # listed, but only a cached one's
    loose = unit(72, size=8)
    assert [u.key for u in fanout.to_build([*parts, whole, loose])] == [loose.key]


def test_the_first_chapters_units_weigh_the_chapters_waiting_behind_them():
    listed = {"01": ["a"], "02": ["b", "shared"], "03": ["shared"]}
    tails = fanout.chapter_tails(listed, {"01": 10, "02": 20, "03": 5})
    assert tails == {"a": 35, "b": 25, "shared": 25}
    a, b = stub("a", 1), stub("b", 5)
    level = fanout.critical_path([a, b], lambda u: u.seconds, tails)
    # a is the shorter unit, but three chapters wait for it: it comes first
    assert level == {"a": 36, "b": 30}
    assert fanout.critical_path([a, b], lambda u: u.seconds) == {"a": 1, "b": 5}


def test_summary_counts_an_unbuilt_unit_of_the_chain_as_zero():
    from advmanifold.book.fanout import FanOutReport

    # a budget spent before anything was built: the chain holds units with no time
    report = FanOutReport(seconds={"a": 2.0}, wall_s=5.0, workers=2, chain=["a", "b"])
    line = report.summary()
    assert "the longest chain 2 s: a → b" in line
