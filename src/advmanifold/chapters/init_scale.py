"""Initialisation scale and weight decay on PMNIST (Melamed, Yehudai and Vardi, 2023).

On data in a linear subspace S (PMNIST, the PMNIST chapter's default projector: one
global PCA subspace, k = 28, not centred), gradient training never moves the first
layer's weights off S (:mod:`advmanifold.science.implicit_bias`), so the input
gradient keeps an off-subspace part set by the initialisation; a smaller initial scale
c or L2 weight decay λ shrinks it and, with it, the effect of perturbations ⟂ S.

- Two architectures: ``two_layer`` 784 → H → 10 and ``mlp`` 784 → 1568 → 1568 → 10
  (the book's MLP), ReLU, PyTorch's default init with every parameter times c.
- Training (ours): SGD, momentum 0.9, learning rate 0.1, batch 128, cross-entropy,
  L2 weight decay λ on every parameter (torch's coupled form), gradient-norm clip 5
  (it only acts at large c, where the logits scale like c^depth).
- A one-factor-at-a-time grid (:func:`grid`): c over ``init_scales`` at λ = 0, and
  λ over ``weight_decays`` at c = 1; every point for ``n_seeds`` seeds.
- Units: the PCA fit (the PMNIST chapter's own unit, same key), one model per (arch,
  c, λ, seed) and its evaluation (:func:`evaluate`): accuracy, the input-gradient
  shares, the first layer's off-subspace weights and restricted L2 PGD over ε.

Rates in :data:`RATES` were measured on the reference machine (2-core Xeon, one
torch thread, another job running). There the ``quick`` profile (20 models, 2 seeds)
takes about 1.5 minutes, units included; ``paper`` (all 60,000 images, 10 epochs, 5
scales, 4 decays, 3 seeds: 48 models; 1,000 attacked images, PGD-20) about 75 minutes
in one process (:func:`estimate_seconds`; one MLP trains in about 2 minutes).
"""

from __future__ import annotations

import functools
from typing import Any, Mapping

import pandas as pd
import torch

from ..book import results
from ..book.profiles import Setting, Settings, integer, number, numbers, optional
from ..book.units import Unit
from ..science import alignment, implicit_bias, models
from . import pmnist, pmnist_tables

STEM = "08_init_scale"
ARCHS = ("two_layer", "mlp")
NAMES = {"two_layer": "two-layer", "mlp": "MLP"}
THREATS = implicit_bias.WHERE
THREAT_NAMES = {
    "orthogonal": "orthogonal to S",
    "subspace": "within S",
    "full": "unrestricted",
}
#: the three grid points the claims compare (names used in result keys)
POINTS = ("base", "small_init", "large_wd")
#: the PMNIST chapter's default projector (its PCA unit is shared)
PCA = {k: pmnist.TRAINING["paper"][k] for k in ("pca_mode", "k", "center")}

_COMMON = dict(hidden=1000, batch_size=128, lr=0.1, momentum=0.9, clip=5.0)
SETTINGS: dict[str, dict[str, Any]] = {
    "smoke": dict(
        _COMMON,
        n_train=512,
        epochs=1,
        init_scales=[0.1, 1.0],
        weight_decays=[0.0, 0.01],
        n_seeds=2,
        n_align=200,
        n_eval=64,
        eps_grid=[1.0, 2.0],
        pgd_steps=5,
    ),
    "quick": dict(
        _COMMON,
        n_train=6000,
        epochs=3,
        init_scales=[0.1, 1.0, 10.0],
        weight_decays=[0.0, 0.001, 0.01],
        n_seeds=2,
        n_align=1000,
        n_eval=200,
        eps_grid=[0.5, 1.0, 2.0, 3.0],
        pgd_steps=10,
    ),
    "paper": dict(
        _COMMON,
        n_train=None,
        epochs=10,
        init_scales=[0.1, 0.3, 1.0, 3.0, 10.0],
        weight_decays=[0.0, 0.0001, 0.001, 0.01],
        n_seeds=3,
        n_align=2000,
        n_eval=1000,
        eps_grid=[0.5, 1.0, 1.5, 2.0, 3.0],
        pgd_steps=20,
    ),
}
TRAIN_KEYS = ("n_train", "epochs", "batch_size", "lr", "momentum", "clip")
EVAL_KEYS = ("n_align", "n_eval", "eps_grid", "pgd_steps")

