"""Projected MNIST (Geyer et al.): settings, units and measurements of its chapter.

- :func:`load` builds PMNIST: PCA (k = 28) on the full MNIST training set, every image
  replaced by its projection (see :mod:`advmanifold.science.manifolds.linear`).
- Four MLPs 784-1568-1568-10, one cached unit per (model, training seed):

  ==================  ========================================================
  ``baseline``         cross-entropy
  ``robust``           adversarial training, L∞ PGD, ε = 0.1 (no box, ``ATTACK_BOX``)
  ``manifold``         cross-entropy + α · ‖∇ₓ‖/‖P_M ∇ₓ‖ (double backprop)
  ``manifold_robust``  adversarial training + the same alignment term (clean batch)
  ==================  ========================================================

- :func:`evaluate`: every per-model measurement of the chapter (input-gradient
  alignment, FGSM/PGD robustness over ε, boundary crossings), one cached unit per
  (model, seed) too, so that :func:`units` lists all the chapter's expensive work.

Settings per profile: :data:`TRAINING` (shared with the bridge chapter, which reuses
the same model units), :data:`EVAL` and :data:`N_SEEDS`; :data:`settings` merges them.
The paper's own settings are k = 28, ε = 0.1, the architecture and the full training
set; everything else is ours (the paper is silent).

The ``paper`` profile is sized to finish in about 2 hours on the reference machine
(2 CPU cores), from the per-image rates in :data:`RATES` measured there (one torch
thread, other jobs running): the four models cost about 1.0 + 1.5 + 2.5 + 4.0 = 9 ms
per training image and epoch together (Baseline, Manifold, Robust and Manifold
Robust with 5 PGD steps; 10 steps would add 3 ms), so one seed of 3 epochs on 60,000
images takes about 27 minutes, and 3 seeds 81 minutes. The evaluation of the twelve
models (2,000 attacked images, 7 budgets, PGD-20; 1,000 crossings) adds about 20.
Three seeds are the fewest that give a standard error; 5 seeds would take about 2.7
hours, 20 epochs about 9.

Training several seeds as one batched network gave the same weights but was not
faster here (an earlier version measured, for three seeds, 12 batches of 128 and one
torch thread, time apart over time grouped of 0.68, 0.41 and 1.15 for Baseline,
Manifold and Robust): the matrix products of this MLP keep a core busy on their own.
That code was removed; each (model, seed) is its own unit, which lets Dask spread the
seeds over workers.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from typing import Any, Mapping

import torch
from torch import Tensor
from tqdm.std import tqdm

from ..science import alignment, attacks, boundaries, data, models, training
from ..book import cache
from ..science.manifolds.linear import ATTACK_BOX, MODES, LinearManifold
from ..book.profiles import (
    PROFILES,
    seeds,
    Setting,
    Settings,
    flag,
    integer,
    number,
    numbers,
    one_of,
    optional,
)
from ..book.units import Unit

STEM = "03_pmnist"
MODELS = ("baseline", "robust", "manifold", "manifold_robust")
NAMES = {
    "baseline": "Baseline",
    "robust": "Robust",
    "manifold": "Manifold",
    "manifold_robust": "Manifold Robust",
}
ARCH = (784, 1568, 1568, 10)

#: Training settings per profile. n_train: first n MNIST training images (None: all).
TRAINING: dict[str, dict[str, Any]] = {
    "smoke": dict(
        pca_mode="global",
        k=28,
        center=False,
        n_train=512,
        epochs=1,
        batch_size=128,
        lr=1e-3,
        alpha=1.0,
        adv_eps=0.1,
        adv_steps=3,
    ),
    "quick": dict(
        pca_mode="global",
        k=28,
        center=False,
        n_train=6000,
        epochs=3,
        batch_size=128,
        lr=1e-3,
        alpha=1.0,
        adv_eps=0.1,
        adv_steps=5,
    ),
    "paper": dict(
        pca_mode="global",
        k=28,
        center=False,
        n_train=None,
        epochs=3,
        batch_size=128,
        lr=1e-3,
        alpha=1.0,
        adv_eps=0.1,
        adv_steps=5,
    ),
}
TRAINING_KEYS = tuple(TRAINING["paper"])

#: Measurements per profile (all ours): test images for the alignment histograms
#: (n_align), the robustness curves (n_eval, eps_grid, pgd_steps) and the boundary
#: crossings (n_cross, cross_eps); fig_eps/fig_steps: the targeted 2 → 3 attack.
EVAL: dict[str, dict[str, Any]] = {
    "smoke": dict(
        n_align=200,
        n_eval=100,
        eps_grid=[0.05, 0.1, 0.2],
        pgd_steps=5,
        n_cross=60,
        cross_eps=0.3,
        fig_eps=0.3,
        fig_steps=20,
    ),
    "quick": dict(
        n_align=5000,
        n_eval=500,
        eps_grid=[0.02, 0.05, 0.1, 0.15, 0.2, 0.3],
        pgd_steps=20,
        n_cross=500,
        cross_eps=0.3,
        fig_eps=0.3,
        fig_steps=100,
    ),
    "paper": dict(
        n_align=10_000,
        n_eval=2000,
        eps_grid=[0.02, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3],
        pgd_steps=20,
        n_cross=1000,
        cross_eps=0.3,
        fig_eps=0.3,
        fig_steps=100,
    ),
}
EVAL_KEYS = ("n_align", "n_eval", "eps_grid", "pgd_steps", "n_cross", "cross_eps")

#: Training seeds per profile (ours): two give a spread, three a rough standard error.
N_SEEDS: dict[str, int] = {"smoke": 2, "quick": 2, "paper": 3}

SETTINGS = {p: {**TRAINING[p], **EVAL[p], "n_seeds": N_SEEDS[p]} for p in PROFILES}

#: Seconds per image on one core of the reference machine (2-core Xeon, one torch
#: thread; batches of 128 and 500): one training step of cross-entropy, of the
#: alignment loss, one PGD step (forward and input gradient), one forward pass, one
#: bisection crossing (24 forward passes and a gradient); and seconds for a unit's
#: fixed work: reading MNIST and projecting it (setup), one PCA fit (ten for
#: ``per_class``). The per-image rates were first timed by the clock with other jobs
#: running; the CPU time of a quick ``pmnist-mlp-robust`` unit (41 s against 95 s
#: estimated) and a ``bridge-verify`` unit (26 s against 77 s) scaled them by 0.43
#: (cost model 2).
RATES = dict(
    train_ce=4.3e-4,
    train_align=6.5e-4,
    pgd_step=1.3e-4,
    forward=6.5e-5,
    crossing=2.5e-3,
    setup=5.0,
    pca_fit=5.0,
)
#: The version of the cost formulas behind the units' ``estimate_s``.
COST_MODEL = 2

N_MNIST_TRAIN = 60_000


#: The chapter's settings (:class:`advmanifold.book.profiles.Settings`) from
#: :data:`SETTINGS`: ``settings(profile, **overrides)``,
#: ``settings.from_params(profile, params)``.
settings = Settings(
    SETTINGS,
    Setting("pca_mode", one_of(*MODES), overridable=True),
    Setting("k", integer(1, 784)),  # dimension of the subspace
    Setting("center", flag()),
    Setting("n_train", optional(integer(1, N_MNIST_TRAIN)), overridable=True),
    Setting("epochs", integer(1), overridable=True),
    Setting("batch_size", integer(1)),
    Setting("lr", number(gt=0)),
    Setting("alpha", number(ge=0), overridable=True),
    Setting("adv_eps", number(gt=0)),
    Setting("adv_steps", integer(1)),
    Setting("n_align", integer(1)),
    Setting("n_eval", integer(1), overridable=True),
    Setting("eps_grid", numbers(gt=0)),
    Setting("pgd_steps", integer(1)),
    Setting("n_cross", integer(1)),
    Setting("cross_eps", number(gt=0)),
    Setting("fig_eps", number(gt=0)),
    Setting("fig_steps", integer(1)),
    Setting("n_seeds", integer(1), overridable=True),
)


@dataclass
class PMNIST:
    """Projected MNIST: the manifold, projected train/test images, labels, originals."""

    manifold: LinearManifold
    x_train: Tensor
    y_train: Tensor
    x_test: Tensor
    y_test: Tensor
    mnist_test: Tensor  # the original test images, for figures

    def labels(self, y: Tensor) -> Tensor | None:
        """The labels choosing each example's subspace (None: one global subspace)."""
        return y if self.manifold.mode == "per_class" else None


