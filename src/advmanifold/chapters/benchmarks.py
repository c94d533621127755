"""Benchmarks: the package against what a researcher would otherwise use.

Every comparison runs its candidates *interleaved* on the same data in the same
process: after ``warmup`` untimed rounds, each of ``repeats`` rounds times every
candidate once (in a rotating order), and a ratio is computed per round,

    speed-up_r = t_reference,r / t_ours,r,

so load from other processes hits both sides of a ratio alike. We report the median
over rounds with min and max. The thread count is fixed with
``torch.set_num_threads`` (:func:`advmanifold.science.compute.threads`) and recorded in
:func:`machine`.

Pieces (each returns a flat dict of numbers plus a tidy table of raw timings):

- :func:`pgd_benchmark`: ``attacks.pgd`` (per-example early stop) against
  ``torchattacks.PGD`` (optional dependency), and the attack's arithmetic throughput
  against a plain ``torch.mm`` of similar shape (:func:`matmul_gflops`);
- :func:`knn_benchmark`: the exact batched k-NN subspace projection against the
  original pipeline (IncrementalPCA → kd-tree → per-example QR, :func:`knn_original`);
- :func:`decoder_benchmark`: FONTS decoder projections per second;
- :func:`training_step_benchmark`: alignment-loss and adversarial-training steps
  over a plain cross-entropy step;
- :func:`convnet_piece`: the FONTS ConvNet against the machine's SGEMM peak, the
  attack-step levers, processes against threads and the OnAdvTrain unit before and
  after (:mod:`advmanifold.chapters.throughput`, which also compares denormal flushing
  at two threads in fresh processes);
- :func:`book_times`: whole-book execution times from the runner's log.

``benchmarks/run.py`` runs them at full size; the appendix notebook
``90_benchmarks`` runs them with profile-dependent sizes.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import torch
from torch import Tensor, nn

from ..science import attacks, compute, models, training
from ..book import paths
from . import throughput
from ..science.models import MLP

#: what each benchmark returns: flat metrics and rows of raw timings
Timed = tuple[dict[str, float], list[dict[str, Any]]]

#: the PGD setting of the issue: L∞ ε, step size, steps
PGD_SETTING = {"eps": 0.1, "step_size": 0.01, "steps": 40}

#: the appendix notebook's stem (its units are listed under it)
STEM = "90_benchmarks"


class MissingDependency(RuntimeError):
    """An optional package a benchmark compares against is not installed."""


def require_torchattacks():
    """Import torchattacks, or say clearly how to install it."""
    try:
        import torchattacks
    except ImportError as err:
        raise MissingDependency(
            "torchattacks is not installed, so the PGD reference cannot run: "
            "install it with `python -m pip install --no-deps torchattacks` "
            "(or `make install`)"
        ) from err
    return torchattacks


# ---------------------------------------- machine, timing


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    import numpy

    return {
        "cpu_model": compute.cpu_model(),
        "cores_available": compute.cores(),
        "threads": torch.get_num_threads(),
        "torch_version": torch.__version__,
        "numpy_version": numpy.__version__,
        "python_version": platform.python_version(),
        "platform": platform.platform(),
    }


def interleaved(
    candidates: Mapping[str, Callable[[], Any]], *, repeats: int, warmup: int = 1
) -> dict[str, list[float]]:
    """Wall-clock seconds of each candidate over ``repeats`` rounds after ``warmup``.

    Within a round every candidate runs once; the order rotates from round to round so
    that no candidate always runs first (or right after another)."""
    if int(repeats) != repeats or repeats < 1:
        raise ValueError(f"repeats must be an integer >= 1, got {repeats!r}")
    if int(warmup) != warmup or warmup < 0:
        raise ValueError(f"warmup must be an integer >= 0, got {warmup!r}")
    names = list(candidates)
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(warmup + repeats):
        order = names[r % len(names) :] + names[: r % len(names)]
        for name in order:
            start = time.perf_counter()
            candidates[name]()
            elapsed = time.perf_counter() - start
            if r >= warmup:
                times[name].append(elapsed)
    return times


def summary(values: list[float], prefix: str) -> dict[str, float]:
    """``{prefix: median, prefix_min: min, prefix_max: max}``."""
    return {
        prefix: statistics.median(values),
        f"{prefix}_min": min(values),
        f"{prefix}_max": max(values),
    }


def ratios(numerator: list[float], denominator: list[float]) -> list[float]:
    """Per-round ratios of two interleaved timing lists."""
    return [a / b for a, b in zip(numerator, denominator)]


def timing_rows(piece: str, times: Mapping[str, list[float]]) -> list[dict[str, Any]]:
    return [
        {"piece": piece, "candidate": name, "round": i, "seconds": t}
        for name, values in times.items()
        for i, t in enumerate(values)
    ]


# ---------------------------------------- models and data


def mlp_flops(sizes=(784, 1568, 1568, 10), *, backward: bool = True) -> int:
    """Floating-point operations per example of the MLP: 2·Σ a·b for the forward
    matrix products, the same again for the backward pass to the *input* (no weight
    gradients, as in an attack); biases and ReLUs are negligible and not counted."""
    forward = sum(2 * a * b for a, b in zip(sizes[:-1], sizes[1:]))
    return forward * (2 if backward else 1)


#: seconds per training image of the benchmark MLP's epoch on the reference machine
SECONDS_PER_MLP_IMAGE = 1e-3


def _train_mlp(
    n_train: int, data_dir, epochs: int, batch_size: int, lr: float, seed: int
) -> dict:
    """Build of :func:`mlp_unit`: the MLP trained on the first ``n_train`` MNIST
    training images; its state dict."""
    from ..science.data import load_mnist

    x, y = load_mnist(True, data_dir, limit=n_train)
    torch.manual_seed(seed)
    model = MLP()
    training.train(
        model,
        x,
        y,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        seed=seed,
        desc="benchmark MLP",
        progress=False,
    )
    return model.state_dict()


def mlp_unit(
    n_train: int,
    *,
    data_dir=None,
    epochs: int = 1,
    batch_size: int = 128,
    lr: float = 1e-3,
    seed: int = 0,
):
    """The ``benchmark-mlp`` unit: the 784-1568-1568-10 MLP trained with Adam on
    cross-entropy on the first ``n_train`` MNIST training images (keyed by their
    fingerprint and the settings)."""
    from functools import partial

    from ..book.cache import fingerprint
    from ..science.data import load_mnist
    from ..book.units import Unit

    x, y = load_mnist(True, data_dir, limit=n_train)
    config = {
        "model": "MLP-784-1568-1568-10",
        "epochs": epochs,
        "batch_size": batch_size,
        "lr": lr,
        "seed": seed,
        "data": fingerprint(x, y),
    }
    build = partial(_train_mlp, n_train, data_dir, epochs, batch_size, lr, seed)
    return Unit(
        STEM,
        "benchmark-mlp",
        config,
        build,
        estimate_s=SECONDS_PER_MLP_IMAGE * epochs * len(x),
    )


def trained_mlp(n_train: int, *, data_dir=None, seed: int = 0) -> nn.Module:
    """The MLP of :func:`mlp_unit`, loaded from the cache or trained now."""
    torch.manual_seed(seed)
    model = MLP()
    model.load_state_dict(mlp_unit(n_train, data_dir=data_dir, seed=seed).get())
    return model.eval()


def prototypes_unit(bundled_only: bool):
    """The ``fonts-prototypes`` unit of the FONTS pieces: matplotlib's bundled fonts,
    or every font of the system (:func:`advmanifold.chapters.fonts.prototypes_unit`)."""
    from . import fonts as fonts_chapter
    from ..science import fonts

    files = fonts.matplotlib_font_files() if bundled_only else None
    return fonts_chapter.prototypes_unit(files=files, chapter=STEM)


def units(profile: str, params: Mapping[str, Any]) -> list:
    """The appendix's cached work for ``profile`` and the notebook's ``params``
    (:mod:`advmanifold.book.units`): the benchmark MLP and the font prototypes that the
    FONTS decoder and ConvNet pieces render."""
    cfg = settings(
        profile, threads=params.get("threads"), repeats=params.get("repeats")
    )
    found = [
        mlp_unit(
            cfg.mlp_train,
            data_dir=params.get("data_dir"),
            seed=int(params.get("seed", 0)),
        ),
        prototypes_unit(bundled_only=True),
    ]  # the decoder piece and, in smoke, the OnAdvTrain unit's fonts
    if not cfg.decoder_bundled_fonts:
        found.append(prototypes_unit(bundled_only=False))
    return found


# ---------------------------------------- matmul peak


def matmul_gflops(
    m: int = 1000, k: int = 1568, n: int = 1568, *, repeats: int = 5, inner: int = 5
) -> list[float]:
    """GFLOP/s of ``torch.mm`` [m×k]·[k×n] (2·m·k·n FLOPs), one value per round of
    ``inner`` products (after one warm-up product)."""
    a, b = torch.randn(m, k), torch.randn(k, n)
    out = torch.empty(m, n)
    torch.mm(a, b, out=out)
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(inner):
            torch.mm(a, b, out=out)
        rates.append(2 * m * k * n * inner / (time.perf_counter() - start) / 1e9)
    return rates


# ---------------------------------------- PGD


def pgd_benchmark(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    *,
    eps: float = 0.1,
    step_size: float = 0.01,
    steps: int = 40,
    repeats: int = 5,
    warmup: int = 1,
    seed: int = 0,
    reference: bool = True,
    out: dict | None = None,
) -> Timed:
    """``attacks.pgd`` (mode "first", random start, box [0, 1]) against
    ``torchattacks.PGD`` with the same ε, step and steps on the same images, and a
    plain ``torch.mm``.

    Metrics: ``pgd_speedup_vs_torchattacks`` = t_torchattacks / t_ours per round;
    fooled sets of both (success of ours = some iterate changed the label; of
    torchattacks = its final iterate is misclassified) and their robust accuracies;
    ``pgd_over_same_shape_matmul`` = (FLOPs of ours / t_ours) / GFLOP/s of torch.mm of
    shape [batch × 1568]·[1568 × 1568], per round (a ratio to a small product, not a
    fraction of the machine's peak: :func:`advmanifold.chapters.throughput.sgemm_peak`).
    FLOPs of ours count one forward and one input-backward pass (:func:`mlp_flops`) per
    gradient evaluation: the steps taken
    plus the evaluation at which each fooled example was found. ``out["ours"]`` receives
    our :class:`~advmanifold.science.attacks.AttackResult`.
    """
    state: dict[str, Any] = {}
    candidates = _pgd_candidates(
        model,
        x,
        y,
        state,
        eps=eps,
        step_size=step_size,
        steps=steps,
        seed=seed,
        reference=reference,
    )
    # attacks need no weight gradients (neither implementation computes them)
    with models.frozen(model):
        times = interleaved(candidates, repeats=repeats, warmup=warmup)
    result = state["ours"]
    if out is not None:
        out["ours"] = result
    with torch.no_grad():
        clean = model(x).argmax(1) == y
    metrics, mm_gflops = _pgd_ours_metrics(
        result, times, clean, eps=eps, step_size=step_size, steps=steps
    )
    if reference:
        metrics.update(
            _pgd_reference_metrics(
                model,
                x,
                y,
                result,
                state["theirs"],
                times,
                clean,
                mm_gflops,
                steps=steps,
            )
        )
    return metrics, timing_rows("pgd", times)


#: ``torch.mm`` calls per timed round of the PGD benchmark's matmul candidate
_PGD_MM_CALLS = 20


def _pgd_candidates(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    state: dict[str, Any],
    *,
    eps: float,
    step_size: float,
    steps: int,
    seed: int,
    reference: bool,
) -> dict[str, Callable[[], None]]:
    """The timed callables of :func:`pgd_benchmark`: ours, ``torch.mm`` and (with
    ``reference``) torchattacks; the attacks store their results in ``state``."""
    n = len(x)

    def ours():
        state["ours"] = attacks.pgd(
            model,
            x,
            y,
            eps=eps,
            steps=steps,
            step_size=step_size,
            lower=0.0,
            upper=1.0,
            random_start=True,
            mode="first",
            batch_size=n,
            seed=seed,
        )

    a, b, product = torch.randn(n, 1568), torch.randn(1568, 1568), torch.empty(n, 1568)

    def matmul():
        for _ in range(_PGD_MM_CALLS):
            torch.mm(a, b, out=product)

    candidates = {"ours": ours, "torch.mm": matmul}
    if reference:
        torchattacks = require_torchattacks()
        attack = torchattacks.PGD(
            model, eps=eps, alpha=step_size, steps=steps, random_start=True
        )

        def theirs():
            torch.manual_seed(seed)
            state["theirs"] = attack(x, y)

        candidates["torchattacks"] = theirs
    return candidates


def _pgd_ours_metrics(
    result: attacks.AttackResult,
    times: dict[str, list[float]],
    clean: Tensor,
    *,
    eps: float,
    step_size: float,
    steps: int,
) -> tuple[dict[str, float], list[float]]:
    """Our attack's metrics and its rate against ``torch.mm``; also the matmul's
    GFLOP/s per round."""
    n = len(clean)
    gradient_evals = int(result.steps.sum()) + int(result.success.sum())
    ours_gflops = [mlp_flops() * gradient_evals / t / 1e9 for t in times["ours"]]
    mm_gflops = [
        2 * n * 1568 * 1568 * _PGD_MM_CALLS / t / 1e9 for t in times["torch.mm"]
    ]
    metrics: dict[str, float] = {
        "pgd_examples": n,
        "pgd_eps": eps,
        "pgd_step_size": step_size,
        "pgd_steps": steps,
        "pgd_clean_accuracy": clean.float().mean().item(),
        "pgd_ours_success_rate": result.success.float().mean().item(),
        "pgd_ours_robust_accuracy": (clean & ~result.success).float().mean().item(),
        "pgd_ours_mean_steps": result.steps.float().mean().item(),
        "pgd_ours_gradient_evaluations": gradient_evals,
        **summary(times["ours"], "pgd_ours_s"),
        **summary(ours_gflops, "pgd_ours_gflops"),
        **summary(mm_gflops, "matmul_gflops"),
        **summary(ratios(ours_gflops, mm_gflops), "pgd_over_same_shape_matmul"),
    }
    return metrics, mm_gflops


def _pgd_reference_metrics(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    result: attacks.AttackResult,
    theirs: Tensor,
    times: dict[str, list[float]],
    clean: Tensor,
    mm_gflops: list[float],
    *,
    steps: int,
) -> dict[str, float]:
    """torchattacks' metrics and the comparison of its fooled set with ours."""
    n = len(x)
    with torch.no_grad():
        fooled_theirs = model(theirs).argmax(1) != y
    fooled_ours = result.success
    theirs_gflops = [mlp_flops() * n * steps / t / 1e9 for t in times["torchattacks"]]
    return {
        "pgd_torchattacks_success_rate": fooled_theirs.float().mean().item(),
        "pgd_torchattacks_robust_accuracy": (clean & ~fooled_theirs)
        .float()
        .mean()
        .item(),
        "pgd_fooled_only_by_ours": int((fooled_ours & ~fooled_theirs).sum()),
        "pgd_fooled_only_by_torchattacks": int((fooled_theirs & ~fooled_ours).sum()),
        "pgd_identical_fooled_set": int(bool((fooled_ours == fooled_theirs).all())),
        # the target: the same fooled set, or a lower robust accuracy than theirs
        "pgd_same_or_better_fooled_set": int(
            bool((fooled_ours == fooled_theirs).all())
            or (clean & ~fooled_ours).sum() < (clean & ~fooled_theirs).sum()
        ),
        "pgd_torchattacks_max_linf": (theirs - x).abs().amax().item(),
        "pgd_ours_max_linf": (result.adversarial - x).abs().amax().item(),
        **summary(times["torchattacks"], "pgd_torchattacks_s"),
        **summary(theirs_gflops, "pgd_torchattacks_gflops"),
        **summary(
            ratios(times["torchattacks"], times["ours"]),
            "pgd_speedup_vs_torchattacks",
        ),
        **summary(
            ratios(theirs_gflops, mm_gflops),
            "pgd_torchattacks_over_same_shape_matmul",
        ),
    }


# ---------------------------------------- k-NN subspace distance


def knn_original(
    perturbed: Tensor,
    reference: Tensor,
    train: Tensor,
    k: int = 50,
    *,
    n_components: int = 40,
    stages: dict[str, float] | None = None,
) -> tuple[Tensor, Tensor]:
    """The original pipeline of the MNIST distance (Stutz et al.): IncrementalPCA with
    ``n_components`` fitted on the training images, a kd-tree (scikit-learn ``KDTree``)
    in that PCA space, the k nearest training images of each *reference* image, and per
    example a reduced QR of the basis B = [x_i − x] (D × k) in NumPy: distance =
    ‖δ − Q Qᵀ δ‖₂ with δ = x̃ − x. The Python loop over examples is the reference's
    nature. Returns (neighbour indices [N, k], distances [N]); ``stages`` collects
    seconds per stage."""
    import numpy as np
    from sklearn.decomposition import IncrementalPCA
    from sklearn.neighbors import KDTree

    stages = {} if stages is None else stages
    clock = time.perf_counter()

    def lap(name):
        nonlocal clock
        now = time.perf_counter()
        stages[name] = now - clock
        clock = now

    t = train.reshape(len(train), -1).numpy()
    x = reference.reshape(len(reference), -1).numpy()
    xt = perturbed.reshape(len(perturbed), -1).numpy()
    pca = IncrementalPCA(n_components=n_components).fit(t)
    lap("pca_fit")
    tree = KDTree(pca.transform(t))
    lap("kdtree_build")
    _, neighbours = tree.query(pca.transform(x), k=k)
    lap("kdtree_query")
    distances = np.empty(len(x))
    for i in range(len(x)):
        basis = (t[neighbours[i]] - x[i]).T.astype(np.float64)
        q, _ = np.linalg.qr(basis)
        delta = (xt[i] - x[i]).astype(np.float64)
        distances[i] = np.linalg.norm(delta - q @ (q.T @ delta))
    lap("qr_loop")
    indices = np.asarray(neighbours, dtype=np.int64)
    return torch.from_numpy(indices), torch.from_numpy(distances)


def neighbour_overlap(found: Tensor, exact: Tensor) -> Tensor:
    """Per example, the fraction of the exact neighbours that ``found`` contains."""
    return (found.unsqueeze(2) == exact.unsqueeze(1)).any(2).float().mean(1)


def knn_benchmark(
    perturbed: Tensor,
    reference: Tensor,
    train: Tensor,
    *,
    k: int = 50,
    n_components: int = 40,
    repeats: int = 3,
    warmup: int = 1,
) -> Timed:
    """Ours (:func:`advmanifold.science.manifolds.knn.knn_projection`: exact batched
    search of the reference images' neighbours, batched SVD projection) against
    :func:`knn_original`, end to end (the original's PCA fit and tree build included;
    also reported without).

    Metrics: ``knn_speedup_vs_original`` = t_original / t_ours per round;
    ``knn_neighbour_overlap`` = mean fraction of the exact neighbours that the original
    returns (ours is exact: its overlap with a float64 brute-force search is reported as
    ``knn_ours_neighbour_overlap``); distance differences original − ours.
    """
    # imported before timing
    from sklearn.decomposition import IncrementalPCA  # noqa: F401
    from sklearn.neighbors import KDTree  # noqa: F401

    from ..science.manifolds.knn import knn_projection

    state: dict[str, Any] = {}
    stages_runs: list[dict[str, float]] = []

    def ours():
        state["ours"] = knn_projection(
            perturbed, reference, train, k, neighbours_of="reference"
        )

    def original():
        stages: dict[str, float] = {}
        state["original"] = knn_original(
            perturbed, reference, train, k, n_components=n_components, stages=stages
        )
        stages_runs.append(stages)

    times = interleaved(
        {"ours": ours, "original": original}, repeats=repeats, warmup=warmup
    )
    metrics = {
        "knn_examples": len(perturbed),
        "knn_train": len(train),
        "knn_k": k,
        "knn_pca_components": n_components,
        **_knn_speed_metrics(times, stages_runs[warmup:]),
        **_knn_agreement_metrics(
            state["ours"], *state["original"], reference, train, k
        ),
    }
    for stage in stages_runs[0]:
        metrics[f"knn_original_{stage}_s"] = statistics.median(
            st[stage] for st in stages_runs[warmup:]
        )
    return metrics, timing_rows("knn", times)


def _knn_speed_metrics(
    times: dict[str, list[float]], stages_runs: list[dict[str, float]]
) -> dict[str, float]:
    """Seconds of both sides and the speed-ups, end to end and against the original
    without its PCA fit and tree build (``stages_runs``: its timed rounds' stages)."""
    query_only = [st["kdtree_query"] + st["qr_loop"] for st in stages_runs]
    return {
        **summary(times["ours"], "knn_ours_s"),
        **summary(times["original"], "knn_original_s"),
        **summary(ratios(times["original"], times["ours"]), "knn_speedup_vs_original"),
        **summary(
            ratios(query_only, times["ours"]), "knn_speedup_vs_original_without_fit"
        ),
    }


def _knn_agreement_metrics(
    mine,
    their_idx: Tensor,
    their_dist: Tensor,
    reference: Tensor,
    train: Tensor,
    k: int,
) -> dict[str, float]:
    """How the original's neighbours and distances compare with ours, and ours with a
    float64 brute-force search on (up to) 100 queries."""
    m = min(100, len(reference))
    q = reference[:m].reshape(m, -1).double()
    d = torch.cdist(q, train.reshape(len(train), -1).double())
    brute = d.topk(k, dim=1, largest=False).indices
    ours_overlap = neighbour_overlap(mine.neighbours[:m], brute)
    overlap = neighbour_overlap(their_idx, mine.neighbours)
    diff = their_dist - mine.distance.double()
    return {
        "knn_neighbour_overlap": overlap.mean().item(),
        "knn_neighbour_overlap_min": overlap.min().item(),
        "knn_ours_neighbour_overlap": ours_overlap.mean().item(),
        "knn_distance_abs_diff_median": diff.abs().median().item(),
        "knn_distance_abs_diff_max": diff.abs().max().item(),
        "knn_distance_rel_diff_median": (
            diff.abs() / mine.distance.double().clamp_min(1e-12)
        )
        .median()
        .item(),
        "knn_distance_diff_mean": diff.mean().item(),
        "knn_distance_ours_median": mine.distance.median().item(),
        "knn_distance_original_median": their_dist.median().item(),
    }


# ---------------------------------------- FONTS decoder projection


def decoder_benchmark(
    decoder,
    *,
    n_examples: int = 1000,
    restarts: int = 3,
    steps: int = 100,
    eps: float = 0.3,
    repeats: int = 3,
    warmup: int = 1,
    seed: int = 0,
) -> Timed:
    """Examples per second of :func:`advmanifold.science.manifolds.decoder.project`
    (Adam on θ from the true θ and ``restarts`` random starts, ``steps`` steps each) for
    ``n_examples`` decoded images perturbed by random L∞ sign noise of size ``eps``
    (clipped to [0, 1])."""
    from ..science.decoders import sample_theta
    from ..science.manifolds import decoder as decoder_manifold

    g = torch.Generator().manual_seed(seed)
    font = torch.randint(decoder.n_fonts, (n_examples,), generator=g)
    letter = torch.randint(decoder.prototypes.shape[1], (n_examples,), generator=g)
    theta = sample_theta(n_examples, "hard", g)
    with torch.no_grad():
        clean = decoder(font, letter, theta)
    noise = torch.randint(0, 2, clean.shape, generator=g).float() * 2 - 1
    perturbed = (clean + eps * noise).clamp(0, 1)
    state = {}

    def ours():
        state["projection"], _ = decoder_manifold.project(
            decoder,
            font,
            letter,
            perturbed,
            theta,
            steps=steps,
            restarts=restarts,
            seed=seed,
        )

    times = interleaved({"decoder_projection": ours}, repeats=repeats, warmup=warmup)
    rate = [n_examples / t for t in times["decoder_projection"]]
    projection = state["projection"]
    metrics = {
        "decoder_examples": n_examples,
        "decoder_restarts": restarts,
        "decoder_steps": steps,
        "decoder_fonts": decoder.n_fonts,
        **summary(times["decoder_projection"], "decoder_projection_s"),
        **summary(rate, "decoder_examples_per_s"),
        "decoder_distance_median": projection.distance.median().item(),
        "decoder_distance_over_l2_median": (projection.distance / projection.delta_norm)
        .median()
        .item(),
    }
    return metrics, timing_rows("decoder", times)


# ---------------------------------------- training steps


def training_step_benchmark(
    x: Tensor,
    y: Tensor,
    manifold,
    *,
    batch_size: int = 128,
    inner: int = 5,
    repeats: int = 5,
    warmup: int = 1,
    alpha: float = 1.0,
    eps: float = 0.1,
    pgd_steps: int = 10,
    seed: int = 0,
) -> Timed:
    """Seconds per Adam step of the MLP on one batch for three objectives of the
    package: plain cross-entropy, the alignment loss CE + α·ratio as the PMNIST chapter
    trains it (double backprop, one forward pass:
    :func:`advmanifold.science.alignment.aligned_cross_entropy`), and adversarial
    training (:func:`advmanifold.science.training.adversarial`, PGD-``pgd_steps``);
    plus, as a diagnostic, the same loss composed of two objectives (two forward
    passes). Each candidate has its own model and optimiser and runs ``inner`` steps
    per round."""
    from ..science.alignment import aligned_cross_entropy, alignment_penalty

    xb, yb = x[:batch_size], y[:batch_size]

    objectives = {
        "plain": training.cross_entropy(),
        "alignment": aligned_cross_entropy(manifold, alpha=alpha),
        "alignment_composed": training.combined(
            training.cross_entropy(), alignment_penalty(manifold, alpha=alpha)
        ),
        "adversarial": training.adversarial(eps=eps, steps=pgd_steps),
    }

    times = interleaved(
        {
            name: _training_steps(obj, xb, yb, inner=inner, seed=seed)
            for name, obj in objectives.items()
        },
        repeats=repeats,
        warmup=warmup,
    )
    per_step = {name: [t / inner for t in values] for name, values in times.items()}
    metrics = {"step_batch_size": batch_size, "step_pgd_steps": pgd_steps}
    for name, values in per_step.items():
        metrics.update(summary(values, f"{name}_step_s"))
    for name in ("alignment", "alignment_composed", "adversarial"):
        metrics.update(
            summary(
                ratios(per_step[name], per_step["plain"]), f"{name}_step_over_plain"
            )
        )
    return metrics, timing_rows("training_step", per_step)


def _training_steps(
    objective, xb: Tensor, yb: Tensor, *, inner: int, seed: int
) -> Callable[[], None]:
    """A candidate of :func:`training_step_benchmark`: a fresh MLP (seeded) and its
    Adam optimiser, whose call runs ``inner`` steps of ``objective`` on the batch."""
    torch.manual_seed(seed)
    model = MLP().train()
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-3)

    def run():
        for _ in range(inner):
            loss = objective(model, xb, yb)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()

    return run


