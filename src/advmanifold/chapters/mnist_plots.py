"""The MNIST chapter's figures and tables (:mod:`advmanifold.chapters.mnist` has its
settings and units).

At most 10 in wide with text of at least 10 pt, so that it stays at 8 pt or more at the
book's content width (about 750 px).
"""

from __future__ import annotations

import math
from typing import Any, Mapping

from torch import Tensor

from ..book import figures
from .mnist import Z_BOUND

KIND_PALETTE = {
    "test": "tab:green",
    "on-manifold adversarial": "tab:blue",
    "regular adversarial": "tab:red",
}


def style() -> None:
    """The book's seaborn theme (:func:`advmanifold.book.figures.style`)."""
    figures.style()


def _image(ax, image: Tensor) -> None:
    ax.imshow(image.detach().cpu().reshape(28, 28), cmap="gray", vmin=0, vmax=1)
    ax.set_xticks([])
    ax.set_yticks([])


def plot_vaegan_grid(rows: list[tuple[str, Tensor]]):
    """One row per (name, images [10, 28, 28]); one column per digit."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(rows), 10, figsize=(10, 1.15 * len(rows) + 0.3))
    for r, (name, images) in enumerate(rows):
        for c in range(10):
            _image(axes[r, c], images[c])
            if r == 0:
                axes[r, c].set_title(f"digit {c}", fontsize=11)
        axes[r, 0].set_ylabel(name, rotation=0, ha="right", va="center", fontsize=11)
    fig.tight_layout()
    return fig


def plot_latent_spread(mu: Tensor, bound: float = Z_BOUND):
    """Left: the coordinates of the test encoder means against N(0, 1); right: their
    ‖μ‖∞ against that of z ~ N(0, I), with the validity bound."""
    import matplotlib.pyplot as plt
    import numpy as np
    import seaborn as sns

    mu = mu.detach().cpu().double()
    latent = mu.shape[1]
    fig, axes = plt.subplots(1, 2, figsize=(9.5, 3.4))
    t = np.linspace(-5, 5, 400)
    sns.histplot(
        mu.flatten().numpy(),
        bins=80,
        stat="density",
        element="step",
        color="tab:blue",
        label="test encoder means",
        ax=axes[0],
    )
    axes[0].plot(
        t,
        np.exp(-(t**2) / 2) / np.sqrt(2 * np.pi),
        color="black",
        lw=1.5,
        label="N(0, 1)",
    )
    axes[0].set(
        xlabel="coordinate μ_j of the encoder mean", ylabel="density", xlim=(-5, 5)
    )
    axes[0].legend(fontsize=10)
    linf = mu.abs().amax(1).numpy()
    s = np.linspace(0.01, max(5.0, float(linf.max()) * 1.02), 400)
    # density of max_j |z_j|, z ~ N(0, I): d/ds erf(s/√2)^L
    erf = np.vectorize(math.erf)(s / np.sqrt(2))
    dens = latent * erf ** (latent - 1) * np.sqrt(2 / np.pi) * np.exp(-(s**2) / 2)
    sns.histplot(
        linf,
        bins=60,
        stat="density",
        element="step",
        color="tab:blue",
        label="‖μ‖∞, test images",
        ax=axes[1],
    )
    axes[1].plot(s, dens, color="black", lw=1.5, label="‖z‖∞, z ~ N(0, I)")
    axes[1].axvline(bound, color="crimson", ls="--", lw=1.2, label=f"bound {bound:g}")
    axes[1].set(xlabel="L∞ norm of the latent code", ylabel="density")
    axes[1].legend(fontsize=10)
    fig.tight_layout()
    return fig


def plot_adversarial_grid(rows: list[tuple[str, Tensor, Tensor]], y: Tensor):
    """Rows of (name, images [n, ...], predictions [n]); wrong predictions in red."""
    import matplotlib.pyplot as plt

    n = len(y)
    fig, axes = plt.subplots(
        len(rows), n, figsize=(1.15 * n + 0.6, 1.45 * len(rows)), squeeze=False
    )
    for r, (name, images, pred) in enumerate(rows):
        for c in range(n):
            ax = axes[r, c]
            _image(ax, images[c])
            wrong = bool(pred[c] != y[c])
            ax.set_title(
                f"pred {int(pred[c])}",
                fontsize=11,
                color="crimson" if wrong else "black",
            )
        axes[r, 0].set_ylabel(name, fontsize=11)
    fig.tight_layout()
    return fig


def plot_distance_histograms(dist):
    """Distance to the k-NN subspace and angle of δ to it, per kind (densities)."""
    import matplotlib.pyplot as plt
    import numpy as np
    import seaborn as sns

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    sns.histplot(
        dist,
        x="distance",
        hue="kind",
        palette=KIND_PALETTE,
        stat="density",
        common_norm=False,
        bins=40,
        element="step",
        ax=axes[0],
    )
    axes[0].set(xlabel="distance to the k-NN subspace ‖x̃ − π(x̃)‖₂", ylabel="density")
    sns.histplot(
        dist,
        x="angle_deg",
        hue="kind",
        palette=KIND_PALETTE,
        stat="density",
        common_norm=False,
        bins=np.linspace(0, 90, 37),
        element="step",
        ax=axes[1],
        legend=False,
    )
    axes[1].set(xlabel="angle between δ and the subspace (degrees)", ylabel="density")
    fig.tight_layout()
    return fig


def plot_distance_vs_l2(dist):
    import matplotlib.pyplot as plt
    import seaborn as sns

    fig, ax = plt.subplots(figsize=(6, 4.8))
    sns.scatterplot(
        dist,
        x="delta_l2",
        y="distance",
        hue="kind",
        palette=KIND_PALETTE,
        s=10,
        alpha=0.6,
        linewidth=0,
        ax=ax,
    )
    top = float(dist[["delta_l2", "distance"]].max().max()) * 1.05
    ax.plot([0, top], [0, top], color="gray", lw=1, ls="--", label="distance = ‖δ‖₂")
    ax.set(
        xlim=(0, top),
        ylim=(0, top),
        xlabel="‖δ‖₂ (perturbation norm)",
        ylabel="distance to the k-NN subspace",
    )
    ax.legend(fontsize=10)
    fig.tight_layout()
    return fig


def verification_table(checks: Mapping[float, Any]):
    """One row per attack (and the worst case), per ε of ``checks`` ({ε: Verification}):
    the accuracy under the attack and how much it lowers the worst case over the
    cross-entropy attacks when it joins them."""
    import pandas as pd

    columns = {}
    for eps, check in checks.items():
        rows = check.lowering() + [
            {
                "attack": "worst case",
                "loss": "all",
                "accuracy": check.worst_case(),
                "lowers CE worst case by": check.margin_gain(),
            }
        ]
        frame = pd.DataFrame(rows).set_index(["attack", "loss"])
        columns[f"accuracy, ε = {eps:g}"] = frame["accuracy"]
        extra = frame["lowers CE worst case by"]
        columns[f"lowers CE worst case by, ε = {eps:g}"] = extra
    return pd.DataFrame(columns).reset_index()
