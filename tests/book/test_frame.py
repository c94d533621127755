"""Results files, cache integrity, profiles and data-folder resolution."""

import json
import math
import warnings

import pytest
import torch

from advmanifold.book import cache, paths, profiles
from advmanifold.science import data
from advmanifold.book.results import Results, read_results


def test_results_json_is_flat_and_complete(tmp_path):
    res = Results("07_demo", profile="smoke", seed=3, directory=tmp_path)
    res.add("accuracy", torch.tensor(0.25))
    res.add("count", 12)
    import pandas as pd

    res.add_table("rows", pd.DataFrame({"a": [1, 2]}))
    path = res.write()
    record = json.loads(path.read_text())
    assert record["accuracy"] == 0.25 and record["count"] == 12
    assert record["profile"] == "smoke" and record["seed"] == 3
    assert "version_torch" in record and record["wall_time_s"] >= 0
    assert all(not isinstance(v, (dict, list)) for v in record.values())
    assert (tmp_path / "07_demo__rows.csv").read_text().splitlines() == ["a", "1", "2"]
    assert read_results("07_demo", tmp_path)["count"] == 12
    assert not list(tmp_path.glob(".*tmp"))  # atomic write leaves no temporary file


@pytest.mark.parametrize("bad", [float("nan"), "0.5", True])
def test_results_reject_non_numbers(tmp_path, bad):
    with pytest.raises((TypeError, ValueError)):
        Results("x", profile="smoke", seed=0, directory=tmp_path).add("m", bad)


def test_results_add_if_finite_records_finite_numbers_only(tmp_path):
    res = Results("x", profile="smoke", seed=0, directory=tmp_path)
    assert res.add_if_finite("kept", torch.tensor(0.5))
    assert not res.add_if_finite("undefined", float("nan"))
    assert not res.add_if_finite("unbounded", float("-inf"))
    assert res.metrics == {"kept": 0.5}  # the JSON never holds a NaN
    with pytest.raises(TypeError, match="'text'"):  # still only numbers
        res.add_if_finite("text", "0.5")


def test_results_reject_unknown_profile(tmp_path):
    with pytest.raises(ValueError, match="smoke.*quick.*paper"):
        Results("x", profile="fast", seed=0, directory=tmp_path)


def test_read_results_of_missing_chapter_says_so(tmp_path):
    with pytest.raises(FileNotFoundError, match="run that chapter first"):
        read_results("99_missing", tmp_path)


def test_profiles_select_and_validate():
    table = {p: {"epochs": i, "n": 10 * i} for i, p in enumerate(profiles.PROFILES)}
    select = profiles.Settings(
        table,
        profiles.Setting("epochs", profiles.integer(0)),
        profiles.Setting("n", profiles.integer(0)),
    )
    s = select("paper", epochs=None, n=5)
    assert (s.profile, s.epochs, s.n) == ("paper", 2, 5)
    with pytest.raises(ValueError, match="epoch"):
        select("quick", epoch=3)
    with pytest.raises(ValueError, match="profile must be one of"):
        select("full")


class Counter:
    def __init__(self):
        self.calls = 0

    def __call__(self):
        self.calls += 1
        return {"w": torch.arange(6.0).reshape(2, 3), "epochs": 2}


def test_cache_builds_once_per_configuration(tmp_path):
    build = Counter()
    first = cache.cached("model", {"lr": 0.1}, build, directory=tmp_path, enabled=True)
    again = cache.cached("model", {"lr": 0.1}, build, directory=tmp_path, enabled=True)
    other = cache.cached("model", {"lr": 0.2}, build, directory=tmp_path, enabled=True)
    assert build.calls == 2
    assert (
        torch.equal(first["w"], again["w"])
        and again["epochs"] == 2
        and other["epochs"] == 2
    )


