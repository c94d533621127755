"""Every claim of the book, each with the rule that judges it from the chapters'
results (the rules and the ledger's machinery: :mod:`advmanifold.book.ledger`).

The ledger chapter (``05_claims``) judges all of them, on this build's results and on
the paper-scale record; each chapter's notebook shows those whose evidence it holds
(:func:`verdicts`). Keys are stable: the committed records and the book's prose refer
to them. A claim of a few parts (:func:`~advmanifold.book.ledger.all_of`) holds as far
as its weakest part.
"""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd

from ..book.ledger import (
    Claim,
    all_of,
    at_every_size,
    at_least,
    at_size,
    close_to,
    correlation,
    greater,
    ledger,
    not_greater,
    ratio_between,
    small_relative,
)
from . import dimpled as _dimpled
from . import fonts, generalization, mnist, pmnist
from . import init_scale as _init_scale

STUTZ, GEYER = "stutz2019disentangling", "geyer2023relationship"
MELAMED, SHAMIR = "melamed2023adversarial", "shamir2021dimpled"
#: The papers whose claims the ledger judges: bibliography key → short name.
SOURCES = {
    STUTZ: "Stutz et al. 2019",
    GEYER: "Geyer et al. 2023",
    SHAMIR: "Shamir et al. 2021",
    MELAMED: "Melamed et al. 2023",
}
F, M, P, G = fonts.STEM, mnist.STEM, pmnist.STEM, generalization.STEM
_I, _D = _init_scale.STEM, _dimpled.STEM

#: FONTS on fewer legible faces than its profile asks for measures something else
#: than the paper: its claims are then not comparable
FONTS_FALLBACK = (
    "fonts_fallback",
    (
        "FONTS ran on fallback fonts: {n_fonts:.0f} legible faces, fewer than its "
        "profile asks for"
    ),
    "FONTS ran on fallback fonts, fewer legible faces than its profile asks for",
)
#: the generalization chapter's original grid, of which a ``paper`` run may do part:
#: its extent over all six methods, then over the original four
_GEN_PAPER = generalization.SETTINGS["paper"]
GENERALIZATION_GRID = (
    ("n_large", max(_GEN_PAPER["sizes"]), "largest N"),
    ("n_seeds", _GEN_PAPER["n_seeds"], "seeds"),
    ("n_large_original", max(_GEN_PAPER["sizes"]), "original four's largest N"),
    ("n_seeds_original", _GEN_PAPER["n_seeds"], "original four's seeds"),
)