# ---------------------------------------- whole book


def book_times(directory: str | os.PathLike | None = None) -> dict[str, dict[str, Any]]:
    """The runner's logs found in the results folder
    (:func:`advmanifold.book.results.read_book_run`): profile → log."""
    from ..book.profiles import PROFILES
    from ..book.results import book_run_path, read_book_run

    return {
        profile: read_book_run(profile, directory)
        for profile in PROFILES
        if book_run_path(profile, directory).is_file()
    }


def book_chapters(root: str | os.PathLike | None = None) -> list[str]:
    """Stems of the notebook chapters in the book's ``_toc.yml`` (empty if none)."""
    from ..book.toc import chapters

    try:
        return [c.stem for c in chapters(Path(root) if root else paths.book_root())]
    except SystemExit:  # BookError: no _toc.yml here
        return []


# ---------------------------------------- targets

#: (metric, comparison, threshold, what it means) — checked by :func:`targets`.
TARGETS = (
    (
        "pgd_speedup_vs_torchattacks",
        ">=",
        2.5,
        "PGD at least 2.5× faster than torchattacks",
    ),
    (
        "pgd_same_or_better_fooled_set",
        ">=",
        1,
        "PGD fools the same examples as torchattacks (or more)",
    ),
    (
        "knn_speedup_vs_original",
        ">=",
        10.0,
        "k-NN distance at least 10× faster than the original pipeline",
    ),
    ("knn_ours_neighbour_overlap", ">=", 1.0, "our k-NN neighbours are the exact ones"),
    (
        "alignment_step_over_plain",
        "<=",
        2.5,
        "alignment-loss step at most 2.5× a plain step",
    ),
    (
        "unit_speedup",
        ">=",
        2.0,
        "OnAdvTrain unit (paper settings, N = 2,500) at least 2× faster than before",
    ),
    (
        "max_fraction_of_peak",
        "<=",
        1.0,
        "every fraction of peak at most 1 (the peak covers the workloads' GEMMs)",
    ),
    (
        "denormal_every_thread_max_count",
        "<=",
        0,
        "no denormal in the weights or Adam's state with the flush on every thread",
    ),
    ("book_quick_minutes", "<=", 30.0, "whole book, profile quick, within 30 minutes"),
    ("book_smoke_minutes", "<=", 5.0, "whole book, profile smoke, within 5 minutes"),
)