@pytest.mark.parametrize("damage", ["truncate", "flip", "metadata"])
def test_corrupted_cache_entry_is_detected_and_rebuilt(tmp_path, damage):
    build = Counter()
    cache.cached("model", {"lr": 0.1}, build, directory=tmp_path, enabled=True)
    payload = next(tmp_path.glob("model-*.pt"))
    blob = payload.read_bytes()
    if damage == "truncate":
        payload.write_bytes(blob[: len(blob) // 2])
    elif damage == "flip":
        payload.write_bytes(blob[:-9] + bytes([blob[-9] ^ 0xFF]) + blob[-8:])
    else:
        payload.with_suffix(".json").write_text("{not json")
    with pytest.warns(UserWarning, match="corrupted"):
        rebuilt = cache.cached(
            "model", {"lr": 0.1}, build, directory=tmp_path, enabled=True
        )
    assert build.calls == 2 and torch.equal(
        rebuilt["w"], torch.arange(6.0).reshape(2, 3)
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the rebuilt entry is healthy again
        cache.cached("model", {"lr": 0.1}, build, directory=tmp_path, enabled=True)
    assert build.calls == 2


def test_cache_can_be_turned_off(tmp_path, monkeypatch):
    build = Counter()
    monkeypatch.setenv("ADVMANIFOLD_NO_CACHE", "1")
    cache.cached("model", {}, build, directory=tmp_path)
    cache.cached("model", {}, build, directory=tmp_path)
    assert build.calls == 2 and not list(tmp_path.iterdir())


def test_cache_key_depends_on_data_fingerprint():
    a, b = torch.zeros(4), torch.zeros(4)
    assert cache.fingerprint(a) == cache.fingerprint(b)
    b[2] = 1e-7
    assert cache.fingerprint(a) != cache.fingerprint(b)
    assert cache.config_key({"x": 1, "y": 2}) == cache.config_key({"y": 2, "x": 1})


def test_data_dir_resolution_order(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv("ADVMANIFOLD_DATA", raising=False)
    assert paths.data_dir() == tmp_path / "xdg" / "advmanifold" / "data"
    monkeypatch.setenv("ADVMANIFOLD_DATA", str(tmp_path / "env"))
    assert paths.data_dir() == tmp_path / "env"
    assert paths.data_dir(tmp_path / "arg") == tmp_path / "arg"


def test_mnist_missing_files_give_a_clear_error(tmp_path, monkeypatch):
    from torchvision.datasets import MNIST

    # no network: point the mirrors at a closed local port so the download fails at once
    monkeypatch.setattr(MNIST, "mirrors", ["http://127.0.0.1:9/"])
    with pytest.raises(data.DataNotFoundError) as err:
        data.load_mnist(train=False, data_dir=tmp_path)
    message = str(err.value)
    assert str(tmp_path / "MNIST" / "raw") in message
    assert "t10k-images-idx3-ubyte.gz" in message and "ADVMANIFOLD_DATA" in message


def test_mnist_loads_from_local_files(tmp_path, monkeypatch):
    source = data.mnist_raw_dir()
    if not (source / "t10k-images-idx3-ubyte.gz").is_file():
        pytest.skip(f"MNIST files not in {source} (set ADVMANIFOLD_DATA)")
    from torchvision.datasets import MNIST

    monkeypatch.setattr(
        MNIST, "mirrors", ["http://127.0.0.1:9/"]
    )  # prove nothing is downloaded
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name in data.MNIST_FILES:  # torchvision checks all four files
        (raw / name).symlink_to(source / name)
    x, y = data.load_mnist(train=False, data_dir=tmp_path, limit=100)
    assert x.shape == (100, 1, 28, 28) and x.dtype == torch.float32
    assert 0.0 <= x.min() and x.max() <= 1.0 and math.isclose(x.max().item(), 1.0)
    assert y.tolist()[:5] == [7, 2, 1, 0, 4]  # the first MNIST test labels


def test_book_run_log_merges_chapters_and_keeps_the_others(tmp_path):
    from advmanifold.book.results import book_run_path, read_book_run, write_book_run

    assert read_book_run("smoke", tmp_path) == {
        "profile": "smoke",
        "chapters_s": {},
        "total_s": 0,
    }
    first = {"01_a": 10.0, "02_b": 5.0}
    write_book_run("smoke", first, units_s=7.0, directory=tmp_path)
    write_book_run("smoke", {"02_b": 2.5}, directory=tmp_path)  # a later run of one
    log = json.loads(book_run_path("smoke", tmp_path).read_text())
    assert log["chapters_s"] == {"01_a": 10.0, "02_b": 2.5}
    assert log["total_s"] == 12.5 and log["units_s"] == 7.0  # kept from the first run
    assert read_book_run("smoke", tmp_path)["chapters_s"] == log["chapters_s"]
    assert not book_run_path("quick", tmp_path).exists()  # profiles apart


def test_statistics_over_seeds_are_means_and_sample_deviations():
    import pandas as pd

    from advmanifold.book.results import mean_std, mean_std_table, over_seeds

    frame = pd.DataFrame(
        {"method": list("aaab"), "x": [1.0, 2.0, 6.0, 4.0], "seed": [0, 1, 2, 0]}
    )
    stats = over_seeds(frame, "method", ["x"])
    assert stats.loc["a", "x"] == 3.0 and stats.loc["b", "x"] == 4.0
    assert stats.loc["a", "x_std"] == pytest.approx(math.sqrt(7.0))  # n − 1 = 2
    assert stats.loc["b", "x_std"] == 0.0 and list(stats.n_models) == [3, 1]
    assert mean_std([1.0, 2.0, 6.0]) == pytest.approx((3.0, math.sqrt(7.0)))
    assert mean_std_table(frame, "method", ["x"]).loc["a", "x"] == "3.000 ± 2.646"
