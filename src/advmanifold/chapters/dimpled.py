"""The dimpled manifold on FONTS (chapter ``07_dimpled``): settings, units, tables.

Shamir, Melamed and BenShmuel (2021) explain adversarial examples by the shape of the
decision boundary near the data manifold: training first makes it *cling* to the
manifold, then bends it into *dimples* around the training points, so adversarial
perturbations are nearly normal to the manifold. Their evidence used an autoencoder's
approximate manifold; on FONTS the tangent space T (dimension 6 in R^784) at every
image is known exactly (:mod:`advmanifold.science.tangent`). The measures are those
of :mod:`advmanifold.science.dimples`.

Units (:mod:`advmanifold.book.units`):

- ``fonts-prototypes``: the FONTS chapter's unit (same key);
- ``dimpled-convnet``: the FONTS chapter's ConvNet, data and optimiser (the
  ``fonts-convnet`` recipe: same rendered data set, initial weights and batches),
  with a copy of its weights at step 0, at ``n_early`` log-spaced steps of the first
  epoch, at the end of the early phase (``early_fraction`` of the first epoch) and at
  every epoch's end; payload the list of (step, state dict);
- ``dimpled-checkpoints``: :func:`~advmanifold.science.dimples.measure` of every
  checkpoint on a fixed test set, and the random-direction baseline against the same
  tangent spaces;
- ``gen-cnn``: the generalization chapter's ``Normal``, ``OnAdvTrain`` and ``Aligned``
  models at one training size ``gen_n`` (its units, same keys), and a
  ``dimpled-eval`` of each: the same measures at the end of training.

The test set is the generalization chapter's fixed test stream (font, letter and θ
i.i.d. uniform, θ in the "hard" ranges) decoded from the fonts the FONTS data use; its
random directions use seed 0, so only the training depends on the notebook's seed.
All settings of this chapter are ours except the data and the optimiser (the FONTS
chapter's, after Stutz et al.).
"""

from __future__ import annotations

import functools
import math
from types import SimpleNamespace
from typing import Any, Mapping

import numpy as np
import pandas as pd
import torch
from tqdm.std import tqdm

from ..book import profiles
from ..book.profiles import Rule, Setting, integer, number, optional
from ..book.units import Unit
from ..science import compute, decoders, dimples, models
from ..science.tangent import TangentSpace
from . import fonts, generalization

STEM = "07_dimpled"
K, D = 6, 28 * 28  # dimension of the FONTS manifold and of the image space
#: the FONTS chapter's data settings, per profile (training set and epochs)
DATA_KEYS = ("n_fonts", "train_per_prototype", "test_per_prototype", "epochs")
#: the measurement settings (a change re-runs the measurements, not the trainings)
EVAL_KEYS = (
    "n_eval",
    "l2_eps",
    "linf_eps",
    "attack_steps",
    "n_random",
    "t_min",
    "t_max",
    "grid",
    "iterations",
)
#: the generalization chapter's methods measured at the end of training
METHODS = ("Normal", "OnAdvTrain", "Aligned")


def _data(profile: str) -> dict[str, Any]:
    return {k: fonts.SETTINGS[profile][k] for k in DATA_KEYS}


#: Settings per profile. Data and epochs: the FONTS chapter's (``paper``: every legible
#: face, 96 θ per prototype, 20 epochs). Ours: the checkpoint schedule, the test
#: images measured, the attacks (L2 ε = 2 and the paper's L∞ ε = 0.3, first label
#: change, no random start), the random directions per image, the line search (grid of
#: radii from ``t_min`` to ``t_max`` = √784 = 28, the diagonal of the unit cube, then
#: bisection) and the generalization chapter's training size ``gen_n``.
SETTINGS: dict[str, dict[str, Any]] = {
    "smoke": dict(
        **_data("smoke"),
        n_early=4,
        early_fraction=0.25,
        n_eval=40,
        l2_eps=2.0,
        linf_eps=0.3,
        attack_steps=5,
        n_random=32,
        t_min=0.05,
        t_max=28.0,
        grid=8,
        iterations=6,
        gen_n=200,
    ),
    "quick": dict(
        **_data("quick"),
        n_early=8,
        early_fraction=0.1,
        n_eval=300,
        l2_eps=2.0,
        linf_eps=0.3,
        attack_steps=20,
        n_random=64,
        t_min=0.05,
        t_max=28.0,
        grid=12,
        iterations=10,
        gen_n=2500,
    ),
    "paper": dict(
        **_data("paper"),
        n_early=12,
        early_fraction=0.1,
        n_eval=1000,
        l2_eps=2.0,
        linf_eps=0.3,
        attack_steps=40,
        n_random=128,
        t_min=0.05,
        t_max=28.0,
        grid=16,
        iterations=12,
        gen_n=10_000,
    ),
}
#: Rough costs on the reference machine (2 cores, one torch thread): seconds per image
#: and forward or input-gradient pass of the ConvNet in the measurements (batches of
#: a few hundred; measured at ``quick``: 0.55 s per checkpoint of 300 images, the
#: attacks stopping early), per checkpoint copied, and per measured model (test set,
#: tangent spaces, loading).
SECONDS_PER_PASS = 2.5e-5
SECONDS_PER_CHECKPOINT = 0.01
MEASURE_OVERHEAD_S = 1.0