CLAIMS: tuple[Claim, ...] = (
    Claim(
        "fonts-test-on-manifold",
        STUTZ,
        F,
        "fig-fonts-distances",
        "FONTS test examples lie on the manifold (distance ≈ 0)",
        "0 (by construction)",
        small_relative(
            F, "distance_test_median", "distance_regular_median", good=0.1, fair=0.3
        ),
        fallback=FONTS_FALLBACK,
    ),
    Claim(
        "fonts-onmanifold-adv",
        STUTZ,
        F,
        "fig-fonts-distances",
        "FONTS on-manifold adversarial examples have distance ≈ 0",
        "0 (by construction)",
        small_relative(
            F,
            "distance_onmanifold_median",
            "distance_regular_median",
            good=0.1,
            fair=0.3,
        ),
        fallback=FONTS_FALLBACK,
    ),
    Claim(
        "fonts-regular-off",
        STUTZ,
        F,
        "fig-fonts-distances",
        "FONTS regular adversarial examples lie clearly off the manifold",
        "clearly > 0",
        greater(
            F,
            "distance_regular_median",
            "distance_test_median",
            margin=0.5,
            what="median distance ",
        ),
        fallback=FONTS_FALLBACK,
    ),
    Claim(
        "fonts-orthogonal",
        STUTZ,
        F,
        "fig-fonts-distances",
        "On FONTS the distance nearly equals ‖δ‖₂: δ leaves the manifold orthogonally",
        "≈ 1",
        at_least(F, "regular_distance_over_l2_median", good=0.9, fair=0.7),
        fallback=FONTS_FALLBACK,
    ),
    Claim(
        "mnist-onmanifold-matches-test",
        STUTZ,
        M,
        "fig-mnist-distances",
        "On MNIST on-manifold adversarial examples are as far from the k-NN manifold "
        "as test examples",
        "distributions nearly match",
        ratio_between(
            M,
            "knn_distance_onmanifold_median",
            "knn_distance_test_median",
            good=(0.67, 1.5),
            fair=(0.5, 2.0),
        ),
    ),
    Claim(
        "mnist-regular-off",
        STUTZ,
        M,
        "fig-mnist-distances",
        "On MNIST regular adversarial examples are clearly farther from the manifold "
        "than test examples",
        "clearly larger",
        greater(
            M,
            "knn_distance_regular_median",
            "knn_distance_test_median",
            margin=0.5,
            what="median distance ",
        ),
    ),
    Claim(
        "mnist-orthogonal",
        STUTZ,
        M,
        "fig-mnist-distances",
        "On MNIST regular perturbations are nearly orthogonal to the manifold",
        "≈ 90°",
        at_least(M, "regular_angle_deg_median", good=75.0, fair=60.0, unit="°"),
    ),
    Claim(
        "pmnist-baseline-accuracy",
        GEYER,
        P,
        "fig-pmnist-images",
        "A baseline MLP reaches about 92% test accuracy on PMNIST",
        "92%",
        close_to(P, "accuracy_baseline", 0.92, good=0.02, fair=0.05),
    ),
    Claim(
        "robust-aligned",
        GEYER,
        P,
        "fig-pmnist-alignment",
        "Adversarial training aligns gradients with the manifold (Robust > Baseline)",
        "Fig. 1",
        greater(
            P,
            "alignment_cosine_median_robust",
            "alignment_cosine_median_baseline",
            what="cosine ",
        ),
    ),
    Claim(
        "manifold-aligned",
        GEYER,
        P,
        "fig-pmnist-alignment",
        "The alignment loss aligns gradients (Manifold > Baseline)",
        "Fig. 1",
        greater(
            P,
            "alignment_cosine_median_manifold",
            "alignment_cosine_median_baseline",
            what="cosine ",
        ),
    ),
    Claim(
        "robust-less-than-manifold",
        GEYER,
        P,
        "fig-pmnist-alignment",
        "Robust is slightly less aligned than Manifold",
        "Fig. 1",
        greater(
            P,
            "alignment_cosine_median_manifold",
            "alignment_cosine_median_robust",
            what="cosine ",
        ),
    ),
    Claim(
        "manifold-fgsm",
        GEYER,
        P,
        "fig-pmnist-robustness",
        "Manifold is slightly more robust than Baseline under FGSM (ε = 0.1)",
        "Fig. 3",
        greater(
            P,
            "fgsm_accuracy_manifold_eps0.1",
            "fgsm_accuracy_baseline_eps0.1",
            what="accuracy ",
        ),
    ),
    Claim(
        "manifold-pgd",
        GEYER,
        P,
        "fig-pmnist-robustness",
        "Manifold is slightly more robust than Baseline under PGD (ε = 0.1)",
        "Fig. 3",
        greater(
            P,
            "pgd_accuracy_manifold_eps0.1",
            "pgd_accuracy_baseline_eps0.1",
            what="accuracy ",
        ),
    ),
    Claim(
        "robust-much-more",
        GEYER,
        P,
        "fig-pmnist-robustness",
        "Robust is much more robust than Baseline under PGD (ε = 0.1)",
        "Fig. 3",
        greater(
            P,
            "pgd_accuracy_robust_eps0.1",
            "pgd_accuracy_baseline_eps0.1",
            margin=0.2,
            what="accuracy ",
        ),
    ),
    Claim(
        "robust-much-more-than-manifold",
        GEYER,
        P,
        "fig-pmnist-robustness",
        "Robust is much more robust than Manifold under FGSM and PGD (ε = 0.1)",
        "Fig. 3",
        all_of(
            FGSM=greater(
                P,
                "fgsm_accuracy_robust_eps0.1",
                "fgsm_accuracy_manifold_eps0.1",
                margin=0.1,
                what="accuracy ",
            ),
            PGD=greater(
                P,
                "pgd_accuracy_robust_eps0.1",
                "pgd_accuracy_manifold_eps0.1",
                margin=0.1,
                what="accuracy ",
            ),
        ),
    ),
    Claim(
        "manifold-robust-fgsm",
        GEYER,
        P,
        "fig-pmnist-robustness",
        "Manifold Robust beats Robust under FGSM (ε = 0.1)",
        "Fig. 3",
        greater(
            P,
            "fgsm_accuracy_manifold_robust_eps0.1",
            "fgsm_accuracy_robust_eps0.1",
            what="accuracy ",
        ),
    ),
    Claim(
        "manifold-robust-not-pgd",
        GEYER,
        P,
        "fig-pmnist-robustness",
        "… but not under PGD (ε = 0.1)",
        "Fig. 3",
        not_greater(
            P,
            "pgd_accuracy_manifold_robust_eps0.1",
            "pgd_accuracy_robust_eps0.1",
            what="accuracy ",
        ),
    ),
    Claim(
        "alignment-orthogonal-boundaries",
        GEYER,
        P,
        "fig-pmnist-crossing",
        "Alignment makes data more orthogonal to decision boundaries "
        "(crossing angle Manifold > Baseline)",
        "Fig. 2",
        greater(
            P,
            "crossing_angle_deg_median_manifold",
            "crossing_angle_deg_median_baseline",
            what="angle ",
        ),
    ),
    Claim(
        "alignment-orthogonal-interclass",
        GEYER,
        P,
        "fig-pmnist-crossing",
        "… also on the path to another digit (crossing angle Manifold > Baseline)",
        "Fig. 2",
        greater(
            P,
            "crossing_angle_interclass_deg_median_manifold",
            "crossing_angle_interclass_deg_median_baseline",
            what="angle ",
        ),
    ),
    Claim(
        "alignment-normals-in-manifold",
        GEYER,
        P,
        "fig-pmnist-crossing",
        "… and boundary normals lie more in the manifold, i.e. boundaries are more "
        "orthogonal to it (cosine of normal and manifold Manifold > Baseline)",
        "Fig. 2",
        greater(
            P,
            "boundary_normal_cosine_median_manifold",
            "boundary_normal_cosine_median_baseline",
            what="cosine ",
        ),
    ),
    Claim(
        "onadv-generalizes",
        STUTZ,
        G,
        "fig-gen-test-error",
        "On-manifold adversarial training lowers test error relative to Normal "
        "at small N",
        "yes (FONTS)",
        at_size(
            G,
            "n_small",
            greater,
            "test_error_Normal_n{n}",
            "test_error_OnAdvTrain_n{n}",
            what="test error ",
        ),
        grid=GENERALIZATION_GRID,
    ),
    Claim(
        "offadv-no-generalization",
        STUTZ,
        G,
        "fig-gen-test-error",
        "Regular adversarial training does not lower test error",
        "yes",
        at_every_size(
            G,
            not_greater,
            "test_error_Normal_n{n}",
            "test_error_OffAdvTrain_n{n}",
            what="test error Normal vs OffAdvTrain, ",
        ),
        grid=GENERALIZATION_GRID,
    ),
    Claim(
        "onmanifold-is-generalization",
        STUTZ,
        G,
        "fig-gen-scatter",
        "On-manifold success rate falls as test error falls (rank correlation "
        "over all models)",
        "yes",
        correlation(
            G, "rank_corr_onmanifold_success_vs_test_error", positive=True, good=0.5
        ),
        grid=GENERALIZATION_GRID,
    ),
    Claim(
        "onmanifold-is-generalization-original",
        STUTZ,
        G,
        "fig-gen-scatter",
        "… and under the original's success protocol (per-attempt mean of its "
        "Adam attack)",
        "yes",
        correlation(
            G,
            "rank_corr_onmanifold_success_original_vs_test_error",
            positive=True,
            good=0.5,
        ),
        grid=GENERALIZATION_GRID,
    ),
    Claim(
        "readme-levels-reproduce",
        STUTZ,
        G,
        "fig-gen-readme",
        "The README's on-manifold success rates on FONTS reproduce like for like "
        "(original protocol, rows and fonts): share of its cells (method, N) with "
        "|ours − README| ≤ 0.05 or within 2 SE",
        "README figure",
        at_least(G, "anchor_reproduced_share", good=1.0, fair=0.5),
        grid=GENERALIZATION_GRID,
    ),
    Claim(
        "robustness-not-generalization",
        STUTZ,
        G,
        "fig-gen-regular",
        "Regular robustness does not come with lower test error (no positive "
        "rank correlation of regular success and test error)",
        "yes",
        correlation(
            G, "rank_corr_regular_success_vs_test_error", positive=False, good=0.3
        ),
        grid=GENERALIZATION_GRID,
    ),
    Claim(
        "curved-alignment-fgsm",
        GEYER,
        G,
        "fig-gen-regular",
        "Alignment with the curved manifold's tangent space raises FGSM "
        "robustness at a small ε (Aligned > Normal, largest N)",
        "future work",
        at_size(
            G,
            "n_large",
            greater,
            "fgsm_accuracy_Aligned_n{n}",
            "fgsm_accuracy_Normal_n{n}",
            what="accuracy ",
        ),
        grid=GENERALIZATION_GRID,
    ),
    Claim(
        "curved-alignment-pgd",
        GEYER,
        G,
        "fig-gen-regular",
        "… and PGD robustness at the same ε (Aligned > Normal, largest N)",
        "future work",
        at_size(
            G,
            "n_large",
            greater,
            "pgd_accuracy_Aligned_n{n}",
            "pgd_accuracy_Normal_n{n}",
            what="accuracy ",
        ),
        grid=GENERALIZATION_GRID,
    ),
)