#: Seconds on the reference machine (one torch thread, another job running): per
#: training image and epoch, per image and attack step (forward and input
#: gradient), per image forward; and a unit's fixed work (reading PMNIST).
RATES = dict(
    train_two_layer=3.5e-5,
    train_mlp=2.0e-4,
    step_two_layer=2.5e-5,
    step_mlp=1.0e-4,
    forward_two_layer=5e-6,
    forward_mlp=3e-5,
    setup=2.0,
)


def _has_base(scales: list[float]) -> bool:
    """The grid of c holds the base point 1 and a smaller scale."""
    return 1.0 in scales and min(scales) < 1


def _has_zero(decays: list[float]) -> bool:
    """The grid of λ holds the base point 0 and a positive decay."""
    return 0.0 in decays and max(decays) > 0


#: The chapter's settings (:class:`advmanifold.book.profiles.Settings`):
#: ``settings(profile, **overrides)``, ``settings.from_params(profile, params)``.
#: The grids come sorted, each value once.
settings = Settings(
    SETTINGS,
    Setting("hidden", integer(1), overridable=True),
    Setting("batch_size", integer(1)),
    Setting("lr", number(gt=0)),
    Setting("momentum", number(ge=0, lt=1)),
    Setting("clip", optional(number(gt=0))),
    Setting("n_train", optional(integer(1, pmnist.N_MNIST_TRAIN)), overridable=True),
    Setting("epochs", integer(1), overridable=True),
    Setting(
        "init_scales",
        numbers(gt=0, sort=True, also=("holding 1 and a value below 1", _has_base)),
    ),
    Setting(
        "weight_decays",
        numbers(ge=0, sort=True, also=("holding 0 and a value above 0", _has_zero)),
    ),
    Setting("n_seeds", integer(1), overridable=True),
    Setting("n_align", integer(1)),
    Setting("n_eval", integer(1), overridable=True),
    Setting("eps_grid", numbers(gt=0, sort=True)),
    Setting("pgd_steps", integer(1)),
)


def grid(s) -> list[tuple[float, float]]:
    """The (c, λ) points, one factor at a time: (c, 0) for every c, then (1, λ) for
    every λ > 0."""
    return [(c, 0.0) for c in s.init_scales] + [
        (1.0, wd) for wd in s.weight_decays if wd > 0
    ]


def points(s) -> dict[str, tuple[float, float]]:
    """The grid points of the claims: the default (c = 1, λ = 0), the smallest c and
    the largest λ."""
    return {
        "base": (1.0, 0.0),
        "small_init": (min(s.init_scales), 0.0),
        "large_wd": (1.0, max(s.weight_decays)),
    }


def sizes(arch: str, hidden: int) -> tuple[int, ...]:
    if arch not in ARCHS:
        raise ValueError(f"arch must be one of {ARCHS}, got {arch!r}")
    return (784, int(hidden), 10) if arch == "two_layer" else pmnist.ARCH


def _pmnist_settings(n_train) -> dict[str, Any]:
    """Settings :func:`pmnist.load` accepts: the PMNIST chapter's PCA and ``n_train``
    (``load`` reads nothing else)."""
    return {**pmnist.TRAINING["paper"], **PCA, "n_train": n_train}


def _key(data_dir) -> str | None:
    return None if data_dir is None else str(data_dir)


@functools.lru_cache(maxsize=1)
def _load(n_train, data_dir: str | None) -> pmnist.PMNIST:
    """PMNIST (projected once per process and ``n_train``)."""
    return pmnist.load(_pmnist_settings(n_train), data_dir)


def _get(s, key: str):
    return s[key] if isinstance(s, Mapping) else getattr(s, key)


def _n_train(s) -> int:
    n = _get(s, "n_train")
    return pmnist.N_MNIST_TRAIN if n is None else int(n)


# -- units -----------------------------------------------------------------------------
def pca_unit(data_dir=None) -> Unit:
    """The PMNIST chapter's PCA unit for its default projector (same cache entry)."""
    return pmnist.pca_unit(_pmnist_settings(None), data_dir)


def training_seconds(arch: str, s) -> float:
    return RATES["setup"] + RATES[f"train_{arch}"] * _n_train(s) * _get(s, "epochs")