#: The chapter's settings (:class:`advmanifold.book.profiles.Settings`):
#: ``settings(profile, **overrides)``, ``settings.from_params(profile, params)``.
settings = profiles.Settings(
    SETTINGS,
    Setting("n_fonts", optional(integer(1)), overridable=True),
    Setting("train_per_prototype", integer(1)),
    Setting("test_per_prototype", integer(1)),
    Setting("epochs", integer(1), overridable=True),
    Setting("n_early", integer(1)),
    Setting("early_fraction", number(gt=0, le=1)),
    Setting("n_eval", integer(1), overridable=True),
    Setting("l2_eps", number(gt=0)),
    Setting("linf_eps", number(gt=0)),
    Setting("attack_steps", integer(1)),
    Setting("n_random", integer(1)),
    Setting("t_min", number(gt=0)),
    Setting("t_max", number(gt=0)),
    Setting("grid", integer(2)),
    Setting("iterations", integer(1)),
    Setting("gen_n", integer(1), overridable=True),
    rules=[Rule("t_max", "a number > t_min", lambda s: s.t_max > s.t_min)],
)


def _plain(s: Any) -> dict[str, Any]:
    """The settings as a plain dict (picklable for a unit's build)."""
    return {k: getattr(s, k) for k in SETTINGS["quick"]}


def gen_settings(profile: str) -> SimpleNamespace:
    """The generalization chapter's settings of ``profile`` (no overrides): its
    training units' keys."""
    return generalization.settings(profile)


# --------------------------------------------------------------------------- data


def _images(proto: Unit) -> torch.Tensor:
    return fonts.prototypes(proto).images


def fonts_used(proto: Unit, s: Any) -> torch.Tensor:
    """Prototypes of the first ``s.n_fonts`` legible faces (all for None): the FONTS
    chapter's fonts."""
    images = _images(proto)
    return images[: fonts.n_used(len(images), s.n_fonts)]


def schedule(n_train: int, s: Any) -> tuple[list[int], int, int]:
    """(checkpoint steps, steps per epoch, early step) for ``n_train`` images: the
    steps of :func:`advmanifold.science.dimples.checkpoint_steps` and the end of the
    early phase, ⌈early_fraction · steps per epoch⌉."""
    per_epoch = math.ceil(n_train / fonts.TRAINING["batch_size"])
    early = max(1, math.ceil(s.early_fraction * per_epoch))
    steps = dimples.checkpoint_steps(per_epoch, s.epochs, s.n_early)
    return sorted({*steps, early}), per_epoch, early


def eval_set(proto: Unit, s: Any) -> generalization.Split:
    """The fixed test images: the generalization chapter's test stream (i.i.d.
    codes) decoded from :func:`fonts_used`."""
    decoder = decoders.FontDecoder(fonts_used(proto, s))
    return generalization.split(decoder, s.n_eval, stream="test", seed=0, order="iid")


def tangent_spaces(proto: Unit, s: Any, test: generalization.Split) -> TangentSpace:
    decoder = decoders.FontDecoder(fonts_used(proto, s))
    return TangentSpace.of(decoder, test.font, test.letter, test.theta)


# -------------------------------------------------------------------------- units


