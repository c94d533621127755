"""The MNIST chapter: settings per profile, its units, and its figures.

Units (each one cache entry, see :mod:`advmanifold.book.units`):

- ``convnet-mnist``: the ConvNet classifier of Stutz et al. trained on MNIST;
- ``vaegans-mnist``: the ten class-specific VAE-GANs
  (:mod:`advmanifold.science.generative`).

Both are keyed by their settings and a fingerprint of the training images they see, so
the notebook, the planner and a Dask worker all build the same entries. Everything else
the chapter does (encoding the test set, the attacks, the k-NN distances) takes seconds
to a few minutes and runs in the notebook.
"""

from __future__ import annotations

import functools
import math
from types import SimpleNamespace
from typing import Any, Mapping

import torch
from torch import Tensor

from ..book import cache, figures, profiles
from ..book.profiles import Setting, integer, number, optional
from ..science import generative, models, training, vaegan_training
from ..science.data import load_mnist
from ..book.units import Unit

STEM = "02_mnist"

EPS = 0.3  # image-space L∞ radius of regular adversarial examples
ETA = 0.3  # latent L∞ radius of on-manifold adversarial examples
Z_BOUND = 2.0  # validity bound on the latent code's L∞ norm

CLASSIFIER = dict(lr=0.01, lr_decay=0.95, weight_decay=1e-4, batch_size=100)
"""The original ConvNet training (Adam), all profiles."""

VAEGAN = dict(
    lr=0.005,
    lr_decay=0.9,
    weight_decay=1e-4,
    gamma=1.0,
    betas=list(generative.BETAS),
    latent=generative.LATENT,
)
"""The original VAE-GAN optimisation, all profiles (batch size, epochs per profile)."""

TABLE: dict[str, dict[str, Any]] = {
    # smoke: only checks the code path on tiny subsets
    "smoke": dict(
        n_train=2000,
        classifier_epochs=1,
        vaegan_per_class=24,
        vaegan_batch=8,
        vaegan_epochs=1,
        n_test=40,
        n_onmanifold=60,
        attempts=2,
        restarts=1,
        steps=10,
        k=50,
        n_recon=200,
        verify_n=32,
        verify_steps=5,
        verify_strong=10,
        verify_restarts=1,
        verify_targets=2,
        verify_small_eps=0.1,
    ),
    # quick (ours): full MNIST for the classifier and the k-NN search; the VAE-GANs see
    # the first 400 images of each digit, in batches of 32; the on-manifold attack runs
    # on enough test images that 300 or more successes enter the histogram (measured:
    # about 0.09 successes per image and attempt with these models)
    "quick": dict(
        n_train=60000,
        classifier_epochs=2,
        vaegan_per_class=400,
        vaegan_batch=32,
        vaegan_epochs=10,
        n_test=1000,
        n_onmanifold=2000,
        attempts=5,
        restarts=2,
        steps=40,
        k=50,
        n_recon=2000,
        verify_n=300,
        verify_steps=40,
        verify_strong=100,
        verify_restarts=2,
        verify_targets=9,
        verify_small_eps=0.1,
    ),
    # paper: the original settings (VAE-GAN batch 100, 30 epochs; 2,500 test images
    # with 5 attempts each for the on-manifold attack; 1,000 for the regular one)
    "paper": dict(
        n_train=60000,
        classifier_epochs=20,
        vaegan_per_class=None,
        vaegan_batch=100,
        vaegan_epochs=30,
        n_test=1000,
        n_onmanifold=2500,
        attempts=5,
        restarts=5,
        steps=40,
        k=50,
        n_recon=2000,
        verify_n=1000,
        verify_steps=40,
        verify_strong=200,
        verify_restarts=5,
        verify_targets=9,
        verify_small_eps=0.1,
    ),
}

#: measured here (2 cores): ConvNet training per image and epoch (FONTS chapter)
SECONDS_PER_IMAGE_EPOCH = 7.7e-5
#: VAE-GAN training per image of one class model and step. The paper run measured
#: 3.4 s per step of 10 × 100 images on one thread with the 2 cores loaded 1.5× (about
#: 2.3 s on a whole core); 1.5e-3 assumes both cores of a quiet machine.
SECONDS_PER_VAEGAN_IMAGE_STEP = 1.5e-3


#: The chapter's settings (:class:`advmanifold.book.profiles.Settings`):
#: ``settings(profile, **overrides)``, ``settings.from_params(profile, params)``.
settings = profiles.Settings(
    TABLE,
    Setting("n_train", integer(1, 60_000)),  # first n MNIST training images
    Setting("classifier_epochs", integer(1), overridable=True),
    Setting("vaegan_per_class", optional(integer(1))),  # None: every image
    Setting("vaegan_batch", integer(1)),
    Setting("vaegan_epochs", integer(1), overridable=True),
    Setting("n_test", integer(1), overridable=True),
    Setting("n_onmanifold", integer(1), overridable=True),
    Setting("attempts", integer(1), overridable=True),
    Setting("restarts", integer(1), overridable=True),
    Setting("steps", integer(1)),
    Setting("k", integer(1)),
    Setting("n_recon", integer(1)),
    Setting("verify_n", integer(1)),
    Setting("verify_steps", integer(1)),
    Setting("verify_strong", integer(1)),
    Setting("verify_restarts", integer(1)),
    Setting("verify_targets", integer(1, 9)),  # other classes of ten
    Setting("verify_small_eps", number(gt=0)),
)


