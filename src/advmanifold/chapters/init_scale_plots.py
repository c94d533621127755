"""Figures of the initialisation-scale chapter, from its tables
(:func:`~advmanifold.chapters.init_scale.model_table`,
:func:`~advmanifold.chapters.init_scale.curve_table`). Each returns a matplotlib
figure at most 10 in wide."""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from ..book import figures
from .init_scale import ARCHS, NAMES, THREAT_NAMES, THREATS

ARCH_ORDER = [NAMES[a] for a in ARCHS]
THREAT_ORDER = [THREAT_NAMES[t] for t in THREATS]


def style() -> dict[str, tuple]:
    """The book's theme; a colour per architecture."""
    figures.style()
    return dict(zip(ARCH_ORDER, sns.color_palette("colorblind", len(ARCH_ORDER))))


def random_share(k: int, d: int) -> float:
    """Expected orthogonal share of a random direction, about √(1 − k/d)."""
    return math.sqrt(1 - k / d)


def shares(table: pd.DataFrame, colors: dict, reference: float):
    """Median orthogonal share of the input gradient against the initialisation scale
    c (λ = 0, left) and the weight decay λ (c = 1, right): each seed a dot, the mean
    over seeds ± one standard deviation a line."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), sharey=True)
    sweeps = (
        (table[table.weight_decay == 0], "init_scale", "initialisation scale c"),
        (table[table.init_scale == 1], "weight_decay", "weight decay λ"),
    )
    offset = dict(zip(ARCH_ORDER, (-0.06, 0.06)))
    for ax, (data, x, label) in zip(axes, sweeps):
        order = sorted(data[x].unique())
        data = data.assign(  # categorical positions, the architectures side by side
            pos=data[x].map({v: i for i, v in enumerate(order)}) + data.arch.map(offset)
        )
        common = dict(x="pos", y="orth_share", hue="arch", hue_order=ARCH_ORDER, ax=ax)
        sns.scatterplot(data, **common, palette=colors, alpha=0.4, s=20, legend=False)
        sns.lineplot(
            data,
            **common,
            palette=colors,
            errorbar="sd",
            err_style="bars",
            marker="D",
            markersize=8,
        )
        ax.axhline(reference, color="gray", ls="--", lw=1)
        ax.set(xlabel=label, ylabel="median ‖(I − P)g‖ / ‖g‖", ylim=(0, 1.02))
        ax.set_xticks(range(len(order)), [f"{v:g}" for v in order])
        ax.set_xlim(-0.4, len(order) - 0.6)
    axes[1].get_legend().remove()
    axes[0].legend(title="", loc="lower right")
    axes[0].text(-0.35, reference - 0.07, "random direction", color="gray", fontsize=9)
    fig.tight_layout()
    return fig


def curves(curve: pd.DataFrame, sweep: str):
    """Robust accuracy against the L2 budget ε, one column per threat model and one
    row per architecture, one line per value of the swept factor (mean over seeds,
    band ± one standard deviation); ε = 0 is the clean accuracy."""
    data = curve[curve.sweep == sweep].copy()
    factor, label = ("init_scale", "c") if sweep == "init" else ("weight_decay", "λ")
    data[label] = data[factor].map("{:g}".format)
    order = [f"{v:g}" for v in sorted(data[factor].unique())]
    grid = sns.relplot(
        data,
        x="eps",
        y="accuracy",
        hue=label,
        hue_order=order,
        row="arch",
        row_order=ARCH_ORDER,
        col="threat",
        col_order=THREAT_ORDER,
        kind="line",
        errorbar="sd",
        marker="o",
        palette="viridis",
        height=2.4,
        aspect=1.3,
        facet_kws={"margin_titles": True},
    )
    grid.set_axis_labels("L2 budget ε", "robust accuracy")
    grid.set_titles(row_template="{row_name}", col_template="δ {col_name}")
    grid.set(ylim=(0, 1))
    title = "initialisation scale c" if sweep == "init" else "weight decay λ"
    sns.move_legend(
        grid, "upper center", bbox_to_anchor=(0.5, 0.0), ncol=len(order), title=title
    )
    grid.figure.tight_layout()
    return grid.figure