def model_unit(s, arch: str, c: float, wd: float, seed: int, data_dir=None) -> Unit:
    """Network ``arch`` with init scale ``c``, weight decay ``wd``, seed ``seed``:
    payload its state dict, the SGD step count and its first layer's on/off-subspace
    weight norms at initialisation."""
    arch_sizes = sizes(arch, _get(s, "hidden"))
    pca = pca_unit(data_dir)
    train = {k: _get(s, k) for k in TRAIN_KEYS}
    train["n_train"] = _n_train(s)
    config = {
        "what": "initscale-model",
        "arch": list(arch_sizes),
        "init_scale": float(c),
        "weight_decay": float(wd),
        "seed": int(seed),
        "optimizer": "sgd",
        "data": {"pca": pca.key, "n_train": train["n_train"]},
        **train,
    }
    build = functools.partial(
        _train, arch, arch_sizes, float(c), float(wd), int(seed), train, _key(data_dir)
    )
    return Unit(
        STEM,
        f"initscale-model-{arch.replace('_', '-')}",
        config,
        build,
        deps=(pca,),
        estimate_s=training_seconds(arch, train),
    )


def build_model(arch_sizes, c: float, seed: int) -> models.MLP:
    """The network before training: default init under ``seed``, times ``c``."""
    torch.manual_seed(seed)
    return implicit_bias.scale_init(models.MLP(arch_sizes), c)


def _train(arch, arch_sizes, c, wd, seed, train, data_dir, progress=True) -> dict:
    pm = _load(train["n_train"], data_dir)
    net = build_model(arch_sizes, c, seed)
    on0, off0 = implicit_bias.weight_split(
        implicit_bias.first_linear(net).weight, pm.manifold
    )
    out = implicit_bias.train_sgd(
        net,
        pm.x_train,
        pm.y_train,
        epochs=train["epochs"],
        batch_size=train["batch_size"],
        lr=train["lr"],
        momentum=train["momentum"],
        weight_decay=wd,
        clip=train["clip"],
        seed=seed,
        desc=f"{NAMES[arch]} c={c:g} λ={wd:g} seed {seed}",
        progress=progress,
    )
    return {
        "state": net.state_dict(),
        "loss": torch.tensor(out["loss"]),
        "steps": out["steps"],
        "w_init": torch.stack([on0, off0]),
    }


def evaluation_seconds(arch: str, s) -> float:
    r = RATES
    steps = len(THREATS) * len(_get(s, "eps_grid")) * (_get(s, "pgd_steps") + 1)
    return (
        r["setup"]
        + 10_000 * r[f"forward_{arch}"]
        + _get(s, "n_align") * 4 * r[f"step_{arch}"]
        + _get(s, "n_eval") * steps * r[f"step_{arch}"]
    )


def eval_unit(s, arch: str, c: float, wd: float, seed: int, data_dir=None) -> Unit:
    """:func:`evaluate` of one model: payload a dict of CPU tensors."""
    model = model_unit(s, arch, c, wd, seed, data_dir)
    e = {k: _get(s, k) for k in EVAL_KEYS}
    config = {"what": "initscale-eval", "model": model.key, "seed": int(seed), **e}
    build = functools.partial(
        _evaluate_unit, s, arch, float(c), float(wd), int(seed), e, data_dir
    )
    return Unit(
        STEM,
        f"initscale-eval-{arch.replace('_', '-')}",
        config,
        build,
        deps=(model,),
        estimate_s=evaluation_seconds(arch, e),
    )


def _evaluate_unit(s, arch, c, wd, seed, e, data_dir) -> dict:
    payload = model_unit(s, arch, c, wd, seed, data_dir).get()
    pm = _load(_n_train(s), _key(data_dir))
    net = to_model(payload["state"])
    out = evaluate(net, pm, e, seed=seed)
    out["w_init"] = payload["w_init"]
    out["steps"] = payload["steps"]
    out["loss"] = payload["loss"]
    return out


def units(profile: str, params: Mapping[str, Any]) -> list[Unit]:
    """The PCA fit, and a model and its evaluation per (arch, grid point, seed)."""
    s = settings.from_params(profile, params)
    data_dir = params.get("data_dir")
    first = params.get("seed")
    return [
        eval_unit(s, arch, c, wd, seed, data_dir)
        for arch in ARCHS
        for c, wd in grid(s)
        for seed in pmnist.seeds(s.n_seeds, 0 if first is None else first)
    ]


