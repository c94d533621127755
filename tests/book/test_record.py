"""The committed record of a chapter's paper runs (advmanifold.book.record): rows
only grow, the current view filters by the chapter's own rule, and what is pending is
what the record lacks."""

from types import SimpleNamespace

import pandas as pd

from advmanifold.book import record


def _row(**keys):
    return {field: SimpleNamespace(key=key) for field, key in keys.items()}


def test_pending_rows_lack_some_unit_in_the_record():
    recorded = pd.DataFrame({"eval_key": ["a", "b"], "eval_original_key": ["A", None]})
    rows = [_row(eval="a", eval_original="A"), _row(eval="b", eval_original="B"),
            _row(eval="c", eval_original="C")]
    columns = {"eval": "eval_key", "eval_original": "eval_original_key"}
    assert record.pending(rows, recorded, columns) == rows[1:]
    # a column the record lacks holds nothing: every row is pending
    assert record.pending(rows, recorded[["eval_key"]], columns) == rows
    assert record.pending(rows, pd.DataFrame(), columns) == rows


def test_current_rows_keep_what_the_rule_accepts_in_order():
    recorded = pd.DataFrame(
        {"method": ["A", "B", "A"], "train_key": ["x", "y", "z"], "n": [1, 2, 3]}
    )
    kept = record.current_rows(recorded, lambda row: row.method == "A")
    assert kept.train_key.tolist() == ["x", "z"]
    assert kept.index.tolist() == [0, 1]
    assert record.current_rows(recorded.drop(columns="train_key"), bool).empty
    assert record.current_rows(recorded.iloc[0:0], bool).empty


def test_coverage_counts_seeds_per_method_in_the_given_order(tmp_path):
    frame = pd.DataFrame(
        {"method": ["B", "A", "A", "B"], "n": [10, 10, 1000, 10], "seed": [0, 0, 1, 1]}
    )
    table = record.coverage(frame, order=("A", "B", "C"))
    assert table.index.tolist() == ["A", "B"]
    assert table.columns.tolist() == ["N = 10", "N = 1,000"]
    assert table.loc["B"].tolist() == [2, 0]


def test_read_record_keeps_hashes_as_text_and_an_empty_record_has_the_columns(
    tmp_path,
):
    empty = record.read_record(tmp_path / "none.csv", columns=["method", "n"])
    assert empty.empty and empty.columns.tolist() == ["method", "n"]
    path = tmp_path / "models.csv"
    pd.DataFrame({"eval_key": ["0123"], "commit": ["1e53000"], "n": [5]}).to_csv(
        path, index=False
    )
    read = record.read_record(path, columns=["n"], text=("eval_key",))
    assert read.eval_key.tolist() == ["0123"] and read.commit.tolist() == ["1e53000"]
    assert record.record_path("06_x", tmp_path) == (
        tmp_path / "results" / "paper" / "06_x__models.csv"
    )