def _get(settings: Any, key: str):
    if isinstance(settings, Mapping):
        return settings[key]
    return getattr(settings, key)


def training_settings(settings: Any) -> dict[str, Any]:
    """The entries of :data:`TRAINING` from a namespace or mapping (others ignored)."""
    try:
        return {k: _get(settings, k) for k in TRAINING_KEYS}
    except (KeyError, AttributeError) as err:
        raise ValueError(f"settings lack {err}; needed: {TRAINING_KEYS}") from err


def eval_settings(settings: Any) -> dict[str, Any]:
    try:
        return {k: _get(settings, k) for k in EVAL_KEYS}
    except (KeyError, AttributeError) as err:
        raise ValueError(f"settings lack {err}; needed: {EVAL_KEYS}") from err


def _data_key(data_dir) -> str | None:
    return None if data_dir is None else str(os.fspath(data_dir))


@functools.lru_cache(maxsize=2)
def _mnist(train: bool, data_dir: str | None) -> tuple[Tensor, Tensor, str]:
    """MNIST images, labels and their fingerprint (read once per process)."""
    x, y = data.load_mnist(train, data_dir)
    return x, y, cache.fingerprint(x, y)


# -- units -----------------------------------------------------------------------------
def pca_unit(settings: Any, data_dir=None, mode: str | None = None) -> Unit:
    """The PCA fit (on all 60,000 training images, whatever ``n_train``)."""
    s = training_settings(settings)
    mode = s["pca_mode"] if mode is None else mode
    *_, fingerprint = _mnist(True, _data_key(data_dir))
    config = {
        "what": "pmnist-pca",
        "k": s["k"],
        "mode": mode,
        "center": s["center"],
        "data": fingerprint,
    }
    build = functools.partial(_fit_pca, s["k"], mode, s["center"], _data_key(data_dir))
    fits = 10 if mode == "per_class" else 1
    return Unit(
        STEM,
        "pmnist-pca",
        config,
        build,
        estimate_s=RATES["setup"] + fits * RATES["pca_fit"],
    )


