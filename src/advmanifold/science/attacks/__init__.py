"""Every attack of the book, in one place: one PGD engine, threat models per attacked
space, and one file per attack.

- :mod:`~advmanifold.science.attacks.engine`: the PGD loop (sign or normalised
  steps, modes ``"first"`` and ``"best"``, restarts, per-example early stop, chunks),
  the losses and :class:`AttackResult`;
- :mod:`~advmanifold.science.attacks.threats`: what moves and where: an image in an
  L∞ ball ∩ box (with a decoder as ``to_input``: a latent code in a box), an image in
  an L2 ball ∩ box, a perturbation in a subspace within an L2 ball;
- :mod:`~advmanifold.science.attacks.linf`: :func:`pgd`, :func:`fgsm`,
  :func:`robust_accuracy` and adversarial training's examples
  (:func:`adversarial_examples`);
- :mod:`~advmanifold.science.attacks.l2`: :func:`pgd_l2` and the subspace-restricted
  :func:`restricted_l2_pgd`;
- :mod:`~advmanifold.science.attacks.adam`: the original protocol of Stutz et al.
  (:func:`adam_attack`: Adam, several attempts, per-attempt success);
- :mod:`~advmanifold.science.attacks.theta`: the FONTS manifold's θ box
  (:func:`attack_theta`, :func:`onmanifold_examples`) and the spatial-transformer
  attack (:func:`stn_examples`);
- :mod:`~advmanifold.science.attacks.latent`: :func:`latent_pgd` on a generative
  model's codes;
- :mod:`~advmanifold.science.attacks.views`: margin and targeted attacks through
  two-logit views (:func:`margin_pgd`, :func:`targeted_pgd`).

Attacks written by others (torchattacks) and the checks for gradient masking are in
:mod:`advmanifold.science.verification`, apart from these.
"""

from .adam import AttemptsResult, adam_attack
from .engine import MODES, AttackResult, largest_loss_examples, margin, run_pgd
from .l2 import pgd_l2, restricted_l2_pgd
from .latent import latent_pgd
from .linf import adversarial_examples, fgsm, pgd, robust_accuracy
from .views import margin_pgd, targeted, targeted_pgd
from .theta import ThetaBox, WarpBox, attack_theta, onmanifold_examples, stn_examples
from .threats import L2Ball, LinfBall, SubspaceL2

__all__ = [
    "MODES",
    "AttackResult",
    "AttemptsResult",
    "L2Ball",
    "LinfBall",
    "SubspaceL2",
    "ThetaBox",
    "WarpBox",
    "adam_attack",
    "adversarial_examples",
    "attack_theta",
    "fgsm",
    "largest_loss_examples",
    "latent_pgd",
    "margin",
    "margin_pgd",
    "onmanifold_examples",
    "pgd",
    "pgd_l2",
    "restricted_l2_pgd",
    "robust_accuracy",
    "run_pgd",
    "stn_examples",
    "targeted",
    "targeted_pgd",
]
