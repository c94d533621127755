"""The numbers and tables of the generalization chapter, from its frame of models
(one row per model: :func:`advmanifold.chapters.generalization.run`): means over
seeds, rank correlations with the test error, the chapter's results
(:func:`add_results`), and the original README's on-manifold success rates beside
ours.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from ..book import results
from .generalization import (
    ANCHOR,
    CHANCE_ERROR,
    MEASURES,
    METHODS,
    ORIGINAL_METHODS,
    learned,
)


def summary(frame: pd.DataFrame) -> pd.DataFrame:
    """Mean and sample standard deviation over seeds per (method, N)."""
    out = results.over_seeds(frame, ["method", "n"], MEASURES)
    order = {m: i for i, m in enumerate(METHODS)}
    return (
        out.reset_index()
        .sort_values(
            ["method", "n"], key=lambda c: c.map(order) if c.name == "method" else c
        )
        .reset_index(drop=True)
    )


def rank_correlation(a, b) -> float:
    """Spearman's ρ (pandas: the Pearson correlation of average ranks); NaN when
    either side is constant."""
    a, b = pd.Series(np.asarray(a, dtype=float)), pd.Series(np.asarray(b, dtype=float))
    return float(a.corr(b, method="spearman"))


def correlations(
    frame: pd.DataFrame, x: str, y: str
) -> tuple[float, float, float, int]:
    """ρ(x, y) over all models; mean, standard deviation and count of the finite ρ
    within each seed."""
    per_seed = [rank_correlation(g[x], g[y]) for _, g in frame.groupby("seed")]
    finite = [r for r in per_seed if np.isfinite(r)]
    mean, std = results.mean_std(finite) if finite else (float("nan"), 0.0)
    return rank_correlation(frame[x], frame[y]), mean, std, len(finite)


def complete_sizes(frame: pd.DataFrame) -> list[int]:
    """The N at which every method has at least one model (all N if none has)."""
    methods = frame.groupby("n").method.nunique()
    full = sorted(int(n) for n in methods[methods == frame.method.nunique()].index)
    return full or sorted(int(n) for n in frame.n.unique())


def coverage_extent(frame: pd.DataFrame) -> tuple[int, int]:
    """(largest N at which every method of ``frame`` has a model, fewest seeds of any
    method at any N up to it)."""
    n_large = max(complete_sizes(frame))
    seeds = frame[frame.n <= n_large].groupby(["method", "n"]).seed.nunique()
    return n_large, int(seeds.min())


def add_results(res, frame: pd.DataFrame) -> pd.DataFrame:
    """Write the chapter's numbers: ``<measure>_<method>_n<N>`` (+ ``_std``, and
    ``_n``, its seeds), the rank correlations (+ ``_std`` and ``_n``, the spread and
    count of the per-seed ρ), ``n_seeds`` (the fewest seeds of any method and N),
    ``n_small`` and ``n_large`` (the extreme N at which every method has models),
    and the same extent for the original four methods (``n_large_original``,
    ``n_seeds_original``), and per method ``n_models_<method>`` and
    ``n_at_chance_<method>`` (models with test error ≥ ``chance_error``, the
    module's ``CHANCE_ERROR``; the on-manifold ρ without them is
    ``rank_corr_<measure>_vs_test_error_learned``) and ``n_flat_<method>`` (models
    whose alignment is undefined: a zero input gradient on every image measured, a
    flat network). A mean over seeds skips undefined values, and its ``_n`` counts
    the defined ones. Returns the summary."""
    table = summary(frame)
    res.add("chance_error", CHANCE_ERROR)
    for method, runs in frame.groupby("method"):
        res.add(f"n_models_{method}", len(runs))
        res.add(f"n_at_chance_{method}", int((~learned(runs)).sum()))
        res.add(f"n_flat_{method}", int(runs.alignment_cosine.isna().sum()))
    defined = frame.groupby(["method", "n"])[list(MEASURES)].count()
    for row in table.itertuples(index=False):
        for m in MEASURES:
            if getattr(row, m) != getattr(row, m):  # NaN: not measured for these rows
                continue
            res.add(f"{m}_{row.method}_n{row.n}", getattr(row, m))
            res.add(f"{m}_{row.method}_n{row.n}_std", getattr(row, f"{m}_std"))
            res.add(
                f"{m}_{row.method}_n{row.n}_n", int(defined.at[(row.method, row.n), m])
            )
    for x in (
        "onmanifold_success",
        "regular_success",
        "onmanifold_success_original",
        "regular_success_original",
    ):
        if frame[x].isna().any():  # rows recorded before the original protocol
            continue
        key = f"rank_corr_{x}_vs_test_error"
        pooled, mean, std, count = correlations(frame, x, "test_error")
        res.add(key, pooled)
        res.add(f"{key}_per_seed", mean)
        res.add(f"{key}_std", std)
        res.add(f"{key}_n", count)
    trained = frame[learned(frame)]
    for x in ("onmanifold_success", "onmanifold_success_original"):
        enough = len(trained) > 1 and not trained[x].isna().any()
        res.add_if_finite(  # NaN, shown as nan: too few models, or a constant column
            f"rank_corr_{x}_vs_test_error_learned",
            rank_correlation(trained[x], trained.test_error) if enough else math.nan,
        )
    original = frame[frame.method.isin(ORIGINAL_METHODS)]
    key = "rank_corr_onmanifold_success_vs_test_error_original_methods"
    pooled, _, std, count = correlations(original, "onmanifold_success", "test_error")
    res.add(key, pooled)
    res.add(f"{key}_std", std)
    res.add(f"{key}_n", count)
    res.add("n_seeds", int(frame.groupby(["method", "n"]).seed.nunique().min()))
    res.add("n_models", len(frame))
    sizes = complete_sizes(frame)
    res.add("n_small", min(sizes))
    res.add("n_large", max(sizes))
    if not original.empty:
        n_large, n_seeds = coverage_extent(original)
        res.add("n_large_original", n_large)
        res.add("n_seeds_original", n_seeds)
    res.add_table("summary", table)
    return table


# --- tables -------------------------------------------------------------------------


def settings_table(s: Any) -> pd.DataFrame:
    """The chapter's settings as a two-column table."""
    return pd.DataFrame(
        {"setting": list(vars(s)), "value": [str(v) for v in vars(s).values()]}
    )