def estimate_seconds(profile: str, **overrides) -> float:
    """Estimated seconds of all units of ``profile`` on the reference machine."""
    s = settings(profile, **overrides)
    per_point = sum(
        training_seconds(a, vars(s)) + evaluation_seconds(a, vars(s)) for a in ARCHS
    )
    return per_point * len(grid(s)) * s.n_seeds


def to_model(state: Mapping[str, torch.Tensor]) -> models.MLP:
    """A frozen MLP (eval mode) with the weights of ``state`` (sizes read from it)."""
    weights = [state[k] for k in state if k.endswith("weight")]
    arch_sizes = (weights[0].shape[1], *[w.shape[0] for w in weights])
    net = models.MLP(arch_sizes)
    net.load_state_dict(state)
    return models.freeze(net)


# -- measurements ----------------------------------------------------------------------
def evaluate(net, pm: pmnist.PMNIST, e: Mapping[str, Any], *, seed: int = 0) -> dict:
    """Every per-model measurement, as CPU tensors:

    - ``accuracy``: clean accuracy on all 10,000 test images;
    - ``margin_norms`` / ``ce_norms`` [3, n_align]: ‖g‖, ‖Pg‖, ‖(I − P)g‖ of the input
      gradient of the logit margin z_y − max_{j≠y} z_j / of the cross-entropy;
    - ``w_final`` [2]: ‖W₁P‖_F, ‖W₁(I − P)‖_F of the trained first layer;
    - ``clean`` [n_eval]: classified correctly (the attacked images);
    - ``survive`` [3, len(eps_grid), n_eval]: correct clean and under L2 PGD
      restricted to S⟂, S, or not at all (:data:`THREATS`), per ε.
    """
    m = pm.manifold
    x, y = pm.x_test, pm.y_test
    out: dict[str, Any] = {"accuracy": torch.tensor(models.accuracy(net, x, y))}
    xa, ya = x[: e["n_align"]], y[: e["n_align"]]
    with torch.no_grad():
        g = implicit_bias.margin_gradients(net, xa, ya)
        out["margin_norms"] = torch.stack(alignment.norms(g, m))
        g = alignment.input_gradients(net, xa, ya, batch_size=1000)
        out["ce_norms"] = torch.stack(alignment.norms(g, m))
    out["w_final"] = torch.stack(
        implicit_bias.weight_split(implicit_bias.first_linear(net).weight, m)
    )
    xe, ye = x[: e["n_eval"]], y[: e["n_eval"]]
    out["clean"] = models.predict(net, xe) == ye
    out["survive"] = implicit_bias.restricted_robustness(
        net, xe, ye, m, e["eps_grid"], steps=e["pgd_steps"], seed=seed
    )
    return out


def evaluations(s, seed_list, data_dir=None) -> dict[tuple, dict]:
    """``{(arch, c, λ, seed): evaluate payload}`` through the units."""
    return {
        (arch, c, wd, int(seed)): eval_unit(s, arch, c, wd, seed, data_dir).get()
        for arch in ARCHS
        for c, wd in grid(s)
        for seed in seed_list
    }


# -- tables ----------------------------------------------------------------------------
def _share(norms: torch.Tensor) -> torch.Tensor:
    """‖(I − P)g‖/‖g‖ per image (NaN where g = 0)."""
    full, _, off = norms
    return (off / full).where(full > 0, torch.nan)