def _train_payload(proto: Unit, s: dict, seed: int, device: str):
    """Build of ``dimpled-convnet``: the FONTS chapter's training
    (:func:`advmanifold.chapters.fonts.train_classifier`) with checkpoints."""
    s = SimpleNamespace(**s)
    compute.flush_denormals()
    data = fonts.dataset(fonts_used(proto, s), s, seed)
    steps, _, _ = schedule(len(data["x"]), s)
    torch.manual_seed(seed)  # the initial weights of fonts.train_classifier
    net = models.ConvNet().to(device)
    return dimples.train_with_checkpoints(
        net,
        data["x"].to(device),
        data["y"].to(device),
        steps,
        epochs=s.epochs,
        seed=seed,
        desc="ConvNet on FONTS, with checkpoints",
        **fonts.TRAINING,
    )


def training_unit(s: Any, proto: Unit, seed: int = 0, device: str = "cpu") -> Unit:
    """Unit ``dimpled-convnet`` (see the module docstring)."""
    config = {
        "model": "ConvNet",
        "prototypes": proto.key,
        **{k: getattr(s, k) for k in DATA_KEYS},
        "ranges": fonts.RANGES,
        **fonts.TRAINING,
        "seed": int(seed),
        "n_early": int(s.n_early),
        "early_fraction": float(s.early_fraction),
        "version": 1,
    }
    reference = fonts.classifier_unit(s, seed=int(seed), prototypes_dep=proto)
    n_checkpoints = s.n_early + s.epochs + 2
    estimate = reference.estimate_s + SECONDS_PER_CHECKPOINT * n_checkpoints
    build = functools.partial(
        _train_payload,
        proto,
        _plain(s),
        int(seed),
        device,
    )
    return Unit(
        STEM, "dimpled-convnet", config, build, deps=(proto,), estimate_s=estimate
    )


def _eval_config(s: Any, proto: Unit) -> dict[str, Any]:
    return {
        "prototypes": proto.key,
        "n_fonts": s.n_fonts,
        "ranges": fonts.RANGES,
        **{k: getattr(s, k) for k in EVAL_KEYS},
        # a change of what is measured bumps the version (never the code's hash:
        # a reorganisation must not move a key)
        "version": 1,
    }


def measure_seconds(s: Any, n_models: int) -> float:
    """Estimated seconds to measure ``n_models`` models on ``s.n_eval`` images: two
    attacks of at most ``attack_steps`` passes, two line searches of ``grid`` +
    ``iterations`` passes, one gradient and one prediction."""
    passes = 2 * s.attack_steps + 2 * (s.grid + s.iterations) + 2
    return MEASURE_OVERHEAD_S + n_models * passes * s.n_eval * SECONDS_PER_PASS


def _checkpoints_payload(train: Unit, proto: Unit, s: dict) -> dict:
    s = SimpleNamespace(**s)
    compute.flush_denormals()
    test = eval_set(proto, s)
    space = tangent_spaces(proto, s, test)
    checkpoints = train.get()
    bar = tqdm(checkpoints, desc="measuring checkpoints", mininterval=2.0)
    measured = [
        dimples.measure(dimples.load_state(state), test.x, test.y, space, s)
        for _, state in bar
    ]
    return {
        "step": torch.tensor([t for t, _ in checkpoints]),
        **dimples.stack(measured),
        "random": dimples.random_shares(space, s.n_random, seed=0),
    }


def checkpoints_unit(train: Unit, s: Any, proto: Unit) -> Unit:
    """Unit ``dimpled-checkpoints``: every checkpoint of ``train`` measured on the test
    set, and the random baseline (``random [n_eval, n_random]``)."""
    config = {"training": train.key, **_eval_config(s, proto)}
    n_checkpoints = s.n_early + s.epochs + 2
    build = functools.partial(_checkpoints_payload, train, proto, _plain(s))
    return Unit(
        STEM,
        "dimpled-checkpoints",
        config,
        build,
        deps=(train,),
        estimate_s=measure_seconds(s, n_checkpoints),
    )


def gen_training_unit(method: str, s: Any, proto: Unit, seed: int, profile: str):
    """The generalization chapter's ``gen-cnn`` unit of ``method`` at N =
    ``s.gen_n``."""
    return generalization.training_unit(
        method, s.gen_n, seed, gen_settings(profile), proto
    )


def _model_payload(train: Unit, proto: Unit, s: dict) -> dict:
    s = SimpleNamespace(**s)
    compute.flush_denormals()
    test = eval_set(proto, s)
    space = tangent_spaces(proto, s, test)
    model = generalization.load_model(train)
    return dimples.measure(model, test.x, test.y, space, s)