def targets(metrics: Mapping[str, float]) -> list[dict[str, Any]]:
    """One row per target whose metric was measured: value, threshold, met (bool)."""
    rows = []
    for name, op, threshold, meaning in TARGETS:
        if name in metrics:
            value = metrics[name]
            met = value >= threshold if op == ">=" else value <= threshold
            rows.append(
                {
                    "metric": name,
                    "value": value,
                    "target": f"{op} {threshold:g}",
                    "met": bool(met),
                    "meaning": meaning,
                }
            )
    return rows


# ---------------------------------------- everything at once

#: The sizes of the issue ("full size"); the notebook scales them per profile.
FULL = {
    "pgd_examples": 1000,
    "pgd_steps": 40,
    "pgd_repeats": 5,
    "knn_examples": 1000,
    "knn_train": 60000,
    "knn_repeats": 3,
    "decoder_examples": 1000,
    "decoder_restarts": 3,
    "decoder_steps": 100,
    "decoder_fonts": 100,
    "decoder_repeats": 3,
    "step_batch_size": 128,
    "step_inner": 5,
    "step_repeats": 5,
    "mlp_train": 60000,
    "warmup": 1,
    # per-piece warm-up rounds (None: ``warmup``); a full-size k-NN or decoder round
    # takes tens of seconds, so short runs may skip their warm-up
    "pgd_warmup": None,
    "knn_warmup": None,
    "decoder_warmup": None,
    "step_warmup": None,
    "decoder_bundled_fonts": False,
    # the FONTS ConvNet against the machine (advmanifold.chapters.throughput):
    # square SGEMM sizes of the peak, timed rounds, the limit of a cold torch.compile
    # (None: not run), seconds of processes against threads, the OnAdvTrain unit
    # (epochs of its 20; a run at several threads stops after the budget, None: never)
    "convnet_peak_sizes": (1024, 2048, 3072),
    "convnet_repeats": 5,
    "convnet_compile_s": 60.0,
    "convnet_parallel_s": 8.0,
    "convnet_unit_n": 2500,
    "convnet_unit_epochs": 20,
    "convnet_unit_budget_s": None,
    "convnet_pgd_steps": 40,  # of the adversarial steps and the unit's attacks
    # Adam at two threads with and without flushed denormals, one process each
    "denormal_steps": 200,
    "denormal_window": 20,
}
PIECES = ("pgd", "knn", "decoder", "steps", "convnet", "denormals", "book")

