"""The claims of both papers, each with the rule that judges it from the results files.

A claim reads the chapters' results (``<stem>.json``, see :mod:`advmanifold.results`)
and returns a :class:`Verdict`. Rules compare effects with their spread where a
chapter trained several seeds (a metric ``m`` then comes with ``m_std`` and the
chapter's ``n_seeds``): an effect counts as *reproduced* only when it exceeds
``SPREAD_FACTOR`` standard errors of the difference, *partly* when it merely has the
claimed sign. Thresholds are this book's choices and are printed with each verdict.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Mapping

Results = Mapping[str, Mapping[str, float]]

REPRODUCED, PARTLY, NOT_REPRODUCED, NOT_RUN = "reproduced", "partly", "not reproduced", "not run"
SPREAD_FACTOR = 2.0
MODELS = ("baseline", "robust", "manifold", "manifold_robust")


@dataclass(frozen=True)
class Verdict:
    verdict: str
    measured: str
    rule: str


@dataclass(frozen=True)
class Claim:
    key: str
    source: str       # bibtex key of the paper
    chapter: str      # notebook stem holding the evidence
    figure: str       # label of the figure showing it
    text: str
    paper_value: str  # what the paper reports ("" when it gives no number)
    judge: Callable[[Results], Verdict]

    def verdict(self, results: Results) -> Verdict:
        try:
            return self.judge(results)
        except KeyError as missing:
            return Verdict(NOT_RUN, "", f"missing result {missing}")


def _value(results: Results, stem: str, key: str) -> float:
    return float(results[stem][key])


def _se(results: Results, stem: str, key: str) -> float:
    """Standard error of a seed-averaged metric (0 for a single run)."""
    record = results[stem]
    n = int(record.get("n_seeds", 1))
    return float(record.get(f"{key}_std", 0.0)) / math.sqrt(n) if n > 1 else 0.0


def greater(stem: str, big: str, small: str, *, margin: float = 0.0, what: str = "") -> Callable[[Results], Verdict]:
    """Claim: metric ``big`` exceeds ``small`` (by more than ``margin`` for *reproduced*)."""
    def judge(results: Results) -> Verdict:
        a, b = _value(results, stem, big), _value(results, stem, small)
        noise = SPREAD_FACTOR * math.hypot(_se(results, stem, big), _se(results, stem, small))
        diff = a - b
        verdict = REPRODUCED if diff > max(margin, noise) else PARTLY if diff > 0 else NOT_REPRODUCED
        return Verdict(verdict, f"{what}{a:.3f} vs {b:.3f} (difference {diff:+.3f})",
                       f"difference > max({margin:g}, {SPREAD_FACTOR:g}·SE = {noise:.3f}); partly if > 0")
    return judge


def not_greater(stem: str, a_key: str, b_key: str, what: str = "") -> Callable[[Results], Verdict]:
    """Claim: ``a`` does not exceed ``b`` beyond the seed spread."""
    def judge(results: Results) -> Verdict:
        a, b = _value(results, stem, a_key), _value(results, stem, b_key)
        noise = SPREAD_FACTOR * math.hypot(_se(results, stem, a_key), _se(results, stem, b_key))
        verdict = REPRODUCED if a - b <= noise else NOT_REPRODUCED
        return Verdict(verdict, f"{what}{a:.3f} vs {b:.3f} (difference {a - b:+.3f})",
                       f"difference ≤ {SPREAD_FACTOR:g}·SE = {noise:.3f}")
    return judge


def small_relative(stem: str, key: str, reference: str, *, good: float, fair: float) -> Callable[[Results], Verdict]:
    """Claim: ``key`` is near zero, i.e. small relative to ``reference``."""
    def judge(results: Results) -> Verdict:
        a, ref = _value(results, stem, key), _value(results, stem, reference)
        ratio = a / ref if ref > 0 else math.inf
        verdict = REPRODUCED if ratio <= good else PARTLY if ratio <= fair else NOT_REPRODUCED
        return Verdict(verdict, f"{a:.3f} ({ratio:.2f} × {reference} = {ref:.3f})",
                       f"ratio ≤ {good:g}; partly if ≤ {fair:g}")
    return judge


def ratio_between(stem: str, key: str, reference: str, *, good: tuple[float, float],
                  fair: tuple[float, float]) -> Callable[[Results], Verdict]:
    """Claim: ``key`` / ``reference`` lies in an interval (e.g. distributions match)."""
    def judge(results: Results) -> Verdict:
        a, ref = _value(results, stem, key), _value(results, stem, reference)
        ratio = a / ref if ref > 0 else math.inf
        inside = lambda lo_hi: lo_hi[0] <= ratio <= lo_hi[1]  # noqa: E731
        verdict = REPRODUCED if inside(good) else PARTLY if inside(fair) else NOT_REPRODUCED
        return Verdict(verdict, f"{a:.3f} / {ref:.3f} = {ratio:.2f}",
                       f"ratio in [{good[0]:g}, {good[1]:g}]; partly in [{fair[0]:g}, {fair[1]:g}]")
    return judge


def at_least(stem: str, key: str, *, good: float, fair: float, unit: str = "") -> Callable[[Results], Verdict]:
    def judge(results: Results) -> Verdict:
        a = _value(results, stem, key)
        verdict = REPRODUCED if a >= good else PARTLY if a >= fair else NOT_REPRODUCED
        return Verdict(verdict, f"{a:.3f}{unit}", f"≥ {good:g}{unit}; partly if ≥ {fair:g}{unit}")
    return judge


def close_to(stem: str, key: str, target: float, *, good: float, fair: float) -> Callable[[Results], Verdict]:
    def judge(results: Results) -> Verdict:
        a = _value(results, stem, key)
        gap = abs(a - target)
        verdict = REPRODUCED if gap <= good else PARTLY if gap <= fair else NOT_REPRODUCED
        return Verdict(verdict, f"{a:.3f}", f"|value − {target:g}| ≤ {good:g}; partly if ≤ {fair:g}")
    return judge


F, M, P = "01_fonts", "02_mnist", "03_pmnist"
STUTZ, GEYER = "stutz2019disentangling", "geyer2023relationship"

CLAIMS: tuple[Claim, ...] = (
    Claim("fonts-test-on-manifold", STUTZ, F, "fig-fonts-distances",
          "FONTS test examples lie on the manifold (distance ≈ 0)", "0 (by construction)",
          small_relative(F, "distance_test_median", "distance_regular_median", good=0.1, fair=0.3)),
    Claim("fonts-onmanifold-adv", STUTZ, F, "fig-fonts-distances",
          "FONTS on-manifold adversarial examples have distance ≈ 0", "0 (by construction)",
          small_relative(F, "distance_onmanifold_median", "distance_regular_median", good=0.1, fair=0.3)),
    Claim("fonts-regular-off", STUTZ, F, "fig-fonts-distances",
          "FONTS regular adversarial examples lie clearly off the manifold", "clearly > 0",
          greater(F, "distance_regular_median", "distance_test_median", margin=0.5, what="median distance ")),
    Claim("fonts-orthogonal", STUTZ, F, "fig-fonts-distances",
          "On FONTS the distance nearly equals ‖δ‖₂: δ leaves the manifold orthogonally", "≈ 1",
          at_least(F, "regular_distance_over_l2_median", good=0.9, fair=0.7)),
    Claim("mnist-onmanifold-matches-test", STUTZ, M, "fig-mnist-distances",
          "On MNIST on-manifold adversarial examples are as far from the k-NN manifold as test examples",
          "distributions nearly match",
          ratio_between(M, "knn_distance_onmanifold_median", "knn_distance_test_median",
                        good=(0.67, 1.5), fair=(0.5, 2.0))),
    Claim("mnist-regular-off", STUTZ, M, "fig-mnist-distances",
          "On MNIST regular adversarial examples are clearly farther from the manifold than test examples",
          "clearly larger",
          greater(M, "knn_distance_regular_median", "knn_distance_test_median", margin=0.5, what="median distance ")),
    Claim("mnist-orthogonal", STUTZ, M, "fig-mnist-distances",
          "On MNIST regular perturbations are nearly orthogonal to the manifold", "≈ 90°",
          at_least(M, "regular_angle_deg_median", good=75.0, fair=60.0, unit="°")),
    Claim("pmnist-baseline-accuracy", GEYER, P, "fig-pmnist-images",
          "A baseline MLP reaches about 92% test accuracy on PMNIST", "92%",
          close_to(P, "accuracy_baseline", 0.92, good=0.02, fair=0.05)),
    Claim("robust-aligned", GEYER, P, "fig-pmnist-alignment",
          "Adversarial training aligns gradients with the manifold (Robust > Baseline)", "Fig. 1",
          greater(P, "alignment_cosine_median_robust", "alignment_cosine_median_baseline", what="cosine ")),
    Claim("manifold-aligned", GEYER, P, "fig-pmnist-alignment",
          "The alignment loss aligns gradients (Manifold > Baseline)", "Fig. 1",
          greater(P, "alignment_cosine_median_manifold", "alignment_cosine_median_baseline", what="cosine ")),
    Claim("robust-less-than-manifold", GEYER, P, "fig-pmnist-alignment",
          "Robust is slightly less aligned than Manifold", "Fig. 1",
          greater(P, "alignment_cosine_median_manifold", "alignment_cosine_median_robust", what="cosine ")),
    Claim("manifold-fgsm", GEYER, P, "fig-pmnist-robustness",
          "Manifold is slightly more robust than Baseline under FGSM (ε = 0.1)", "Fig. 3",
          greater(P, "fgsm_accuracy_manifold_eps0.1", "fgsm_accuracy_baseline_eps0.1", what="accuracy ")),
    Claim("manifold-pgd", GEYER, P, "fig-pmnist-robustness",
          "Manifold is slightly more robust than Baseline under PGD (ε = 0.1)", "Fig. 3",
          greater(P, "pgd_accuracy_manifold_eps0.1", "pgd_accuracy_baseline_eps0.1", what="accuracy ")),
    Claim("robust-much-more", GEYER, P, "fig-pmnist-robustness",
          "Robust is much more robust than Baseline under PGD (ε = 0.1)", "Fig. 3",
          greater(P, "pgd_accuracy_robust_eps0.1", "pgd_accuracy_baseline_eps0.1", margin=0.2, what="accuracy ")),
    Claim("manifold-robust-fgsm", GEYER, P, "fig-pmnist-robustness",
          "Manifold Robust beats Robust under FGSM (ε = 0.1)", "Fig. 3",
          greater(P, "fgsm_accuracy_manifold_robust_eps0.1", "fgsm_accuracy_robust_eps0.1", what="accuracy ")),
    Claim("manifold-robust-not-pgd", GEYER, P, "fig-pmnist-robustness",
          "… but not under PGD (ε = 0.1)", "Fig. 3",
          not_greater(P, "pgd_accuracy_manifold_robust_eps0.1", "pgd_accuracy_robust_eps0.1", what="accuracy ")),
    Claim("alignment-orthogonal-boundaries", GEYER, P, "fig-pmnist-crossing",
          "Alignment makes data more orthogonal to decision boundaries (crossing angle Manifold > Baseline)",
          "Fig. 2",
          greater(P, "crossing_angle_deg_median_manifold", "crossing_angle_deg_median_baseline", what="angle ")),
)


def ledger(results: Results):
    """One row per claim: paper, claim, the paper's value, the measured value, verdict, rule."""
    import pandas as pd

    rows = []
    for claim in CLAIMS:
        v = claim.verdict(results)
        rows.append({"key": claim.key, "source": claim.source, "chapter": claim.chapter, "figure": claim.figure,
                     "claim": claim.text, "paper": claim.paper_value, "measured": v.measured,
                     "verdict": v.verdict, "rule": v.rule})
    return pd.DataFrame(rows)
