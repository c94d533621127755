"""The committed record of a chapter's paper-scale runs: one row per model, growing
across runs.

A chapter whose paper profile trains more models than one run can build (the
generalization chapter) records every evaluated model in
``results/paper/<stem>__models.csv``: its measures, the keys of its units and the
provenance of the run that measured it (:data:`STAMP`). A later run builds only what
the record lacks (:func:`pending`) and appends its new rows (:func:`grow_record`); a
row is never dropped or changed. A unit whose definition changed has new keys, so it
becomes a new row and the old one stays, out of the current view
(:func:`current_rows`).

The book wing does not import the chapters: a chapter passes its stem, its columns
and what makes a row current.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import pandas as pd

from . import paths, results

#: provenance columns of a recorded row
STAMP = ("commit", "finished", "machine")


def record_path(stem: str, root=None) -> Path:
    """``results/paper/<stem>__models.csv`` under the book's root."""
    return paths.book_root(root) / "results" / "paper" / f"{stem}__models.csv"


def read_record(path, *, columns: Sequence[str], text: Sequence[str] = ()):
    """The recorded rows at ``path`` (an empty frame of ``columns`` when there is no
    record yet); ``text`` columns (and :data:`STAMP`) are read as strings, so that a
    commit hash never becomes a number."""
    path = Path(path)
    if not path.is_file():
        return pd.DataFrame(columns=list(columns))
    return pd.read_csv(path, dtype={c: str for c in (*text, *STAMP)})


def stamp() -> dict[str, str]:
    """Commit (short hash; "+changes" when the tree differs from it), date and
    machine of the run that records new rows."""
    import subprocess
    import time

    def git(*args) -> str:
        done = subprocess.run(
            ["git", *args], cwd=paths.book_root(), capture_output=True, text=True
        )
        return done.stdout.strip() if done.returncode == 0 else ""

    commit = git("rev-parse", "--short", "HEAD") or "unknown"
    if git("status", "--porcelain", "--untracked-files=no", "--", "src"):
        commit += "+changes"
    return {
        "commit": commit,
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": results.describe_machine(),
    }


def grow_record(
    record: pd.DataFrame,
    frame: pd.DataFrame,
    provenance: Mapping[str, str],
    *,
    key: str = "eval_key",
) -> pd.DataFrame:
    """The record's rows unchanged, then the rows of ``frame`` whose ``key`` (the
    evaluation's unit key) it does not hold yet, stamped with ``provenance``."""
    known = set(record[key].dropna()) if key in record else set()
    new = frame[~frame[key].isin(known)].assign(**dict(provenance))
    if record.empty:
        return new.reset_index(drop=True)
    return pd.concat([record, new], ignore_index=True)


def current_rows(
    record: pd.DataFrame, is_current: Callable[[Any], bool], *, key: str = "train_key"
) -> pd.DataFrame:
    """The recorded rows for which ``is_current(row)`` (a named tuple of the row)
    holds: those whose unit keys are the ones the chapter's code gives them now. Empty
    for a record without ``key``."""
    if record.empty or key not in record:
        return record.iloc[0:0]
    keep = [bool(is_current(row)) for row in record.itertuples(index=False)]
    return record[keep].reset_index(drop=True)


def pending(
    rows: Sequence[Mapping[str, Any]], record: pd.DataFrame, columns: Mapping[str, str]
) -> list:
    """The rows (dicts of units) some of whose units the record does not hold:
    ``columns`` maps a row's field (a unit) to the record's column of that unit's
    keys, e.g. ``{"eval": "eval_key"}``; a column the record lacks holds nothing."""
    done = {
        field: set(record[column].dropna()) if column in record else set()
        for field, column in columns.items()
    }
    return [r for r in rows if any(r[f].key not in done[f] for f in columns)]


def coverage(frame: pd.DataFrame, order: Sequence[str]) -> pd.DataFrame:
    """Seeds done per method (rows, in ``order``) and N (columns)."""
    table = frame.pivot_table(
        index="method", columns="n", values="seed", aggfunc="nunique", fill_value=0
    )
    table = table.loc[[m for m in order if m in table.index]].astype(int)
    table.columns = [f"N = {n:,}" for n in table.columns]
    return table