@functools.lru_cache(maxsize=4)
def _train_set(n_train: int, data_dir) -> tuple[Tensor, Tensor, str]:
    """The first ``n_train`` MNIST training images, labels and their fingerprint."""
    x, y = load_mnist(True, data_dir=data_dir, limit=n_train)
    return x, y, cache.fingerprint(x, y)


def train_set(S: SimpleNamespace, data_dir=None) -> tuple[Tensor, Tensor]:
    x, y, _ = _train_set(S.n_train, None if data_dir is None else str(data_dir))
    return x, y


def vaegan_subset(y: Tensor, per_class: int | None) -> Tensor:
    """Indices (sorted) of the first ``per_class`` images of each digit (None: all)."""
    if per_class is None:
        return torch.arange(len(y))
    order = torch.argsort(y, stable=True)
    counts = torch.bincount(y, minlength=10)
    starts = torch.cumsum(counts, 0) - counts
    rank = torch.arange(len(order)) - starts[y[order]]
    return order[rank < per_class].sort().values


# ---------------------------------------------------------------------------- units


def train_classifier(
    S: SimpleNamespace, seed: int, data_dir=None, device: str = "cpu"
) -> dict[str, Tensor]:
    """Build of ``convnet-mnist``: the ConvNet's state dict (CPU tensors)."""
    x, y = train_set(S, data_dir)
    torch.manual_seed(seed)
    net = models.ConvNet().to(device)
    training.train(
        net,
        x.to(device),
        y.to(device),
        training.cross_entropy(),
        epochs=S.classifier_epochs,
        seed=seed,
        desc="ConvNet on MNIST",
        **CLASSIFIER,
    )
    return {k: v.cpu() for k, v in net.state_dict().items()}


def train_vaegans(
    S: SimpleNamespace, seed: int, data_dir=None, device: str = "cpu"
) -> dict[str, Any]:
    """Build of ``vaegans-mnist``: ``{"state", "history"}`` of the ten VAE-GANs."""
    x, y = train_set(S, data_dir)
    idx = vaegan_subset(y, S.vaegan_per_class)
    model, history = vaegan_training.train_vaegans(
        x[idx].to(device),
        y[idx].to(device),
        epochs=S.vaegan_epochs,
        batch_size=S.vaegan_batch,
        seed=seed,
        strategy="sequential",
        **VAEGAN,
    )
    return {
        "state": {k: v.cpu() for k, v in model.state_dict().items()},
        "history": history,
    }


def classifier_unit(
    S: SimpleNamespace, *, seed: int = 0, data_dir=None, device: str = "cpu"
) -> Unit:
    _, _, data = _train_set(S.n_train, None if data_dir is None else str(data_dir))
    config = {
        "model": "ConvNet",
        "epochs": S.classifier_epochs,
        **CLASSIFIER,
        "seed": seed,
        "data": data,
    }
    estimate = SECONDS_PER_IMAGE_EPOCH * S.n_train * S.classifier_epochs + 2.0
    build = functools.partial(train_classifier, S, seed, data_dir, device)
    return Unit(STEM, "convnet-mnist", config, build, estimate_s=estimate)


def vaegans_unit(
    S: SimpleNamespace, *, seed: int = 0, data_dir=None, device: str = "cpu"
) -> Unit:
    x, y, data = _train_set(S.n_train, None if data_dir is None else str(data_dir))
    counts = torch.bincount(y[vaegan_subset(y, S.vaegan_per_class)], minlength=10)
    # the sequential strategy on every device, so that the entry does not depend on it
    config = {
        "model": "vaegans-v2",
        "loss": "sum",
        "lr_schedule": "per-batch",
        "strategy": "sequential",
        "epochs": S.vaegan_epochs,
        "batch_size": S.vaegan_batch,
        "per_class": S.vaegan_per_class,
        **VAEGAN,
        "seed": seed,
        "data": data,
    }
    steps = math.ceil(counts.max().item() / S.vaegan_batch) * S.vaegan_epochs
    estimate = SECONDS_PER_VAEGAN_IMAGE_STEP * steps * S.vaegan_batch * 10 + 2.0
    build = functools.partial(train_vaegans, S, seed, data_dir, device)
    return Unit(STEM, "vaegans-mnist", config, build, estimate_s=estimate)


def units(profile: str, params: Mapping[str, Any]) -> list[Unit]:
    """The chapter's units for ``profile`` and notebook parameters ``params``."""
    S = settings.from_params(profile, params)
    kwargs = dict(
        seed=int(params.get("seed") or 0),
        data_dir=params.get("data_dir"),
        device=params.get("device") or "cpu",
    )
    return [classifier_unit(S, **kwargs), vaegans_unit(S, **kwargs)]


def classifier(unit: Unit, device: str = "cpu") -> models.ConvNet:
    """The trained ConvNet of a ``convnet-mnist`` unit, in eval mode, weights frozen."""
    net = models.ConvNet()
    net.load_state_dict(unit.get())
    return models.freeze(net.to(device))


def vaegans(unit: Unit, device: str = "cpu") -> tuple[generative.VAEGANs, list[dict]]:
    """The trained VAE-GANs of a ``vaegans-mnist`` unit (eval mode), their history."""
    payload = unit.get()
    return generative.vaegans_from_payload(payload, device), payload["history"]


def prior_linf_above(bound: float = Z_BOUND, latent: int = generative.LATENT) -> float:
    """P(‖z‖∞ > bound) for z ~ N(0, I_latent): 1 − erf(bound / √2)^latent."""
    return 1.0 - math.erf(bound / math.sqrt(2.0)) ** latent


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


# ---------------------------------------------------------------------------- figures
# At most 10 in wide with text of at least 10 pt, so that it stays at 8 pt or more at
# the book's content width (about 750 px).

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