#: sizes of the appendix notebook per profile (our choice): paper uses the full sizes;
#: quick is bounded by time (about two minutes on two cores: smaller PGD, k-NN and
#: decoder pieces at one thread, one epoch of the unit, a short denormal run);
#: smoke only checks the code path
PROFILE_SETTINGS = {
    "smoke": {
        "pgd_examples": 32,
        "pgd_steps": 10,
        "pgd_repeats": 1,
        "knn_examples": 16,
        "knn_train": 1000,
        "knn_repeats": 1,
        "decoder_examples": 16,
        "decoder_restarts": 1,
        "decoder_steps": 5,
        "decoder_fonts": 4,
        "decoder_repeats": 1,
        "decoder_bundled_fonts": True,
        "step_batch_size": 32,
        "step_inner": 1,
        "step_repeats": 1,
        "mlp_train": 2000,
        "warmup": 0,
        "convnet_peak_sizes": (256, 512),
        "convnet_repeats": 1,
        "convnet_compile_s": None,
        "convnet_parallel_s": None,
        "convnet_unit_n": 100,
        "convnet_unit_epochs": 1,
        "convnet_unit_budget_s": 2.0,
        "convnet_pgd_steps": 2,
        "denormal_steps": 20,
        "denormal_window": 10,
        "threads": None,
    },
    "quick": {
        **FULL,
        "pgd_repeats": 2,
        "knn_repeats": 1,
        "knn_warmup": 0,
        "decoder_repeats": 1,
        "decoder_warmup": 0,
        "step_inner": 3,
        "step_repeats": 3,
        # bounded by time: the whole appendix in about two minutes on 2 cores
        "pgd_examples": 200,
        "knn_examples": 100,  # against all 60,000 training images
        "decoder_examples": 200,
        "decoder_restarts": 1,
        "mlp_train": 10000,
        "convnet_peak_sizes": (1024, 2048),
        "convnet_repeats": 3,
        "convnet_compile_s": 60.0,
        "convnet_parallel_s": 3.0,
        "convnet_unit_epochs": 1,
        "convnet_unit_budget_s": 5.0,
        "denormal_steps": 40,
        "denormal_window": 10,
        # the comparisons at one thread: a team of two threads on a shared machine
        # waits at every barrier for its descheduled member (see processes against
        # threads in the appendix)
        "threads": 1,
    },
    "paper": {
        **FULL,
        "pgd_repeats": 5,
        "knn_repeats": 3,
        "decoder_repeats": 3,
        "step_repeats": 5,
        "threads": None,
    },
}


