"""Projected MNIST and the four models of Geyer et al., trained once and cached.

- :func:`load` builds PMNIST: PCA (k = 28) on the full MNIST training set, every image
  replaced by its projection (see :mod:`advmanifold.manifolds.linear`).
- :func:`train_models` trains (or loads from the cache) the four MLPs 784-1568-1568-10:

  ================  ==========================================================
  ``baseline``       cross-entropy
  ``robust``         adversarial training, L∞ PGD, ε = 0.1 (no box, see ``ATTACK_BOX``)
  ``manifold``       cross-entropy + α · ‖∇ₓ‖/‖P_M ∇ₓ‖ (double backprop, one forward pass)
  ``manifold_robust`` adversarial training + the same alignment term (on the clean batch)
  ================  ==========================================================

Settings per profile live in :data:`TRAINING`, so every chapter that reuses the models
(the PMNIST chapter, the bridge chapter) gets the same cache entries:
``train_models(profiles.select(profile, pmnist.TRAINING), pmnist.load(...))``.
Everything but k = 28, the architecture and ε = 0.1 is our choice (the paper is silent).

Seeds: a chapter trains every model for the seeds :func:`seeds` gives (``seed, seed + 1,
…``; how many per profile in :data:`N_SEEDS`), each through the same cache, and reports a
metric as its mean and sample standard deviation over seeds (:func:`mean_std`).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any, Mapping

import torch
from torch import Tensor

from . import alignment, cache, data, models, training
from .manifolds.linear import ATTACK_BOX, LinearManifold

MODELS = ("baseline", "robust", "manifold", "manifold_robust")
NAMES = {"baseline": "Baseline", "robust": "Robust", "manifold": "Manifold", "manifold_robust": "Manifold Robust"}

#: Training settings per profile. n_train: first n MNIST training images (None: all 60,000).
#: ``quick`` is sized so that all four models for two seeds train in about six minutes of
#: one CPU core (about 5 ms per training image and epoch for the four together).
TRAINING: dict[str, dict[str, Any]] = {
    "smoke": dict(pca_mode="global", k=28, center=False, n_train=512, epochs=1, batch_size=128, lr=1e-3,
                  alpha=1.0, adv_eps=0.1, adv_steps=3),
    "quick": dict(pca_mode="global", k=28, center=False, n_train=12_000, epochs=3, batch_size=128, lr=1e-3,
                  alpha=1.0, adv_eps=0.1, adv_steps=5),
    "paper": dict(pca_mode="global", k=28, center=False, n_train=None, epochs=20, batch_size=128, lr=1e-3,
                  alpha=1.0, adv_eps=0.1, adv_steps=10),
}
TRAINING_KEYS = tuple(TRAINING["paper"])

#: Training seeds per profile (our choice): enough in ``paper`` for a standard error, two
#: elsewhere so that a spread exists at all. Not part of :data:`TRAINING`, so that a
#: model's cache key depends on its own seed only.
N_SEEDS: dict[str, int] = {"smoke": 2, "quick": 2, "paper": 5}


@dataclass
class PMNIST:
    """Projected MNIST: the manifold, projected train/test images, labels and the originals."""

    manifold: LinearManifold
    x_train: Tensor
    y_train: Tensor
    x_test: Tensor
    y_test: Tensor
    mnist_test: Tensor  # the original test images, for figures


def _get(settings: Any, key: str):
    if isinstance(settings, Mapping):
        return settings[key]
    return getattr(settings, key)


def training_settings(settings: Any) -> dict[str, Any]:
    """The entries of :data:`TRAINING` read from a namespace or mapping (extra keys ignored)."""
    try:
        return {k: _get(settings, k) for k in TRAINING_KEYS}
    except (KeyError, AttributeError) as err:
        raise ValueError(f"settings lack {err}; needed: {TRAINING_KEYS}") from err


def load(settings: Any, data_dir: str | os.PathLike | None = None) -> PMNIST:
    """PMNIST for the settings' ``pca_mode``, ``k``, ``center`` and ``n_train``.

    The PCA is fitted on all 60,000 training images whatever ``n_train`` (the manifold
    is part of the dataset's definition); the fit is cached. Per-class mode projects
    each image, test images included, onto the subspace of its true label.
    """
    s = training_settings(settings)
    x_all, y_all = data.load_mnist(True, data_dir)
    x_test, y_test = data.load_mnist(False, data_dir)
    config = {"what": "pmnist-pca", "k": s["k"], "mode": s["pca_mode"], "center": s["center"],
              "data": cache.fingerprint(x_all, y_all)}
    state = cache.cached("pmnist-pca", config, lambda: LinearManifold.fit(
        x_all, y_all, k=s["k"], mode=s["pca_mode"], center=s["center"]).state())
    manifold = LinearManifold.from_state(state)
    n = s["n_train"]
    if n is not None and (int(n) != n or not 1 <= n <= len(x_all)):
        raise ValueError(f"n_train must be None or an integer in [1, {len(x_all)}], got {n!r}")
    x_train, y_train = (x_all, y_all) if n is None else (x_all[:n], y_all[:n])
    per_class = manifold.mode == "per_class"
    with torch.no_grad():
        px_train = manifold.project(x_train, y_train if per_class else None)
        px_test = manifold.project(x_test, y_test if per_class else None)
    return PMNIST(manifold, px_train, y_train, px_test, y_test, x_test)


def objective(name: str, manifold: LinearManifold, settings: Any) -> training.Objective:
    """The training objective of one of :data:`MODELS`."""
    s = training_settings(settings)
    lower, upper = ATTACK_BOX
    adv = lambda: training.adversarial(s["adv_eps"], s["adv_steps"], lower=lower, upper=upper)  # noqa: E731
    align = lambda: alignment.alignment_penalty(manifold, s["alpha"])  # noqa: E731
    table = {"baseline": training.cross_entropy,
             "robust": adv,
             "manifold": lambda: alignment.aligned_cross_entropy(manifold, s["alpha"]),  # one forward pass
             "manifold_robust": lambda: training.combined(adv(), align())}
    if name not in table:
        raise ValueError(f"model name must be one of {MODELS}, got {name!r}")
    return table[name]()


def train_models(settings: Any, pmnist: PMNIST, *, names=MODELS, seed: int = 0,
                 progress: bool = True) -> dict[str, models.MLP]:
    """Train (or load from the cache ``pmnist-mlp-<name>``) the requested models, in eval mode."""
    s = training_settings(settings)
    unknown = [n for n in names if n not in MODELS]
    if unknown:
        raise ValueError(f"names must be among {MODELS}, got {unknown}")
    data_key = cache.fingerprint(pmnist.x_train, pmnist.y_train, pmnist.manifold.bases)
    out = {}
    for name in names:
        config = {"model": name, "arch": [784, 1568, 1568, 10], "seed": seed, "data": data_key,
                  **{k: v for k, v in s.items() if k != "n_train"}, "n_train": len(pmnist.x_train)}

        def build(name=name):
            torch.manual_seed(seed)
            model = models.MLP()
            training.train(model, pmnist.x_train, pmnist.y_train, objective(name, pmnist.manifold, s),
                           epochs=s["epochs"], batch_size=s["batch_size"], lr=s["lr"], seed=seed,
                           desc=f"PMNIST {NAMES[name]}", progress=progress)
            return model.state_dict()

        model = models.MLP()
        model.load_state_dict(cache.cached(f"pmnist-mlp-{name.replace('_', '-')}", config, build))
        model.eval()
        out[name] = model
    return out


def load_models(settings: Any, data_dir: str | os.PathLike | None = None, **kwargs) -> tuple[PMNIST, dict]:
    """PMNIST and its four models for a settings object (e.g. ``profiles.select(p, TRAINING)``)."""
    pmnist = load(settings, data_dir)
    return pmnist, train_models(settings, pmnist, **kwargs)


def targeted(forward, target: int):
    """A two-logit view of ``forward`` for a *targeted* attack with the shared untargeted PGD.

    u(x) = (LSE_{j≠t} z_j, z_t) with label 0: CE(u, 0) = log(1 + e^{z_t − LSE_{j≠t} z_j})
    grows as class t gains, and u is "misclassified" exactly when z_t > LSE_{j≠t} z_j,
    which implies argmax z = t. Call ``attacks.pgd(targeted(model, t), x, zeros, ...)``.
    """
    def forward_t(x: Tensor) -> Tensor:
        z = forward(x)
        others = torch.cat([z[:, :target], z[:, target + 1:]], dim=1)
        return torch.stack([others.logsumexp(1), z[:, target]], dim=1)

    return forward_t


def seeds(n_seeds: int, seed: int = 0) -> list[int]:
    """The training seeds ``seed, seed + 1, …, seed + n_seeds − 1``."""
    if isinstance(n_seeds, bool) or int(n_seeds) != n_seeds or n_seeds < 1:
        raise ValueError(f"n_seeds must be an integer >= 1, got {n_seeds!r}")
    if isinstance(seed, bool) or int(seed) != seed:
        raise ValueError(f"seed must be an integer, got {seed!r}")
    return list(range(int(seed), int(seed) + int(n_seeds)))


def train_seeds(settings: Any, pmnist: PMNIST, seed_list, *, names=MODELS,
                progress: bool = True) -> dict[int, dict[str, models.MLP]]:
    """:func:`train_models` for each seed of ``seed_list``: ``{seed: {name: model}}``."""
    return {int(s): train_models(settings, pmnist, names=names, seed=int(s), progress=progress) for s in seed_list}


def mean_std(values) -> tuple[float, float]:
    """Mean x̄ and sample standard deviation s = √(Σ (xᵢ − x̄)² / (n − 1)) of per-seed values.

    s is reported as 0 for a single value (no spread measured); NaN values are an error.
    """
    v = torch.as_tensor(list(values) if not isinstance(values, Tensor) else values, dtype=torch.float64).flatten()
    if len(v) == 0:
        raise ValueError("values must hold at least one number")
    if not torch.isfinite(v).all():
        raise ValueError(f"values must be finite, got {v.tolist()}")
    return float(v.mean()), float(v.std(correction=1)) if len(v) > 1 else 0.0


def settings(profile: str, **overrides) -> SimpleNamespace:
    """``profiles.select(profile, TRAINING, **overrides)``."""
    from .profiles import select

    return select(profile, TRAINING, **overrides)
