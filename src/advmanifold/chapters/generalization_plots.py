"""Figures of the generalization chapter, from its frame of models (one row per
model: :func:`advmanifold.chapters.generalization.run`): measures against N, every
model as a point, and the original README's curves beside ours.
"""

from __future__ import annotations

import pandas as pd

from .generalization import ANCHOR, METHODS, ORIGINAL_METHODS, learned

LABELS = {
    "test_error": "test error",
    "onmanifold_success": "on-manifold success rate (ε = 0.3 in θ)",
    "regular_success": "regular success rate (ε = 0.3)",
    "onmanifold_success_original": "on-manifold success, original protocol",
    "regular_success_original": "regular success, original protocol",
    "fgsm_accuracy": "FGSM robust accuracy",
    "pgd_accuracy": "PGD robust accuracy",
    "alignment_cosine": "cosine ‖P_T g‖ / ‖g‖ (median)",
    "alignment_ratio": "ratio ‖g‖ / ‖P_T g‖ (median)",
}


def _palette():
    import seaborn as sns

    return dict(zip(METHODS, sns.color_palette("tab10", len(METHODS))))


def plot_vs_n(frame: pd.DataFrame, measures, *, methods=METHODS, eps=None, width=10.0):
    """One panel per measure: mean over seeds against N (log scale), ±1 sd band."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    measures = [measures] if isinstance(measures, str) else list(measures)
    fig, axes = plt.subplots(1, len(measures), figsize=(width, 3.8), squeeze=False)
    data = frame[frame.method.isin(methods)]
    for i, (ax, m) in enumerate(zip(axes[0], measures)):
        sns.lineplot(
            data=data,
            x="n",
            y=m,
            hue="method",
            style="method",
            markers=True,
            dashes=False,
            errorbar="sd",
            palette=_palette(),
            hue_order=methods,
            style_order=methods,
            ax=ax,
            legend=i == len(measures) - 1,
        )
        ax.set_xscale("log")
        ax.set_xlabel("training images N (log scale)")
        label = (
            LABELS[m]
            if eps is None or m not in ("fgsm_accuracy", "pgd_accuracy")
            else f"{LABELS[m]} (ε = {eps:g})"
        )
        ax.set_ylabel(label)
        ax.set_xticks(sorted(data.n.unique()))
        ax.set_xticklabels([f"{n:,}" for n in sorted(data.n.unique())], rotation=30)
        ax.minorticks_off()
        if m != "alignment_ratio":  # rates: the sd band must not leave [0, 1]
            low, high = ax.get_ylim()
            ax.set_ylim(max(low, -0.02), min(high, 1.02))
    axes[0, -1].legend(
        title="method",
        fontsize=10,
        title_fontsize=10,
        loc="center left",
        bbox_to_anchor=(1.02, 0.5),
    )
    fig.tight_layout()
    return fig


def plot_scatter(frame: pd.DataFrame, *, x="test_error", y="onmanifold_success"):
    """Every model as one point: ``y`` against ``x``, colour = method, size = N."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    fig, ax = plt.subplots(figsize=(8.0, 5.0))
    sns.scatterplot(
        data=frame.rename(columns={"n": "N"}),
        x=x,
        y=y,
        hue="method",
        style="method",
        size="N",
        sizes=(30, 160),
        palette=_palette(),
        hue_order=METHODS,
        ax=ax,
    )
    ax.set_xlabel(LABELS[x])
    ax.set_ylabel(LABELS[y])
    ax.legend(fontsize=10, loc="center left", bbox_to_anchor=(1.02, 0.5))
    fig.tight_layout()
    return fig


def plot_readme(frame: pd.DataFrame, *, methods=ORIGINAL_METHODS):
    """On-manifold success against N beside the README's curves (dashed, open
    markers): ours under the original's protocol (left) and under ours (right);
    models near chance left out, as in
    :func:`~advmanifold.chapters.generalization_results.anchor_table`."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    palette = _palette()
    panels = (
        ("onmanifold_success_original", "ours, original protocol"),
        ("onmanifold_success", "ours, worst case over restarts"),
    )
    fig, axes = plt.subplots(1, 2, figsize=(11.0, 4.0), sharey=True)
    data = frame[frame.method.isin(methods) & learned(frame)]
    for i, (ax, (measure, title)) in enumerate(zip(axes, panels)):
        if data[measure].notna().any():
            sns.lineplot(
                data=data, x="n", y=measure, hue="method", hue_order=methods,
                palette=palette, marker="o", errorbar="sd", ax=ax, legend=False,
            )
        for method in methods:
            readme = ANCHOR.get(method, {})
            ax.plot(
                list(readme), list(readme.values()), ls="--", marker="o",
                mfc="none", color=palette[method], label=method if i else None,
            )
        ax.set_xscale("log")
        ax.set_title(title)
        ax.set_xlabel("training images N (log scale)")
        ax.set_ylabel("on-manifold success rate (ε = 0.3 in θ)")
        ax.set_ylim(-0.02, 1.02)
    axes[1].legend(
        title="dashed: README", loc="center left", bbox_to_anchor=(1.02, 0.5)
    )
    fig.tight_layout()
    return fig
