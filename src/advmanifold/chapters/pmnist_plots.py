"""Figures of the PMNIST chapter (Geyer et al., Figs. 1-4), from the chapter's tables.

Every function returns a matplotlib figure at most 10 in wide with seaborn's
"notebook" fonts (10-12 pt), so its text stays legible at the book's content width;
:func:`save` writes it next to the book and glues it for the prose.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
import torch

from ..science import boundaries, models
from ..book import figures
from .pmnist import MODELS, NAMES

ORDER = [NAMES[m] for m in MODELS]


def style() -> dict[str, tuple]:
    """Set the book's theme; the colour of each model's display name."""
    figures.style()
    return dict(zip(ORDER, sns.color_palette("colorblind", len(ORDER))))


def images(mnist: torch.Tensor, projected: torch.Tensor, y: torch.Tensor):
    """One test image per digit: MNIST (top row) and PMNIST (bottom row)."""
    fig, axes = plt.subplots(2, 10, figsize=(10, 2.5))
    picks = [int((y == c).nonzero()[0]) for c in range(10)]
    for j, i in enumerate(picks):
        axes[0, j].imshow(mnist[i, 0], cmap="gray", vmin=0, vmax=1)
        axes[1, j].imshow(projected[i, 0].cpu(), cmap="gray", vmin=0, vmax=1)
    for ax in axes.flat:
        ax.set_xticks([]), ax.set_yticks([])
    axes[0, 0].set_ylabel("MNIST")
    axes[1, 0].set_ylabel("PMNIST")
    fig.tight_layout()
    return fig


def alignment(align: pd.DataFrame, medians: pd.DataFrame, colors: dict):
    """Histograms of the gradient-manifold cosine (pooled over seeds; ticks: each
    seed's median) and each seed's median with the mean ± std over seeds."""
    fig, (ax, ax2) = plt.subplots(
        1, 2, figsize=(10, 3.8), gridspec_kw=dict(width_ratios=[2, 1])
    )
    sns.histplot(
        align,
        x="cosine",
        hue="model",
        hue_order=ORDER,
        bins=np.linspace(0, 1, 51),
        element="step",
        fill=False,
        stat="density",
        common_norm=False,
        palette=colors,
        ax=ax,
    )
    for r in medians.itertuples():
        ax.axvline(r.cosine, ymin=0.9, ymax=1.0, color=colors[r.model], lw=1.5)
    ax.set_xlabel("cosine of gradient and manifold, ‖P g‖ / ‖g‖")
    ax.set_ylabel("density (seeds pooled)")
    ax.set_xlim(0, 1)
    for i, name in enumerate(ORDER):
        vals = medians[medians.model == name].cosine.to_numpy()
        ax2.scatter(vals, np.full(len(vals), i), color=colors[name], alpha=0.6, s=25)
        ax2.errorbar(
            vals.mean(),
            i,
            xerr=vals.std(ddof=1) if len(vals) > 1 else 0,
            color="black",
            marker="D",
            ms=5,
            capsize=3,
        )
    ax2.set_yticks(range(len(ORDER)), ORDER)
    ax2.invert_yaxis()
    ax2.set_xlabel("median cosine per seed")
    fig.tight_layout()
    return fig


def robustness(curves: pd.DataFrame, colors: dict):
    """Accuracy against ε under FGSM and PGD: mean over seeds ± one std."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), sharey=True)
    for ax, attack in zip(axes, ("FGSM", "PGD")):
        sns.lineplot(
            curves[curves.attack == attack],
            x="eps",
            y="accuracy",
            hue="model",
            hue_order=ORDER,
            marker="o",
            errorbar="sd",
            palette=colors,
            ax=ax,
            legend=attack == "PGD",
        )
        ax.axvline(0.1, color="grey", lw=0.8, ls=":")
        ax.set_title(attack)
        ax.set_xlabel("L∞ budget ε (pixels in [0, 1])")
        ax.set_ylabel("robust accuracy")
        ax.set_ylim(0, 1)
    fig.tight_layout()
    return fig


def crossings(cross: pd.DataFrame, medians: pd.DataFrame, colors: dict):
    """Violins of the path-boundary angle per model, one panel per path."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.2), sharey=True)
    for ax, path in zip(axes, ("to adversarial", "to other digit")):
        sns.violinplot(
            cross[cross.path == path],
            x="model",
            y="angle_deg",
            hue="model",
            cut=0,
            order=ORDER,
            hue_order=ORDER,
            palette=colors,
            inner="quartile",
            ax=ax,
            legend=False,
        )
        sns.stripplot(
            medians[medians.path == path],
            x="model",
            y="angle_deg",
            order=ORDER,
            color="black",
            marker="D",
            size=5,
            jitter=0.12,
            ax=ax,
        )
        ax.set_title(f"path {path}")
        ax.set_xlabel("")
        ax.set_ylabel("path-boundary angle (degrees)")
        ax.set_ylim(0, 90)
        ax.set_xticks(range(len(ORDER)), [n.replace(" ", "\n") for n in ORDER])
    fig.tight_layout()
    return fig


def path_example(nets: dict, x0: torch.Tensor, x1: torch.Tensor, colors: dict):
    """Predicted class along the straight path x0 → x1 per model (2 × 2 panels), with
    the first class change found by bisection and its angle."""
    ts = torch.linspace(0, 1, 201, device=x0.device)
    path = x0 + ts.view(-1, 1, 1, 1) * (x1 - x0)
    fig, axes = plt.subplots(2, 2, figsize=(10, 5), sharex=True, sharey=True)
    for ax, (m, net) in zip(axes.flat, nets.items()):
        ax.step(
            ts.cpu(),
            models.predict(net, path).cpu(),
            where="mid",
            color=colors[NAMES[m]],
        )
        one = boundaries.crossing(net, x0, x1)
        title = NAMES[m]
        if one.valid[0]:
            ax.axvline(float(one.t[0]), color="black", lw=1)
            title += f": {float(one.angle_deg[0]):.0f}° at t = {float(one.t[0]):.2f}"
        ax.set_title(title)
        ax.set_yticks(range(10))
    for ax in axes[1]:
        ax.set_xlabel("t along the path")
    for ax in axes[:, 0]:
        ax.set_ylabel("predicted class")
    fig.tight_layout()
    return fig


def two_to_three(x2: torch.Tensor, adversarial: dict, nets: dict):
    """Original, midpoint and attacked image per model (rows), with predictions."""
    fig, axes = plt.subplots(len(adversarial), 3, figsize=(6.5, 2.4 * len(adversarial)))
    for row, (m, adv) in enumerate(adversarial.items()):
        panels = ((x2, "original"), ((x2 + adv) / 2, "midpoint"), (adv, "attacked"))
        for col, (img, title) in enumerate(panels):
            pred = int(models.predict(nets[m], img)[0])
            axes[row, col].imshow(img[0, 0].cpu(), cmap="gray", vmin=0, vmax=1)
            axes[row, col].set_title(f"{title}: {pred}")
            axes[row, col].set_xticks([]), axes[row, col].set_yticks([])
        axes[row, 0].set_ylabel(NAMES[m])
    fig.tight_layout()
    return fig