def model_unit(train: Unit, s: Any, proto: Unit) -> Unit:
    """Unit ``dimpled-eval``: the measures of one trained model (a ``gen-cnn``)."""
    config = {"model": train.key, **_eval_config(s, proto)}
    build = functools.partial(_model_payload, train, proto, _plain(s))
    return Unit(
        STEM,
        "dimpled-eval",
        config,
        build,
        deps=(train,),
        estimate_s=measure_seconds(s, 1),
    )


def grid(profile: str, params: Mapping[str, Any]) -> dict[str, Unit]:
    """The chapter's units by role: ``prototypes``, ``training``, ``checkpoints`` and
    ``train_<method>``, ``eval_<method>`` for each of :data:`METHODS`."""
    s = settings.from_params(profile, params)
    seed = int(params.get("seed") or 0)
    proto = fonts.prototypes_unit(
        params.get("font_dirs"), font_source=params.get("font_source")
    )
    train = training_unit(s, proto, seed, params.get("device") or "cpu")
    found = {
        "prototypes": proto,
        "training": train,
        "checkpoints": checkpoints_unit(train, s, proto),
    }
    for method in METHODS:
        gen = gen_training_unit(method, s, proto, seed, profile)
        found[f"train_{method}"] = gen
        found[f"eval_{method}"] = model_unit(gen, s, proto)
    return found


def units(profile: str, params: Mapping[str, Any]) -> list[Unit]:
    """Every unit of the chapter (dependencies first)."""
    found = grid(profile, params)
    ordered = ["prototypes", "training", "checkpoints"]
    ordered += [f"train_{m}" for m in METHODS] + [f"eval_{m}" for m in METHODS]
    return [found[k] for k in ordered]


# ------------------------------------------------------------------ tables and numbers


def frame(payload: Mapping[str, torch.Tensor], **columns) -> pd.DataFrame:
    """One row per (model, test image) from a ``[models, N]`` (or ``[N]``) payload:
    the :data:`~advmanifold.science.dimples.COLUMNS`, the image index ``example`` and
    ``normal_closer`` (d_normal < d_tangent; ∞ where no boundary was found, so two
    ∞ do not count); constant ``columns`` (e.g. the method) are added. A ``step``
    tensor gives each model's optimiser step."""
    data = {k: payload[k] for k in dimples.COLUMNS}
    if data["correct"].ndim == 1:
        data = {k: v.unsqueeze(0) for k, v in data.items()}
    n_models, n = data["correct"].shape
    out = pd.DataFrame({k: v.reshape(-1).numpy() for k, v in data.items()})
    out.insert(0, "example", np.tile(np.arange(n), n_models))
    if "step" in payload:
        out.insert(0, "step", np.repeat(payload["step"].numpy(), n))
    out["normal_closer"] = out.d_normal < out.d_tangent
    for name, value in columns.items():
        out[name] = value
    return out


def censored(distance: pd.Series, t_max: float) -> pd.Series:
    """Distances with ∞ (no boundary up to t_max) replaced by t_max, for medians."""
    return distance.where(np.isfinite(distance), t_max)


SHARES = {"grad_share": "gradient", "l2_share": "L2 PGD δ", "linf_share": "L∞ PGD δ"}


def summary(rows: pd.DataFrame, t_max: float, suffix: str = "") -> dict[str, float]:
    """Headline numbers of one model's rows, each name ending in ``suffix``: mean
    share of each vector (with ``<name>_std`` and ``<name>_n``, the per-image spread
    and count the ledger's standard errors use), test error, attack success among
    correct images, median distances (censored at t_max), the share of rays without a
    boundary up to t_max, and the fraction of images whose boundary is closer along
    u_N (with its binomial spread)."""
    out: dict[str, float] = {}

    def add(name: str, value: float, std: float | None = None, n: int = 0) -> None:
        out[f"{name}{suffix}"] = value
        if std is not None:
            out[f"{name}{suffix}_std"] = std
            out[f"{name}{suffix}_n"] = n

    for key in SHARES:
        values = rows[key].dropna()
        std = float(values.std(ddof=1)) if len(values) > 1 else 0.0
        add(f"{key}_mean", float(values.mean()), std, len(values))
        add(f"{key}_median", float(values.median()))
    add("test_error", float(1 - rows.correct.mean()))
    n_correct = max(int(rows.correct.sum()), 1)
    add("l2_success", float(rows.l2_success.sum() / n_correct))
    add("linf_success", float(rows.linf_success.sum() / n_correct))
    for key in ("d_tangent", "d_normal"):
        add(f"{key}_median", float(censored(rows[key], t_max).median()))
        add(f"{key}_none", float((~np.isfinite(rows[key])).mean()))
    p = float(rows.normal_closer.mean())
    add("normal_closer_fraction", p, math.sqrt(p * (1 - p)), len(rows))
    return out