def _fit_pca(k: int, mode: str, center: bool, data_dir: str | None) -> dict:
    x, y, _ = _mnist(True, data_dir)
    return LinearManifold.fit(x, y, k=k, mode=mode, center=center).state()


def _n_train(s: Mapping[str, Any]) -> int:
    return N_MNIST_TRAIN if s["n_train"] is None else int(s["n_train"])


def training_seconds(name: str, s: Mapping[str, Any]) -> float:
    """Estimated seconds to train model ``name`` with settings ``s`` (:data:`RATES`)."""
    adv = RATES["train_ce"] + s["adv_steps"] * RATES["pgd_step"]
    per_image = {
        "baseline": RATES["train_ce"],
        "manifold": RATES["train_align"],
        "robust": adv,
        "manifold_robust": adv + RATES["train_align"],
    }[name]
    return RATES["setup"] + per_image * _n_train(s) * s["epochs"]


def model_unit(settings: Any, name: str, seed: int, data_dir=None) -> Unit:
    """Model ``name`` trained with ``seed``: payload its state dict.

    The configuration names the data by the PCA unit's key and ``n_train``; nothing
    needs to be projected or trained to compute it.
    """
    if name not in MODELS:
        raise ValueError(f"model name must be one of {MODELS}, got {name!r}")
    s = training_settings(settings)
    pca = pca_unit(s, data_dir)
    config = {
        "model": name,
        "arch": list(ARCH),
        "seed": int(seed),
        "data": {"pca": pca.key, "n_train": _n_train(s)},
        **{k: v for k, v in s.items() if k != "n_train"},
        "n_train": _n_train(s),
    }
    build = functools.partial(_train_model, name, int(seed), s, _data_key(data_dir))
    return Unit(
        STEM,
        f"pmnist-mlp-{name.replace('_', '-')}",
        config,
        build,
        deps=(pca,),
        estimate_s=training_seconds(name, s),
        cost_model=COST_MODEL,
    )