def settings(profile: str, **overrides):
    """The appendix's settings for ``profile``
    (:func:`advmanifold.book.profiles.select`); ``repeats`` sets the timed rounds of
    every piece at once."""
    from ..book.profiles import select

    repeats = overrides.pop("repeats", None)
    chosen = select(profile, PROFILE_SETTINGS, **overrides)
    if repeats is not None:
        if int(repeats) != repeats or repeats < 1:
            raise ValueError(
                f"repeats must be an integer >= 1 or None, got {repeats!r}"
            )
        for piece in ("pgd", "knn", "decoder", "step"):
            setattr(chosen, f"{piece}_repeats", int(repeats))
    return chosen


def decoder_and_source(n_fonts: int, *, bundled_only: bool = False):
    """A FONTS decoder on ``n_fonts`` legible fonts (fewer if fewer are installed,
    :func:`advmanifold.chapters.generalization_models.load_decoder`) and the fonts'
    source; ``bundled_only`` uses matplotlib's bundled fonts (fast, ~8 designs)."""
    from .generalization_models import load_decoder

    proto = prototypes_unit(bundled_only)
    source = "matplotlib" if bundled_only else "system"
    return load_decoder(proto, n_fonts, fewer=True), source


def fractions_of_peak(metrics: Mapping[str, Any]) -> dict[str, float]:
    """The metrics named ``*_fraction_of_peak`` or ``*_fraction_of_peak_<t>t``."""
    import re

    pattern = re.compile(r"_fraction_of_peak(_\d+t)?$")
    return {k: v for k, v in metrics.items() if pattern.search(k)}


