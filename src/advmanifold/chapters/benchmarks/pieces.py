"""The measured pieces of the package against their references, each candidate timed
interleaved with the others (:func:`~.harness.interleaved`):

- :func:`pgd_benchmark`: ``attacks.pgd`` (per-example early stop) against
  ``torchattacks.PGD``, and the attack's arithmetic rate against a plain ``torch.mm``
  of similar shape;
- :func:`knn_benchmark`: the exact batched k-NN subspace projection against the
  original pipeline (:func:`~.references.knn_original`);
- :func:`decoder_benchmark`: FONTS decoder projections per second;
- :func:`training_step_benchmark`: alignment-loss and adversarial-training steps
  over a plain cross-entropy step.

Each returns flat metrics and rows of raw timings (:data:`~.harness.Timed`).
"""

from __future__ import annotations

import statistics
from typing import Any, Callable

import torch
from torch import Tensor, nn

from ...science import attacks, models, training
from ...science.models import MLP
from .harness import Timed, interleaved, ratios, summary, timing_rows
from .references import knn_original, neighbour_overlap, require_torchattacks
from .workloads import mlp_flops

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
    fraction of the machine's peak: :func:`~.convnet.convnet_rates`).
    FLOPs of ours count one forward and one input-backward pass (:func:`mlp_flops`) per
    gradient evaluation: the steps taken plus the evaluation at which each fooled
    example was found. ``out["ours"]`` receives our
    :class:`~advmanifold.science.attacks.AttackResult`.

    (Over 60 lines for this docstring and the settings it passes on, one per line.)
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

    from ...science.manifolds.knn import knn_projection

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
    from ...science.decoders import sample_theta
    from ...science.manifolds import decoder as decoder_manifold

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
    from ...science.alignment import aligned_cross_entropy, alignment_penalty

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