def random_baseline(random: torch.Tensor) -> dict[str, float]:
    """Mean, standard deviation and 5 % / 95 % quantiles of the random directions'
    shares (all images and directions pooled), beside √(k/d) and the exact mean."""
    flat = random.reshape(-1).double()
    q05, q95 = torch.quantile(flat, torch.tensor([0.05, 0.95], dtype=flat.dtype))
    return {
        "random_share_mean": float(flat.mean()),
        "random_share_std": float(flat.std()),
        "random_share_q05": float(q05),
        "random_share_q95": float(q95),
        "random_share_expected": dimples.expected_random_share(K, D),
        "sqrt_k_over_d": math.sqrt(K / D),
    }


def conclusions(m: Mapping[str, float]) -> str:
    """The chapter's closing statements as markdown, worded from its metrics ``m``
    (the results of the notebook), whichever way they came out."""
    random = m["random_share_mean"]
    shares = {k: m[f"{k}_mean_final"] / random for k in SHARES}
    normal = max(shares["l2_share"], shares["linf_share"]) <= 2
    lines = [
        "- Perturbations: at the end of training the L2 and L∞ PGD perturbations "
        f"keep {shares['l2_share']:.2f} and {shares['linf_share']:.2f} times a "
        "random direction's tangent share, the gradient "
        f"{shares['grad_share']:.2f} times: "
        + (
            "as normal to the manifold as random directions, within a factor of 2."
            if normal
            else "more tangent than a factor of 2 over random directions allows; "
            "the prediction of nearly normal perturbations fails here."
        )
    ]
    drop = m["grad_share_mean_step0"] - m["grad_share_mean_early"]
    se = math.hypot(
        m["grad_share_mean_step0_std"] / math.sqrt(m["grad_share_mean_step0_n"]),
        m["grad_share_mean_early_std"] / math.sqrt(m["grad_share_mean_early_n"]),
    )
    if drop > 2 * se:
        phase = f"falls by {drop:.3f}, more than 2 SE = {2 * se:.3f}, as clinging "
        phase += "predicts."
    elif drop > 0:
        phase = f"falls by only {drop:.3f}, within 2 SE = {2 * se:.3f}."
    else:
        phase = f"rises by {-drop:.3f} (2 SE = {2 * se:.3f}): the predicted fall "
        phase += "is not seen at the stated checkpoint."
    lines.append(
        f"- Early training: from step 0 to step {m['early_step']:.0f} the "
        f"gradient's mean tangent share {phase} At step 0 it is "
        f"{m['grad_share_mean_step0'] / random:.2f} times random; its largest value "
        f"over training, {m['grad_share_peak_over_random']:.2f} times random, comes "
        f"at step {m['grad_share_peak_step']:.0f}; at the end of training it is "
        f"{shares['grad_share']:.2f} times random."
    )
    p = m["normal_closer_fraction_final"]
    lines.append(
        f"- Boundary: the boundary is closer along the normal part of the gradient "
        f"for {p:.1%} of the test images "
        + ("(most of them)" if p > 0.5 else "(not most of them)")
        + f"; median distance {m['d_normal_median_final']:.2f} along the normal, "
        f"{m['d_tangent_median_final']:.2f} along the tangent."
    )
    methods = [
        k[len("grad_share_mean_") :]
        for k in m
        if k.startswith("grad_share_mean_") and k[len("grad_share_mean_") :] in METHODS
    ]
    if methods:
        parts = ", ".join(
            f"{name} {m[f'grad_share_mean_{name}'] / random:.1f}×" for name in methods
        )
        lines.append(
            f"- Other training: gradient tangent shares over random at "
            f"N = {m['gen_n']:,.0f}: {parts}."
        )
    return "\n".join(lines)