def anchor_table(frame: pd.DataFrame) -> pd.DataFrame:
    """On-manifold success rates of the original README beside ours, like for like
    under the original's protocol (``onmanifold_success_original``) and under ours
    (mean ± sd over the seeds of ``frame``, one row per model), with the like-for-like
    difference and whether it is within :data:`ANCHOR_TOLERANCE` or 2 standard errors
    ("—" where this run lacks that N). Models near chance (test error ≥
    ``CHANCE_ERROR``) are left out and counted: a network at chance has no decision
    boundary left to attack, so its success rate of 0 is no robustness level, and its
    spread would widen the tolerance."""
    trained = learned(frame)
    table = summary(frame[trained])
    dropped = frame[~trained].groupby(["method", "n"]).size()
    rows = []
    for method, values in ANCHOR.items():
        for n, original in values.items():
            hit = table[(table.method == method) & (table.n == n)]
            row = {
                "method": method,
                "N": n,
                "README": f"{original:.2f}",
                "ours, original protocol": "—",
                "ours, our protocol": "—",
                "difference (original protocol)": "—",
                "within tolerance": "—",
                "seeds": 0,
                "at chance, left out": int(dropped.get((method, n), 0)),
                "our test error": "—",
            }
            if len(hit):
                h = hit.iloc[0]
                row.update(
                    {
                        "ours, our protocol": _pm(h, "onmanifold_success"),
                        "seeds": int(h.n_models),
                        "our test error": f"{h.test_error:.3f}",
                    }
                )
                like = h.onmanifold_success_original
                if like == like:  # not NaN: this row has the original protocol
                    close = anchor_agrees(
                        like, h.onmanifold_success_original_std, h.n_models, original
                    )
                    row.update(
                        {
                            "ours, original protocol": _pm(
                                h, "onmanifold_success_original"
                            ),
                            "difference (original protocol)": f"{like - original:+.2f}",
                            "within tolerance": "yes" if close else "no",
                        }
                    )
            rows.append(row)
    return pd.DataFrame(rows)


#: A README cell reproduces when |ours − README| is at most this (the README's values
#: are read off a plot, about ±0.02) or within 2 standard errors over seeds.
ANCHOR_TOLERANCE = 0.05


def anchor_agrees(mean: float, sd: float, n_models: int, readme: float) -> bool:
    """|mean − readme| ≤ :data:`ANCHOR_TOLERANCE` or ≤ 2 · sd / √n_models."""
    se = sd / math.sqrt(max(int(n_models), 1))
    return abs(mean - readme) <= max(ANCHOR_TOLERANCE, 2 * se)


def _pm(row, measure: str) -> str:
    return f"{getattr(row, measure):.2f} ± {getattr(row, measure + '_std'):.2f}"


def anchor_sentence(anchor: pd.DataFrame) -> str:
    """The differences of :func:`anchor_table` in words, for the prose."""
    column = "difference (original protocol)"
    both = anchor[anchor[column] != "—"]
    if both.empty:
        return "this profile trains none of the README's N"
    gaps = zip(both["method"], both["N"], both[column])
    return "; ".join(f"{m} at N = {n:,}: {gap}" for m, n, gap in gaps)