def _train_model(
    name: str, seed: int, s: dict, data_dir: str | None, progress: bool = True
) -> dict:
    pm = load(s, data_dir)
    torch.manual_seed(seed)
    model = models.MLP(ARCH)
    training.train(
        model,
        pm.x_train,
        pm.y_train,
        objective(name, pm.manifold, s),
        epochs=s["epochs"],
        batch_size=s["batch_size"],
        lr=s["lr"],
        seed=seed,
        desc=f"PMNIST {NAMES[name]} seed {seed}",
        progress=progress,
    )
    return model.state_dict()


def evaluation_seconds(settings: Any) -> float:
    """Estimated seconds of :func:`evaluate` of one model (no early stop assumed)."""
    e = eval_settings(settings)
    r = RATES
    return (
        r["setup"]
        + 10_000 * r["forward"]
        + e["n_align"] * 2 * r["forward"]
        + len(e["eps_grid"])
        * e["n_eval"]
        * (2 * r["forward"] + e["pgd_steps"] * r["pgd_step"])
        + e["n_cross"] * (e["pgd_steps"] * r["pgd_step"] + 2 * r["crossing"])
    )


def eval_unit(settings: Any, name: str, seed: int, data_dir=None) -> Unit:
    """:func:`evaluate` of model ``name`` of ``seed``: payload a dict of tensors."""
    model = model_unit(settings, name, seed, data_dir)
    e = eval_settings(settings)
    *_, test_fingerprint = _mnist(False, _data_key(data_dir))
    config = {
        "what": "pmnist-eval",
        "model": model.key,
        "seed": int(seed),
        "test": test_fingerprint,
        **e,
    }
    build = functools.partial(
        _evaluate_unit,
        training_settings(settings),
        e,
        name,
        int(seed),
        _data_key(data_dir),
    )
    return Unit(
        STEM,
        f"pmnist-eval-{name.replace('_', '-')}",
        config,
        build,
        deps=(model,),
        estimate_s=evaluation_seconds(e),
        cost_model=COST_MODEL,
    )


def _evaluate_unit(
    s: dict, e: dict, name: str, seed: int, data_dir: str | None
) -> dict:
    pm = load(s, data_dir)
    net = to_model(model_unit(s, name, seed, data_dir).get())
    return evaluate(net, pm, e, seed=seed)


def units(profile: str, params: Mapping[str, Any]) -> list[Unit]:
    """The chapter's units: the PCA fit (and the per-class one, for the label-leak
    check), a model and its evaluation per (model, seed)."""
    s = settings.from_params(profile, params)
    data_dir = params.get("data_dir")
    out = [pca_unit(s, data_dir, "per_class")]
    first = params.get("seed")
    for seed in seeds(s.n_seeds, 0 if first is None else first):
        out += [eval_unit(s, name, seed, data_dir) for name in MODELS]
    return out


# -- data and models -------------------------------------------------------------------
def load(settings: Any, data_dir=None) -> PMNIST:
    """PMNIST for the settings' ``pca_mode``, ``k``, ``center`` and ``n_train``.

    The PCA unit is fitted on all 60,000 training images whatever ``n_train`` (the
    manifold is part of the dataset's definition). Per-class mode projects each
    image, test images included, onto the subspace of its true label.
    """
    s = training_settings(settings)
    manifold = LinearManifold.from_state(pca_unit(s, data_dir).get())
    x_all, y_all, _ = _mnist(True, _data_key(data_dir))
    x_test, y_test, _ = _mnist(False, _data_key(data_dir))
    n = _n_train(s)
    if not 1 <= n <= len(x_all):
        raise ValueError(
            f"n_train must be None or an integer in [1, {len(x_all)}], got {n!r}"
        )
    x_train, y_train = x_all[:n], y_all[:n]
    per_class = manifold.mode == "per_class"
    with torch.no_grad():
        px_train = manifold.project(x_train, y_train if per_class else None)
        px_test = manifold.project(x_test, y_test if per_class else None)
    return PMNIST(manifold, px_train, y_train, px_test, y_test, x_test)