def convnet_piece(
    cfg: Mapping[str, Any], log, seed: int = 0, extra_rates=None
) -> tuple[dict[str, Any], list[dict[str, Any]], list[str]]:
    """The FONTS ConvNet against the machine (:mod:`advmanifold.chapters.throughput`):
    peaks, step rates and fractions at one thread and every core (``extra_rates``: rates
    of other pieces, ``{threads: {name: GFLOP/s}}``, put beside them), the levers, and
    the OnAdvTrain unit before and after. Returns (metrics, rows, notes)."""
    counts = sorted({1, compute.cores()})
    metrics: dict[str, Any] = {"cuda_available": int(torch.cuda.is_available())}
    notes: list[str] = []
    log(f"SGEMM peaks and ConvNet steps at {counts} thread(s) ...")
    # the MLP's GEMMs too, so that the PGD piece's rate is divided by a peak that
    # covers its own shapes
    extra = throughput.mlp_pgd_shapes(cfg["pgd_examples"])
    m, rows = throughput.convnet_rates(
        counts,
        peak_sizes=cfg["convnet_peak_sizes"],
        repeats=cfg["convnet_repeats"],
        pgd_steps=cfg["convnet_pgd_steps"],
        extra_shapes=extra,
        extra_rates=extra_rates,
        seed=seed,
    )
    metrics.update(m)
    for t in counts:
        if m[f"peak_from_workload_{t}t"]:
            notes.append(
                f"at {t} thread(s) a workload ran faster than every GEMM timed alone "
                "(timings disturbed by other load): its rate is that peak"
            )
    log("attack-step levers, one at a time ...")
    m, r = throughput.attack_levers(
        repeats=cfg["convnet_repeats"],
        compile_s=cfg["convnet_compile_s"],
        parallel_s=cfg["convnet_parallel_s"],
        seed=seed,
    )
    notes += m.pop("lever_notes")
    metrics.update(m)
    rows += r
    log(
        f"OnAdvTrain unit, N = {cfg['convnet_unit_n']}, "
        f"{cfg['convnet_unit_epochs']} epoch(s), before and after ..."
    )
    m, r = throughput.unit_time(
        epochs=cfg["convnet_unit_epochs"],
        n=cfg["convnet_unit_n"],
        seed=seed,
        bundled_fonts=cfg["decoder_bundled_fonts"],
        budget_s=cfg["convnet_unit_budget_s"],
        train_steps=cfg["convnet_pgd_steps"],
    )
    metrics.update(m)
    rows += r
    return metrics, rows, notes


