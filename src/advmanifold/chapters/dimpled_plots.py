"""Figures of the dimpled manifold chapter (``07_dimpled``), from the tidy frames of
:func:`advmanifold.chapters.dimpled.frame`. At most 10 in wide, text ≥ 10 pt."""

from __future__ import annotations

from typing import Mapping

import matplotlib.pyplot as plt
import matplotlib.ticker as ticker
import pandas as pd
import seaborn as sns

from .dimpled import SHARES, censored

ERRORBAR = ("se", 2)  # mean ± 2 standard errors over the test images


def _long_shares(rows: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    long = rows.melt(
        id_vars=by, value_vars=list(SHARES), var_name="vector", value_name="share"
    ).dropna(subset=["share"])
    long["vector"] = long.vector.map(SHARES)
    return long


def _baseline(ax, baseline: Mapping[str, float], orientation: str = "h") -> None:
    """The random directions' 5–95 % band and mean, and √(k/d)."""
    lo, hi = baseline["random_share_q05"], baseline["random_share_q95"]
    span = ax.axhspan if orientation == "h" else ax.axvspan
    line = ax.axhline if orientation == "h" else ax.axvline
    span(lo, hi, color="0.85", zorder=0, label="random direction, 5–95 %")
    line(baseline["random_share_mean"], color="0.4", lw=1.5, label="random, mean")
    line(baseline["sqrt_k_over_d"], color="black", ls=":", lw=1.5, label="√(k/d)")


def _log_steps(ax) -> None:
    ax.set_xscale("symlog", linthresh=1)
    ax.set_xlim(left=0)


def plot_shares(
    rows: pd.DataFrame, baseline: Mapping[str, float], early_step: int, per_epoch: int
):
    """Tangent share of gradient and perturbations (mean ± 2 SE) against the
    optimiser step (symmetric log axis: 0, then log), beside the random baseline;
    right, test error."""
    fig, axes = plt.subplots(
        1, 2, figsize=(10, 4.0), gridspec_kw={"width_ratios": [2.2, 1]}
    )
    long = _long_shares(rows, ["step"])
    _baseline(axes[0], baseline)
    sns.lineplot(
        long,
        x="step",
        y="share",
        hue="vector",
        errorbar=ERRORBAR,
        marker="o",
        ax=axes[0],
    )
    error = rows.groupby("step", as_index=False).correct.mean()
    error["test error"] = 1 - error.correct
    sns.lineplot(error, x="step", y="test error", marker="o", color="C3", ax=axes[1])
    for ax in axes:
        _log_steps(ax)
        ax.axvline(early_step, color="C4", ls="--", lw=1.2)
        ax.axvline(per_epoch, color="0.5", ls="--", lw=1)
    axes[0].set(xlabel="optimiser step", ylabel="tangent share ‖P_T v‖ / ‖v‖")
    axes[0].set_ylim(bottom=0)
    axes[1].set(xlabel="optimiser step", ylim=(0, 1))
    axes[0].legend(
        loc="upper center", bbox_to_anchor=(0.7, -0.18), ncol=3, frameon=False
    )
    fig.tight_layout()
    return fig


def plot_distances(rows: pd.DataFrame, final_step: int, t_max: float):
    """Left: distance to the boundary along u_T against along u_N at the final
    checkpoint (∞ drawn at t_max). Middle: medians over training. Right: share of
    images whose boundary is closer along u_N."""
    fig, axes = plt.subplots(1, 3, figsize=(10, 3.6))
    last = rows[rows.step == final_step]
    d_t, d_n = censored(last.d_tangent, t_max), censored(last.d_normal, t_max)
    axes[0].scatter(d_n, d_t, s=6, alpha=0.5, color="C0", linewidth=0)
    low = max(min(d_t.min(), d_n.min()) * 0.8, 1e-3)
    axes[0].plot([low, t_max], [low, t_max], color="black", lw=1)
    axes[0].set(
        xscale="log",
        yscale="log",
        xlabel="along normal u_N",
        ylabel="along tangent u_T",
        title="final checkpoint",
    )
    medians = rows.groupby("step").agg(
        tangent=("d_tangent", lambda d: censored(d, t_max).median()),
        normal=("d_normal", lambda d: censored(d, t_max).median()),
        closer=("normal_closer", "mean"),
    )
    for name, color in (("tangent", "C1"), ("normal", "C0")):
        axes[1].plot(medians.index, medians[name], marker="o", color=color, label=name)
    axes[1].set(yscale="log", xlabel="optimiser step", ylabel="median distance")
    axes[1].legend(frameon=False)
    axes[2].plot(medians.index, medians.closer, marker="o", color="C2")
    axes[2].axhline(0.5, color="black", ls=":", lw=1)
    axes[2].set(xlabel="optimiser step", ylabel="share with u_N closer", ylim=(0, 1))
    for ax in axes[1:]:
        _log_steps(ax)
    fig.tight_layout()
    return fig


def plot_methods(rows: pd.DataFrame, baseline: Mapping[str, float], t_max: float):
    """Per model at the end of training: mean tangent shares (± 2 SE) beside the
    random band, and the median boundary distance along u_T and u_N."""
    fig, axes = plt.subplots(
        1, 2, figsize=(10, 4.2), gridspec_kw={"width_ratios": [1.4, 1]}
    )
    long = _long_shares(rows, ["model"])
    _baseline(axes[0], baseline, orientation="v")
    sns.barplot(long, y="model", x="share", hue="vector", errorbar=ERRORBAR, ax=axes[0])
    axes[0].set(xlabel="tangent share ‖P_T v‖ / ‖v‖", ylabel="")
    axes[0].legend(
        loc="upper center", bbox_to_anchor=(0.4, -0.16), ncol=3, frameon=False
    )
    dist = rows.assign(
        tangent=censored(rows.d_tangent, t_max), normal=censored(rows.d_normal, t_max)
    ).melt(
        id_vars=["model"],
        value_vars=["tangent", "normal"],
        var_name="direction",
        value_name="distance",
    )
    sns.pointplot(
        dist,
        y="model",
        x="distance",
        hue="direction",
        estimator="median",
        errorbar=None,
        linestyle="none",
        dodge=0.3,
        markersize=8,
        palette={"tangent": "C1", "normal": "C0"},
        ax=axes[1],
    )
    axes[1].set(xscale="log", xlabel="median distance to the boundary", ylabel="")
    axes[1].xaxis.set_major_formatter(ticker.FormatStrFormatter("%g"))
    axes[1].xaxis.set_minor_formatter(ticker.NullFormatter())
    axes[1].set_yticklabels([])
    axes[1].legend(
        loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2, frameon=False
    )
    fig.tight_layout()
    return fig