def objective(name: str, manifold: LinearManifold, settings: Any) -> training.Objective:
    """The training objective of one of :data:`MODELS`."""
    s = training_settings(settings)
    lower, upper = ATTACK_BOX

    def adv():
        return training.adversarial(
            s["adv_eps"], s["adv_steps"], lower=lower, upper=upper
        )

    table = {
        "baseline": training.cross_entropy,
        "robust": adv,
        # one forward pass for CE and the alignment term
        "manifold": lambda: alignment.aligned_cross_entropy(manifold, s["alpha"]),
        "manifold_robust": lambda: training.combined(
            adv(), alignment.alignment_penalty(manifold, s["alpha"])
        ),
    }
    if name not in table:
        raise ValueError(f"model name must be one of {MODELS}, got {name!r}")
    return table[name]()


def to_model(state: Mapping[str, Tensor]) -> models.MLP:
    """An MLP in eval mode with frozen weights from a state dict."""
    model = models.MLP(ARCH)
    model.load_state_dict(state)
    return models.freeze(model)


def train_models(
    settings: Any,
    pmnist: PMNIST | None = None,
    *,
    names=MODELS,
    seed: int = 0,
    progress: bool = True,
    data_dir=None,
) -> dict[str, models.MLP]:
    """The requested models of ``seed``, through their units (trained or loaded).

    ``pmnist`` is accepted for compatibility and checked against the settings; the
    units read their data themselves.
    """
    unknown = [n for n in names if n not in MODELS]
    if unknown:
        raise ValueError(f"names must be among {MODELS}, got {unknown}")
    s = training_settings(settings)
    if pmnist is not None and len(pmnist.x_train) != _n_train(s):
        raise ValueError(
            f"pmnist has {len(pmnist.x_train)} training images, the "
            f"settings ask for n_train={s['n_train']}"
        )
    return {name: to_model(model_unit(s, name, seed, data_dir).get()) for name in names}


def train_seeds(
    settings: Any, seed_list, *, names=MODELS, data_dir=None
) -> dict[int, dict[str, models.MLP]]:
    """:func:`train_models` for each seed of ``seed_list``: ``{seed: {name: net}}``."""
    return {
        int(s): train_models(settings, names=names, seed=int(s), data_dir=data_dir)
        for s in seed_list
    }


# -- measurements ----------------------------------------------------------------------
def partners(y: Tensor) -> Tensor:
    """For each test image, the next one (cyclically) whose label differs."""
    idx = torch.arange(len(y), device=y.device)
    partner = idx.clone()
    for shift in range(1, 50):  # vectorised over images; a few shifts suffice on MNIST
        todo = y[partner] == y
        if not todo.any():
            return partner
        partner[todo] = (idx[todo] + shift) % len(y)
    raise ValueError("labels must not repeat one class for 50 consecutive images")


CROSSING_FIELDS = ("index", "t", "class_a", "class_b", "angle_deg", "normal_cosine")


def _crossings(
    net, pm: PMNIST, x0: Tensor, x1: Tensor, keep: Tensor
) -> dict[str, Tensor]:
    """Valid crossings of the paths x0 → x1 where ``keep``: index, t, classes, angle and
    the cosine of the boundary normal with the manifold."""
    index = keep.nonzero().squeeze(1)
    if index.numel() == 0:
        empty = torch.zeros(0)
        return {
            k: empty.long() if k in ("index", "class_a", "class_b") else empty
            for k in CROSSING_FIELDS
        }
    cr = boundaries.crossing(net, x0[index], x1[index])
    normal_cos = alignment.cosine(cr.normal, pm.manifold, pm.labels(pm.y_test[index]))
    v = cr.valid
    return {
        "index": index[v],
        "t": cr.t[v],
        "class_a": cr.class_a[v],
        "class_b": cr.class_b[v],
        "angle_deg": cr.angle_deg[v],
        "normal_cosine": normal_cos[v],
    }


