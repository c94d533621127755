"""The FONTS chapter's figures (``notebooks/01_fonts``): the decoder's parameters and
random draws, adversarial examples, and the distances to the manifold."""

from __future__ import annotations

import torch
from torch import Tensor

from ..science import decoders, glyphs
from ..book import figures
from .fonts import RANGES

# Figures are at most 10 in wide with text of at least 10 pt, so that their text
# stays at 8 pt or more at the book's content width (about 750 px).

THETA_LABELS = ("$t_x$", "$t_y$", r"$\lambda_x$", r"$\lambda_y$", "$s$", "$r$")
SET_ORDER = ("test", "on-manifold adversarial", "regular adversarial")


def style() -> None:
    """The book's seaborn theme (:func:`advmanifold.book.figures.style`)."""
    figures.style()


def _image(ax, image: Tensor) -> None:
    ax.imshow(image.detach().cpu(), cmap="gray", vmin=0, vmax=1)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.grid(False)


def _short(name: str, width: int = 16) -> str:
    return name if len(name) <= width else name[: width - 1] + "…"


def _row_label(ax, name: str) -> None:
    """A horizontal label left of an image row: family and style on two lines."""
    words = name.split()
    half = (len(words) + 1) // 2
    text = "\n".join(
        _short(" ".join(part), 14) for part in (words[:half], words[half:]) if part
    )
    ax.set_ylabel(text, rotation=0, ha="right", va="center", fontsize=12, labelpad=6)


def plot_decoder_parameters(
    decoder: decoders.FontDecoder, font: list[int], letter: list[int], names: list[str]
):
    """One row per parameter of θ; for each (font, letter): the parameter at the lower
    end of its range, the prototype (identity θ), the upper end (others at identity)."""
    import matplotlib.pyplot as plt

    lower, upper = decoders.theta_box(RANGES)
    thetas = []
    for i in range(6):
        for value in (lower[i], None, upper[i]):
            theta = decoders.IDENTITY.clone()
            if value is not None:
                theta[i] = value
            thetas.append(theta)
    thetas = torch.stack(thetas)  # [18, 6]
    n = len(font)
    f = torch.tensor(font).repeat_interleave(len(thetas))
    y = torch.tensor(letter).repeat_interleave(len(thetas))
    with torch.no_grad():
        images = decoder(f, y, thetas.repeat(n, 1)).view(n, 6, 3, 28, 28).cpu()
    fig, axes = plt.subplots(
        6, 3 * n, figsize=(1.2 * 3 * n + 1.6, 1.2 * 6 + 0.9), squeeze=False
    )
    for row in range(6):
        for k in range(n):
            for j in range(3):
                ax = axes[row, 3 * k + j]
                _image(ax, images[k, row, j])
                if row == 0:
                    ax.set_title(("lower", "prototype", "upper")[j], fontsize=12)
        bounds = f"[{lower[row]:.2f}, {upper[row]:.2f}]"
        axes[row, 0].set_ylabel(f"{THETA_LABELS[row]}\n{bounds}", fontsize=12)
    for k in range(n):
        name = _short(names[font[k]], 18)
        axes[0, 3 * k + 1].set_title(f"{name}\nprototype", fontsize=12)
    fig.tight_layout(h_pad=0.3, w_pad=0.3)
    return fig


def plot_decoder_random(
    decoder: decoders.FontDecoder,
    font: list[int],
    letter: list[int],
    names: list[str],
    n_theta: int = 5,
    seed: int = 0,
):
    """Prototypes (left column), each under ``n_theta`` random θ of the data ranges."""
    import matplotlib.pyplot as plt

    n = len(font)
    generator = torch.Generator().manual_seed(seed)
    theta = decoders.sample_theta(n * n_theta, RANGES, generator)
    theta = torch.cat([decoders.IDENTITY.expand(n, 1, 6), theta.view(n, n_theta, 6)], 1)
    cols = n_theta + 1
    f = torch.tensor(font).repeat_interleave(cols)
    y = torch.tensor(letter).repeat_interleave(cols)
    with torch.no_grad():
        images = decoder(f, y, theta.reshape(-1, 6)).view(n, cols, 28, 28).cpu()
    fig, axes = plt.subplots(
        n, cols, figsize=(1.2 * cols + 1.9, 1.2 * n + 0.5), squeeze=False
    )
    for r in range(n):
        for c in range(cols):
            _image(axes[r, c], images[r, c])
            if r == 0:
                title = "prototype" if c == 0 else f"random θ {c}"
                axes[r, c].set_title(title, fontsize=12)
        _row_label(axes[r, 0], names[font[r]])
    fig.tight_layout(h_pad=0.3, w_pad=0.3)
    return fig


def plot_examples(rows: list[tuple[str, Tensor, Tensor]], show: Tensor):
    """Rows of images (label, images ``[N, 1, 28, 28]``, predicted letters ``[N]``) at
    the indices ``show``, each titled with its prediction."""
    import matplotlib.pyplot as plt

    cols = max(len(show), 1)
    size = (1.0 * cols + 1.6, 1.6 * len(rows))
    fig, axes = plt.subplots(len(rows), cols, figsize=size, squeeze=False)
    for r, (label, images, predicted) in enumerate(rows):
        for c, i in enumerate(show.tolist()):
            _image(axes[r, c], images[i, 0])
            axes[r, c].set_title(f"→ {glyphs.LETTERS[predicted[i]]}", fontsize=13)
        for c in range(len(show), cols):
            axes[r, c].axis("off")
        axes[r, 0].set_ylabel(label.replace(" ", "\n", 1), fontsize=13)
    fig.tight_layout(h_pad=0.8, w_pad=0.3)
    return fig


def plot_distances(distances):
    """a) histograms of the distance to the manifold per set; b) distance vs ‖δ‖₂."""
    import matplotlib.pyplot as plt
    import numpy as np
    import seaborn as sns

    palette = dict(zip(SET_ORDER, sns.color_palette("colorblind", 3)))
    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(9, 4.2))
    bins = np.linspace(0, max(distances.distance.max(), 1e-3) * 1.02, 40)
    for name in SET_ORDER:
        part = distances[distances.set == name]
        if len(part):
            ax0.hist(
                part.distance,
                bins=bins,
                alpha=0.6,
                color=palette[name],
                label=f"{name} (n = {len(part)})",
            )
    ax0.set_xlabel("distance to the manifold ‖x̃ − π(x̃)‖₂\n(pixel values in [0, 1])")
    ax0.set_ylabel("number of examples")
    ax0.set_yscale("log")
    ax0.legend(fontsize=11, loc="upper right")
    ax0.set_title("a) distance found by the latent search", fontsize=12)
    adv = distances[distances.set != "test"]
    sns.scatterplot(
        data=adv,
        x="delta_l2",
        y="distance",
        hue="set",
        palette=palette,
        s=14,
        ax=ax1,
        legend=False,
    )
    top = max(adv.delta_l2.max(), 1e-3) if len(adv) else 1.0
    ax1.plot([0, top], [0, top], color="grey", lw=1, ls="--", label="distance = ‖δ‖₂")
    ax1.set_xlabel("size of the perturbation ‖δ‖₂ = ‖x̃ − x‖₂")
    ax1.set_ylabel("distance to the manifold")
    ax1.legend(fontsize=11, loc="upper left")
    ax1.set_title("b) distance against ‖δ‖₂", fontsize=12)
    fig.tight_layout()
    return fig