@dataclass
class _Run:
    """What the pieces of one :func:`run_benchmarks` call share: settings, the
    metrics, rows and notes gathered so far, the MNIST arrays and PGD's examples."""

    cfg: dict[str, Any]
    threads: int
    seed: int
    data_dir: Any
    log: Callable[[str], None]
    metrics: dict[str, Any] = field(default_factory=dict)
    rows: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    mnist: tuple[Tensor, Tensor, Tensor, Tensor] | None = None
    adversarial: Tensor | None = None
    open_piece: list[tuple[str, float]] = field(default_factory=list)

    def add(self, metrics: Mapping[str, Any], rows: list[dict[str, Any]]) -> None:
        """Keep a piece's metrics and timing rows."""
        self.metrics.update(metrics)
        self.rows += rows

    def note(self, text: str) -> None:
        """Keep a note and log it."""
        self.notes.append(text)
        self.log(f"note: {text}")

    def lap(self, name: str | None = None) -> None:
        """Close the running piece (metric ``<piece>_wall_s``), open ``name``."""
        now = time.perf_counter()
        if self.open_piece:
            piece, start = self.open_piece.pop()
            self.metrics[f"{piece}_wall_s"] = now - start
        if name:
            self.open_piece.append((name, now))


def _benchmark_settings(
    settings: Mapping[str, Any] | None, pieces: tuple[str, ...]
) -> dict[str, Any]:
    """Check ``pieces`` and ``settings``; :data:`FULL` overridden by ``settings``,
    each piece's warm-up defaulting to ``warmup``."""
    unknown = [p for p in pieces if p not in PIECES]
    if unknown:
        raise ValueError(f"pieces must be among {PIECES}, got {unknown}")
    unknown = sorted(set(settings or {}) - set(FULL))
    if unknown:
        raise ValueError(
            f"unknown benchmark setting(s) {unknown}; valid: {sorted(FULL)}"
        )
    cfg = {**FULL, **(settings or {})}
    for piece in ("pgd", "knn", "decoder", "step"):
        if cfg[f"{piece}_warmup"] is None:
            cfg[f"{piece}_warmup"] = cfg["warmup"]
    return cfg


def _run_pgd(run: _Run) -> None:
    """The PGD piece: our attack against torchattacks on the trained MLP."""
    cfg, seed = run.cfg, run.seed
    _, _, x_test, y_test = run.mnist
    n_train = cfg["mlp_train"]
    run.log(f"training (or loading) the MLP on {n_train} images ...")
    model = trained_mlp(n_train, data_dir=run.data_dir, seed=seed)
    x, y = x_test[: cfg["pgd_examples"]], y_test[: cfg["pgd_examples"]]
    run.log(f"PGD on {len(x)} images ...")
    try:
        require_torchattacks()
        reference = True
    except MissingDependency as err:
        run.note(str(err))
        reference = False
    found: dict[str, Any] = {}
    run.add(
        *pgd_benchmark(
            model,
            x,
            y,
            **{**PGD_SETTING, "steps": cfg["pgd_steps"]},
            repeats=cfg["pgd_repeats"],
            warmup=cfg["pgd_warmup"],
            seed=seed,
            reference=reference,
            out=found,
        )
    )
    run.adversarial = found["ours"].adversarial


def _run_knn(run: _Run) -> None:
    """The k-NN piece, on PGD's examples (or random L∞ sign noise without them)."""
    cfg = run.cfg
    x_train, _, x_test, _ = run.mnist
    n = cfg["knn_examples"]
    x = x_test[:n]
    adversarial = run.adversarial
    if adversarial is None or len(adversarial) < n:  # random L∞ sign noise
        g = torch.Generator().manual_seed(run.seed)
        sign = torch.randint(0, 2, x.shape, generator=g) * 2 - 1
        perturbed = (x + PGD_SETTING["eps"] * sign).clamp(0, 1)
        run.notes.append(
            "k-NN: perturbed examples are random L∞ sign noise (PGD piece not run)"
        )
    else:
        perturbed = adversarial[:n]
    run.log(
        f"k-NN distance of {n} examples against {cfg['knn_train']} training images ..."
    )
    run.add(
        *knn_benchmark(
            perturbed,
            x,
            x_train[: cfg["knn_train"]],
            repeats=cfg["knn_repeats"],
            warmup=cfg["knn_warmup"],
        )
    )


def _run_decoder(run: _Run) -> None:
    """The FONTS decoder piece (skipped with a note when no fonts load)."""
    cfg = run.cfg
    run.log(f"FONTS decoder projection of {cfg['decoder_examples']} examples ...")
    try:
        decoder, source = decoder_and_source(
            cfg["decoder_fonts"],
            bundled_only=cfg.get("decoder_bundled_fonts", False),
        )
    except Exception as err:  # noqa: BLE001 - no fonts: say so, run the rest
        run.note(f"FONTS decoder benchmark skipped: {type(err).__name__}: {err}")
        return
    run.notes.append(f"FONTS decoder on {decoder.n_fonts} {source} fonts")
    run.add(
        *decoder_benchmark(
            decoder,
            n_examples=cfg["decoder_examples"],
            restarts=cfg["decoder_restarts"],
            steps=cfg["decoder_steps"],
            repeats=cfg["decoder_repeats"],
            warmup=cfg["decoder_warmup"],
            seed=run.seed,
        )
    )


def _run_steps(run: _Run) -> None:
    """The training-step piece: plain, alignment and adversarial steps."""
    from ..science.manifolds.linear import LinearManifold

    cfg = run.cfg
    x_train, y_train, _, _ = run.mnist
    run.log("training steps: plain, alignment, adversarial ...")
    manifold = LinearManifold.fit(x_train[:10000], k=28)
    run.add(
        *training_step_benchmark(
            x_train,
            y_train,
            manifold,
            batch_size=cfg["step_batch_size"],
            inner=cfg["step_inner"],
            repeats=cfg["step_repeats"],
            warmup=cfg["step_warmup"],
            seed=run.seed,
        )
    )