def of_chapter(stem: str) -> tuple[Claim, ...]:
    """The claims whose evidence chapter ``stem`` holds."""
    return tuple(c for c in CLAIMS if c.chapter == stem)


def chapters() -> list[str]:
    """The chapters holding the evidence of the claims."""
    return sorted({c.chapter for c in CLAIMS})


def verdicts(stem: str, metrics: Mapping[str, float]) -> pd.DataFrame:
    """Chapter ``stem``'s claims judged on this run's ``metrics`` by the ledger, one
    row per claim key: claim, paper, verdict, measured, rule, note."""
    frame = ledger({stem: dict(metrics)}, claims=of_chapter(stem)).set_index("key")
    return frame[["claim", "paper", "verdict", "measured", "rule", "note"]]


# -- initialisation scale and weight decay on PMNIST (Melamed et al.; issue 26) --------
# Appended as its own block: CLAIMS grows by the chapter's three claims, each judged on
# both architectures (the weakest part decides). "small_init" is the smallest c of the
# grid at λ = 0, "large_wd" the largest λ at c = 1, "base" c = 1, λ = 0; the share is
# the median ‖(I − P)g‖/‖g‖ of the margin's input gradient, the survival the share of
# correctly classified test images that L2 PGD restricted as named does not flip,
# averaged over the ε grid.


