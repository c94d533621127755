"""Independent checks of robustness numbers.

A robust accuracy measured with one attack is an upper bound. Here every model is
also attacked with code this project did not write (torchattacks' PGD, FGSM and
APGD-CE, Croce & Hein 2020) and with a stronger run of our own PGD (more steps and
restarts). Cross-entropy attacks miss examples whose loss saturates, so *margin*
attacks follow, the parts of AutoAttack that catch them: APGD with the difference of
logits ratio loss (APGD-DLR), its targeted variant (APGD-T, one run per target among
the highest-scoring wrong classes) and our sign-PGD on the Carlini–Wagner margin
M(x) = max_{j≠y} f_j(x) − f_y(x) (:func:`advmanifold.science.attacks.margin_pgd`).
An example counts as robust only if it survives every attack:

    robust accuracy = mean_i [ f(x_i) = y_i  ∧  ∀ attacks a: f(a(x_i)) = y_i ].

Signs of gradient masking (Athalye et al. 2018; the flags of AutoAttack) are
reported as booleans: a one-step attack beating the iterative one, input gradients
that are exactly zero, and accuracy that does not fall to (near) zero at a large ε.

torchattacks clamps every iterate to [0, 1]. Data that live elsewhere (PMNIST leaves
[0, 1]) are attacked through an affine reparametrisation u = (x − lo)/(hi − lo) with
[lo, hi] wide enough that the ε-ball never touches it, so the threat model is the
same unboxed L∞ ball.

Our attacks are those of :mod:`advmanifold.science.attacks`; this module holds only
the adapter to the third-party library, the verdicts and the masking checks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor, nn

from . import attacks

Forward = Callable[[Tensor], Tensor]


def torchattacks_available() -> bool:
    try:
        import torchattacks  # noqa: F401
    except ImportError:
        return False
    return True


class _UnitBox(nn.Module):
    """model(lo + u (hi − lo)): lets a [0, 1]-only attack library act on [lo, hi]."""

    def __init__(self, forward: Forward, lo: float, hi: float):
        super().__init__()
        self.forward_fn, self.lo, self.scale = forward, lo, hi - lo

    def forward(self, u: Tensor) -> Tensor:
        return self.forward_fn(self.lo + u * self.scale)


#: substrings naming the margin-type attacks (the rest use the cross-entropy)
MARGIN_ATTACKS = ("APGD-DLR", "APGD-T", "PGD-CW")


def is_margin(name: str) -> bool:
    """Whether an attack of :func:`verify` uses a margin-type loss."""
    return any(tag in name for tag in MARGIN_ATTACKS)


def _third_party(
    forward: Forward,
    x: Tensor,
    y: Tensor,
    eps: float,
    *,
    box: tuple[float | None, float | None],
    steps: int,
    restarts: int,
    seed: int,
    margin: bool = True,
    targets: int = 9,
) -> dict[str, Tensor]:
    """Successes (label changed) of torchattacks' FGSM, PGD and APGD-CE, and with
    ``margin`` of APGD-DLR and APGD-T (``targets`` target classes)."""
    import torchattacks

    lower, upper = box
    lo = float(x.min()) - 2 * eps if lower is None else float(lower)
    hi = float(x.max()) + 2 * eps if upper is None else float(upper)
    wrapped = _UnitBox(forward, lo, hi).eval()
    u, e = (x - lo) / (hi - lo), eps / (hi - lo)
    suite = {
        "torchattacks FGSM": torchattacks.FGSM(wrapped, eps=e),
        "torchattacks PGD": torchattacks.PGD(
            wrapped, eps=e, alpha=2.5 * e / steps, steps=steps, random_start=True
        ),
        "torchattacks APGD-CE": torchattacks.APGD(
            wrapped,
            norm="Linf",
            eps=e,
            steps=steps,
            n_restarts=restarts,
            loss="ce",
            seed=seed,
        ),
    }
    if margin:
        with torch.no_grad():
            n_classes = wrapped(u[:1]).shape[1]
        suite["torchattacks APGD-DLR"] = torchattacks.APGD(
            wrapped,
            norm="Linf",
            eps=e,
            steps=steps,
            n_restarts=restarts,
            loss="dlr",
            seed=seed,
        )
        apgdt = torchattacks.APGDT(
            wrapped,
            norm="Linf",
            eps=e,
            steps=steps,
            n_restarts=1,
            seed=seed,
            n_classes=n_classes,
        )
        apgdt.n_target_classes = max(1, min(int(targets), n_classes - 1))
        suite["torchattacks APGD-T"] = apgdt
    found = {}
    for name, attack in suite.items():
        torch.manual_seed(seed)
        u_adv = attack(u, y)
        with torch.no_grad():
            found[name] = wrapped(u_adv).argmax(1) != y
        delta = (u_adv - u).abs().max().item() * (hi - lo)
        if delta > eps * (1 + 1e-4):
            raise RuntimeError(
                f"{name} left the ε-ball: ‖δ‖∞ = {delta:.5f} > ε = {eps}"
            )
    return found


@dataclass
class Verification:
    """Per-attack robust accuracies, their minimum, and masking flags at one ε."""

    eps: float
    clean: Tensor  # bool [N]: correctly classified without attack
    successes: dict[str, Tensor]  # attack name → bool [N]: label changed

    @property
    def robust(self) -> Tensor:
        fooled = torch.stack(list(self.successes.values())).any(0)
        return self.clean & ~fooled

    def accuracies(self) -> dict[str, float]:
        out = {
            name: (self.clean & ~s).float().mean().item()
            for name, s in self.successes.items()
        }
        out["worst case"] = self.robust.float().mean().item()
        return out

    def worst_case(self, names=None) -> float:
        """Accuracy when an example must survive every attack in ``names`` (None:
        all)."""
        chosen = [s for n, s in self.successes.items() if names is None or n in names]
        if not chosen:
            return self.clean.float().mean().item()
        return (self.clean & ~torch.stack(chosen).any(0)).float().mean().item()

    def margin_gain(self) -> float:
        """How much the margin attacks lower the worst case over the cross-entropy ones
        (0 without margin attacks)."""
        ce = [n for n in self.successes if not is_margin(n)]
        return self.worst_case(ce) - self.worst_case()

    def lowering(self) -> list[dict]:
        """Per attack: its accuracy, how much it lowers the clean accuracy, and how much
        it lowers the worst case over the cross-entropy attacks when added to them."""
        clean = self.clean.float().mean().item()
        ce = [n for n in self.successes if not is_margin(n)]
        base = self.worst_case(ce)
        rows = []
        for n, s in self.successes.items():
            accuracy = (self.clean & ~s).float().mean().item()
            rows.append(
                {
                    "attack": n,
                    "loss": "margin" if is_margin(n) else "cross-entropy",
                    "accuracy": accuracy,
                    "lowers clean accuracy by": clean - accuracy,
                    "lowers CE worst case by": base - self.worst_case(ce + [n]),
                }
            )
        return rows


def verify(
    forward: Forward,
    x: Tensor,
    y: Tensor,
    eps: float,
    *,
    box=(0.0, 1.0),
    steps: int = 40,
    strong_steps: int = 200,
    restarts: int = 5,
    seed: int = 0,
    third_party: bool = True,
    margin: bool = True,
    targets: int = 9,
) -> Verification:
    """Attack with our PGD (the chapter's setting and a strong one), our FGSM and, when
    installed and ``third_party``, torchattacks' FGSM, PGD and APGD-CE. With ``margin``
    also our CW-margin PGD (``strong_steps`` × ``restarts``) and torchattacks' APGD-DLR
    and APGD-T (``targets`` target classes), when installed."""
    if int(targets) != targets or targets < 1:
        raise ValueError(f"targets must be an integer >= 1, got {targets!r}")
    lower, upper = box
    with torch.no_grad():
        clean = forward(x).argmax(1) == y
    ours = {
        "ours FGSM": attacks.fgsm(
            forward, x, y, eps=eps, lower=lower, upper=upper
        ).success,
        f"ours PGD-{steps}": attacks.pgd(
            forward,
            x,
            y,
            eps=eps,
            steps=steps,
            lower=lower,
            upper=upper,
            mode="first",
            seed=seed,
        ).success,
        f"ours PGD-{strong_steps}×{restarts}": attacks.pgd(
            forward,
            x,
            y,
            eps=eps,
            steps=strong_steps,
            restarts=restarts,
            lower=lower,
            upper=upper,
            mode="first",
            seed=seed + 1,
        ).success,
    }
    if margin:
        ours[f"ours PGD-CW-{strong_steps}×{restarts}"] = attacks.margin_pgd(
            forward,
            x,
            y,
            eps=eps,
            steps=strong_steps,
            restarts=restarts,
            lower=lower,
            upper=upper,
            seed=seed + 2,
        ).success
    if third_party and torchattacks_available():
        ours.update(
            _third_party(
                forward,
                x,
                y,
                eps,
                box=box,
                steps=steps,
                restarts=restarts,
                seed=seed,
                margin=margin,
                targets=targets,
            )
        )
    return Verification(eps, clean, ours)


def zero_gradient_fraction(forward: Forward, x: Tensor, y: Tensor) -> float:
    """Share of examples whose input gradient of the loss is exactly zero."""
    x = x.detach().requires_grad_(True)
    loss = nn.functional.cross_entropy(forward(x), y, reduction="sum")
    (g,) = torch.autograd.grad(loss, x)
    return (g.flatten(1).abs().amax(1) == 0).float().mean().item()


def masking_flags(
    verification: Verification,
    large_eps_accuracy: float,
    zero_gradients: float,
    *,
    tolerance: float = 0.01,
) -> dict[str, bool]:
    """AutoAttack-style warning signs of gradient masking (True = suspicious)."""
    acc = verification.accuracies()
    fgsm = min(v for k, v in acc.items() if "FGSM" in k)
    pgd = min(v for k, v in acc.items() if "PGD" in k)
    return {
        "fgsm_beats_pgd": fgsm + tolerance < pgd,
        "zero_gradients": zero_gradients > 0.0,
        "large_eps_not_zero": large_eps_accuracy > tolerance,
    }


def third_party_gap(verification: Verification) -> float:
    """How much lower the best third-party attack drives accuracy than our best attack
    (> 0: code this project did not write is stronger; NaN without torchattacks)."""
    acc = verification.accuracies()
    theirs = [v for k, v in acc.items() if k.startswith("torchattacks")]
    ours = [v for k, v in acc.items() if k.startswith("ours")]
    return min(ours) - min(theirs) if theirs else float("nan")