def evaluate(
    net, pm: PMNIST, settings: Any, *, seed: int = 0, progress: bool = True
) -> dict[str, Any]:
    """Every per-model measurement of the chapter, as CPU tensors:

    - ``accuracy``: clean test accuracy (all 10,000 test images);
    - ``grad_norm``, ``on_norm``, ``off_norm``: ‖g‖, ‖Pg‖, ‖g − Pg‖ of the input
      gradients of the first ``n_align`` test images;
    - ``clean``, ``fgsm``, ``pgd``: accuracy on the first ``n_eval`` test images, clean
      and under each ε of ``eps_grid`` (PGD: ``pgd_steps`` steps, random start
      ``seed``);
    - ``adversarial`` / ``other``: boundary crossings on the paths from the first
      ``n_cross`` correctly classified test images to their PGD example at ``cross_eps``
      (if it succeeds) and to the next test image of another digit (if classified
      correctly), see :func:`_crossings`.
    """
    e = eval_settings(settings)
    lower, upper = ATTACK_BOX
    x, y = pm.x_test, pm.y_test
    out: dict[str, Any] = {"accuracy": torch.tensor(models.accuracy(net, x, y))}
    xa, ya = x[: e["n_align"]], y[: e["n_align"]]
    g = alignment.input_gradients(net, xa, ya, batch_size=1000)
    with torch.no_grad():
        out["grad_norm"], out["on_norm"], out["off_norm"] = alignment.norms(
            g, pm.manifold, pm.labels(ya)
        )
    xe, ye = x[: e["n_eval"]], y[: e["n_eval"]]
    out["clean"] = torch.tensor(models.accuracy(net, xe, ye))
    fgsm, pgd = [], []
    for eps in tqdm(
        e["eps_grid"], desc="FGSM and PGD over ε", disable=not progress, mininterval=5.0
    ):
        found = attacks.fgsm(net, xe, ye, eps=eps, lower=lower, upper=upper)
        fgsm.append(attacks.robust_accuracy(net, xe, ye, found))
        found = attacks.pgd(
            net,
            xe,
            ye,
            eps=eps,
            steps=e["pgd_steps"],
            lower=lower,
            upper=upper,
            seed=seed,
        )
        pgd.append(attacks.robust_accuracy(net, xe, ye, found))
    out["fgsm"], out["pgd"] = torch.tensor(fgsm), torch.tensor(pgd)
    xc, yc = x[: e["n_cross"]], y[: e["n_cross"]]
    partner = partners(y)[: e["n_cross"]]
    ok = models.predict(net, xc) == yc
    adv = attacks.pgd(
        net,
        xc,
        yc,
        eps=e["cross_eps"],
        steps=e["pgd_steps"],
        lower=lower,
        upper=upper,
        seed=seed,
    )
    out["adversarial"] = _crossings(net, pm, xc, adv.adversarial, ok & adv.success)
    other_ok = models.predict(net, x[partner]) == y[partner]
    out["other"] = _crossings(net, pm, xc, x[partner], ok & other_ok)
    return out


def evaluate_seeds(
    settings: Any, seed_list, data_dir=None
) -> dict[tuple[int, str], dict]:
    """Evaluation payloads ``{(seed, model): evaluate(...)}`` through their units."""
    return {
        (int(s), name): eval_unit(settings, name, int(s), data_dir).get()
        for s in seed_list
        for name in MODELS
    }


# -- tables from the payloads ----------------------------------------------------------
def targeted_pgd(net, x: Tensor, target: int, *, eps: float, steps: int, seed: int):
    """Targeted L∞ PGD towards class ``target`` (largest-loss iterate, no box):
    :func:`advmanifold.science.attacks.targeted_pgd` in the chapter's threat model
    (:data:`~advmanifold.science.manifolds.linear.ATTACK_BOX`)."""
    lower, upper = ATTACK_BOX
    return attacks.targeted_pgd(
        net, x, target, eps=eps, steps=steps, seed=seed, lower=lower, upper=upper
    )