def _lowers_share_raises_survival(point: str):
    """Per architecture: share(base) > share(point) and survival ⟂ S (point) >
    survival ⟂ S (base), each beyond 2 SE over seeds (partly: in sign)."""
    parts = {}
    for arch in _init_scale.ARCHS:
        name = _init_scale.NAMES[arch]
        parts[f"{name} share"] = greater(
            _I, f"orth_share_{arch}_base", f"orth_share_{arch}_{point}", what="share "
        )
        parts[f"{name} survival ⟂ S"] = greater(
            _I,
            f"survival_orthogonal_{arch}_{point}",
            f"survival_orthogonal_{arch}_base",
            what="survival ",
        )
    return all_of(**parts)


def _no_gain_within_subspace():
    """Per architecture and knob: survival in S (point) − survival in S (base)
    ≤ 2 SE."""
    return all_of(
        **{
            f"{_init_scale.NAMES[arch]} {label}": not_greater(
                _I,
                f"survival_subspace_{arch}_{point}",
                f"survival_subspace_{arch}_base",
                what="survival in S ",
            )
            for arch in _init_scale.ARCHS
            for point, label in (("small_init", "small c"), ("large_wd", "large λ"))
        }
    )


CLAIMS = CLAIMS + (
    Claim(
        "initscale-small-init",
        MELAMED,
        _I,
        "fig-initscale-share",
        "A smaller initialisation scale lowers the share of the input gradient "
        "orthogonal to the data subspace and raises robustness to perturbations "
        "orthogonal to it (PMNIST, two-layer net and MLP)",
        "yes (theory, two-layer)",
        _lowers_share_raises_survival("small_init"),
    ),
    Claim(
        "initscale-weight-decay",
        MELAMED,
        _I,
        "fig-initscale-share",
        "L2 regularisation (weight decay) does the same",
        "yes (theory, two-layer)",
        _lowers_share_raises_survival("large_wd"),
    ),
    Claim(
        "initscale-no-gain-in-subspace",
        MELAMED,
        _I,
        "fig-initscale-robustness-init",
        "Robustness to perturbations within the data subspace does not improve "
        "alongside (neither with a smaller c nor with weight decay)",
        "implied",
        _no_gain_within_subspace(),
    ),
)