def model_table(evals: Mapping[tuple, dict], s) -> pd.DataFrame:
    """One row per model: arch, c, λ, seed, accuracy, the median orthogonal share of
    the margin and cross-entropy input gradients (zero gradients left out; their
    fraction counted), the first layer's off-subspace weights (trained / initial,
    and the factor ρ_T SGD predicts for them), and per threat the survival rate
    (robust / clean accuracy on the attacked images) averaged over the ε grid."""
    rows = []
    for (arch, c, wd, seed), ev in evals.items():
        share, ce_share = _share(ev["margin_norms"]), _share(ev["ce_norms"])
        steps = int(ev["steps"])
        row = {
            "arch": NAMES[arch],
            "init_scale": c,
            "weight_decay": wd,
            "seed": seed,
            "accuracy": float(ev["accuracy"]),
            "orth_share": float(share.nanmedian()),
            "orth_share_ce": float(ce_share.nanmedian()),
            "zero_ce_gradients": float(ce_share.isnan().float().mean()),
            "w_off_ratio": float(ev["w_final"][1] / ev["w_init"][1]),
            "w_off_predicted": implicit_bias.off_subspace_factor(
                steps, s.lr, s.momentum, wd
            ),
            "sgd_steps": steps,
        }
        clean = ev["clean"].float().sum().clamp_min(1)
        for i, threat in enumerate(THREATS):
            row[f"survival_{threat}"] = float((ev["survive"][i].sum(1) / clean).mean())
        rows.append(row)
    return pd.DataFrame(rows)


def curve_table(evals: Mapping[tuple, dict], eps_grid) -> pd.DataFrame:
    """One row per (model, threat, ε): robust accuracy on the attacked images; ε = 0
    is the clean accuracy. ``sweep`` says which one-factor sweep the model is in
    ("init" for λ = 0, "wd" for c = 1; the default model is in both)."""
    rows = []
    for (arch, c, wd, seed), ev in evals.items():
        sweeps = [n for n, inside in (("init", wd == 0), ("wd", c == 1)) if inside]
        clean = float(ev["clean"].float().mean())
        for i, threat in enumerate(THREATS):
            accs = [clean, *ev["survive"][i].float().mean(1).tolist()]
            for sweep in sweeps:
                rows += [
                    {
                        "arch": NAMES[arch],
                        "init_scale": c,
                        "weight_decay": wd,
                        "seed": seed,
                        "sweep": sweep,
                        "threat": THREAT_NAMES[threat],
                        "eps": eps,
                        "accuracy": acc,
                    }
                    for eps, acc in zip([0.0, *eps_grid], accs)
                ]
    return pd.DataFrame(rows)


def record_points(res, per_seed: list, table: pd.DataFrame, s) -> None:
    """Glue and record, per arch and claim point (:func:`points`), the seed mean and
    standard deviation of accuracy, orthogonal share and the three survival rates:
    keys ``<metric>_<arch>_<point>`` (and ``_std``)."""
    metrics = ["accuracy", "orth_share", *[f"survival_{t}" for t in THREATS]]
    for arch in ARCHS:
        for point, (c, wd) in points(s).items():
            sel = table[
                (table.arch == NAMES[arch])
                & (table.init_scale == c)
                & (table.weight_decay == wd)
            ].set_index("seed")
            for metric in metrics:
                pmnist_tables.record_over_seeds(
                    res, per_seed, f"{metric}_{arch}_{point}", sel[metric].to_dict()
                )


def summary_table(table: pd.DataFrame) -> pd.DataFrame:
    """Mean ± standard deviation over seeds per (arch, c, λ) of the headline columns."""
    shown = {
        "accuracy": "accuracy",
        "orth_share": "orthogonal share",
        "survival_orthogonal": "survival ⟂ S",
        "survival_subspace": "survival in S",
        "survival_full": "survival (any δ)",
    }
    out = results.mean_std_table(
        table, ["arch", "init_scale", "weight_decay"], list(shown)
    )
    return out.rename(columns=shown).rename_axis(["arch", "c", "λ"])


def gains_markdown(metrics: Mapping[str, float]) -> str:
    """One line per architecture: the change of survival ⟂ S and within S from the
    default model to the smallest c and to the largest λ (from the chapter's
    recorded seed means)."""
    lines = []
    for arch in ARCHS:
        change = {
            (threat, point): metrics[f"survival_{threat}_{arch}_{point}"]
            - metrics[f"survival_{threat}_{arch}_base"]
            for threat in ("orthogonal", "subspace")
            for point in ("small_init", "large_wd")
        }
        lines.append(
            f"- {NAMES[arch]}: survival orthogonal to S changes by "
            f"{change['orthogonal', 'small_init']:+.3f} with the smallest c and "
            f"{change['orthogonal', 'large_wd']:+.3f} with the largest λ; within S "
            f"by {change['subspace', 'small_init']:+.3f} and "
            f"{change['subspace', 'large_wd']:+.3f}."
        )
    return "\n".join(lines)