def _run_convnet(run: _Run) -> None:
    """The ConvNet piece (:func:`convnet_piece`), with PGD's rate beside its own."""
    pgd = {}
    if "pgd_ours_gflops" in run.metrics:
        pgd = {run.threads: {"pgd": run.metrics["pgd_ours_gflops"]}}
    m, r, n = convnet_piece(run.cfg, run.log, run.seed, pgd)
    run.add(m, r)
    run.notes += n
    run.metrics["max_fraction_of_peak"] = max(fractions_of_peak(run.metrics).values())


def _run_denormals(run: _Run) -> None:
    """The denormal piece: Adam with and without flushing denormals."""
    run.log("Adam at two threads: no flush, main thread only, every thread ...")
    run.add(
        *throughput.denormal_comparison(
            run.cfg["denormal_steps"], run.cfg["denormal_window"]
        )
    )


#: the timed pieces in the order they run: piece → (wall-time name, runner)
_PIECE_RUNNERS: dict[str, tuple[str, Callable[[_Run], None]]] = {
    "pgd": ("pgd", _run_pgd),
    "knn": ("knn", _run_knn),
    "decoder": ("decoder", _run_decoder),
    "steps": ("step", _run_steps),
    "convnet": ("convnet", _run_convnet),
    "denormals": ("denormal", _run_denormals),
}


def _book_chapter_times(run: _Run) -> list[dict[str, Any]]:
    """The book piece: per-chapter times of each profile's run log and, for a
    complete log, the whole book's minutes."""
    chapters: list[dict[str, Any]] = []
    expected = book_chapters()
    for profile, log_entry in book_times().items():
        ran = set(log_entry["chapters_s"])
        missing = [c for c in expected if c not in ran]
        chapters += [
            {"profile": profile, "chapter": c, "seconds": s}
            for c, s in log_entry["chapters_s"].items()
        ]
        run.metrics[f"book_{profile}_chapters_logged"] = len(ran)
        # a partial log (`--only`) is no whole-book time: report it, judge nothing
        if missing:
            run.metrics[f"book_{profile}_partial_minutes"] = log_entry["total_s"] / 60
            run.notes.append(
                f"book run log of profile {profile} lacks {len(missing)} "
                f"of {len(expected)} chapters "
                f"({', '.join(missing)}): no whole-book time for it"
            )
        else:
            run.metrics[f"book_{profile}_minutes"] = log_entry["total_s"] / 60
    if not chapters:
        run.notes.append(
            "no book run log (_build/results/book_run_<profile>.json) "
            "yet: "
            "run `make book` first"
        )
    return chapters


def run_benchmarks(
    settings: Mapping[str, Any] | None = None,
    *,
    threads: int | None = None,
    pieces: tuple[str, ...] = PIECES,
    data_dir=None,
    seed: int = 0,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Run the benchmark ``pieces`` with ``settings`` (default :data:`FULL`) on
    ``threads`` threads (default: every core available). Returns ``{"metrics": {...},
    "timings": DataFrame of raw seconds, "targets": [...], "notes": [...], "chapters":
    DataFrame}``; a piece whose reference is not installed is skipped with a note."""
    import pandas as pd

    from ..science.data import load_mnist

    cfg = _benchmark_settings(settings, pieces)
    threads = compute.cores() if threads is None else threads
    run = _Run(cfg, threads, seed, data_dir, log)
    started = time.perf_counter()
    if "knn" in pieces:
        # loaded before the thread limit, which covers only the libraries loaded
        # when it is set (scipy brings its own OpenBLAS)
        from sklearn.decomposition import IncrementalPCA  # noqa: F401
        from sklearn.neighbors import KDTree  # noqa: F401
    with compute.threads(threads):
        run.metrics.update(machine())
        if any(p in pieces for p in ("pgd", "knn", "steps")):
            run.mnist = (*load_mnist(True, data_dir), *load_mnist(False, data_dir))
        for piece, (name, runner) in _PIECE_RUNNERS.items():
            if piece in pieces:
                run.lap(name)
                runner(run)
    run.lap()
    chapters = _book_chapter_times(run) if "book" in pieces else []
    run.metrics["benchmark_wall_s"] = time.perf_counter() - started
    return {
        "metrics": run.metrics,
        "timings": pd.DataFrame(run.rows),
        "targets": targets(run.metrics),
        "notes": run.notes,
        "chapters": pd.DataFrame(chapters, columns=["profile", "chapter", "seconds"]),
        "settings": {**cfg, "threads": threads, "seed": seed},
    }


#: metric-name prefixes written by each piece (to replace a piece's numbers on a
#: partial re-run)
PIECE_PREFIXES = {
    "pgd": ("pgd_", "matmul_"),
    "knn": ("knn_",),
    "decoder": ("decoder_",),
    "steps": ("step_", "plain_step", "alignment_", "adversarial_step"),
    "convnet": (
        "peak_",
        "load_",
        "attack_step",
        "train_step",
        "adv_train_step",
        "convnet_",
        "lever_",
        "attack_steps_per_s",
        "processes_over",
        "unit_",
        "cuda_",
        "max_fraction",
    ),
    "denormals": ("denormal_",),
    "book": ("book_",),
}


def write_json(
    run: Mapping[str, Any],
    path: str | os.PathLike | None = None,
    *,
    pieces: tuple[str, ...] = PIECES,
) -> Path:
    """``benchmarks.json``: metrics (flat), settings, targets, notes, per-chapter book
    times.

    When only some ``pieces`` ran, the other pieces' metrics already in the file are
    kept
    (this run's pieces replace theirs) and the targets are recomputed from the merge."""
    from ..book.results import atomic_write_text, versions

    path = Path(path) if path else paths.results_dir() / "benchmarks.json"
    metrics = dict(run["metrics"])
    if set(pieces) != set(PIECES) and path.is_file():
        old = json.loads(path.read_text())
        prefixes = tuple(x for p in pieces for x in PIECE_PREFIXES[p])
        others = tuple(x for q in PIECES if q not in pieces for x in PIECE_PREFIXES[q])
        kept = {
            k: v
            for k, v in old.items()
            if isinstance(v, (int, float))
            and not isinstance(v, bool)
            and k.startswith(others)
            and not k.startswith(prefixes)
        }
        metrics = {**kept, **metrics}
    record = {
        **metrics,
        "settings": run["settings"],
        "pieces": list(pieces),
        "targets": targets(metrics),
        "notes": run["notes"],
        "book_chapters_s": run["chapters"].to_dict(orient="records"),
        **{f"version_{k}": v for k, v in versions().items()},
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    atomic_write_text(path, json.dumps(record, indent=1, default=float) + "\n")
    return path