# -- the dimpled manifold model on FONTS (Shamir et al. 2021; issue 26, part 1) --------
# Appended as its own block. Every share is the mean over test images of
# ‖P_T v‖/‖v‖ with T the exact FONTS tangent space; the random baseline is the mean
# share of Gaussian directions against the same T (≈ √(6/784)). "final" is the last
# checkpoint of the FONTS-data ConvNet, "early" the end of its early phase (a
# fraction of the first epoch, the chapter's setting); each mean carries its
# per-image spread and count, so the ledger's 2·SE is over test images.

CLAIMS = CLAIMS + (
    Claim(
        "dimpled-perturbations-normal",
        SHAMIR,
        _D,
        "fig-dimpled-shares",
        "Adversarial perturbations are nearly normal to the data manifold: the mean "
        "tangent share of L2 and L∞ PGD perturbations is at most twice a random "
        "direction's (FONTS, exact tangent space, end of training)",
        "nearly normal (approximate manifold)",
        all_of(
            L2=small_relative(
                _D, "l2_share_mean_final", "random_share_mean", good=2.0, fair=4.0
            ),
            Linf=small_relative(
                _D, "linf_share_mean_final", "random_share_mean", good=2.0, fair=4.0
            ),
        ),
    ),
    Claim(
        "dimpled-clinging",
        SHAMIR,
        _D,
        "fig-dimpled-shares",
        "Early in training the boundary clings to the manifold: the input gradient's "
        "mean tangent share falls from step 0 to the end of the early phase",
        "first phase of training",
        greater(
            _D,
            "grad_share_mean_step0",
            "grad_share_mean_early",
            what="tangent share at step 0 vs early ",
        ),
    ),
    Claim(
        "dimpled-normal-closer",
        SHAMIR,
        _D,
        "fig-dimpled-distances",
        "The decision boundary is closer along the normal part of the input gradient "
        "than along its tangent part for most test images (share > 1/2)",
        "implied",
        greater(
            _D,
            "normal_closer_fraction_final",
            "chance_fraction",
            what="share of images ",
        ),
    ),
)
