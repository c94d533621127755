"""The PGD engine: projected gradient ascent on a loss, over any threat model.

An attack moves a variable ``v`` (an image, a latent code, the affine parameters θ of
the FONTS decoder, or a perturbation δ) inside a set B(v₀) around its clean value;
a *threat model* (:mod:`~advmanifold.science.attacks.threats`) says what ``v`` is and
how it moves: the per-example context it needs (``bind``: e.g. the bounds of the
L∞ ball ∩ box), the variable at the clean point (``origin``), a random start, one
ascent step followed by the projection onto B (``step``), and the map from ``v`` to
the classifier's input (``to_input``: the identity for images, the decoder for θ and
z, x + δ for a perturbation). :func:`run_pgd` iterates

    v_{t+1} = step(v_t, ∇_v L(f(to_input(v_t)), y))

with L a per-example loss (:func:`cross_entropy` unless told otherwise).

``mode="first"`` keeps, per example, the first iterate whose predicted label differs
from ``y`` and stops updating that example (the setting of Stutz et al.); fooled
examples leave the batch (the iterate, the label and the threat's context are kept
*compacted*), so later steps cost less. ``mode="best"`` runs all steps and keeps the
iterate of largest loss (the setting for robust accuracy). Restarts re-run the
attack from a fresh random start, in ``"first"`` mode only on the examples not fooled
yet.

Random starts come from one generator seeded with ``seed`` for the whole call, or,
given ``ids`` (the examples' identities, e.g. their indices in the test set), from
one generator per example and restart seeded with a hash of (seed, restart, id):
then an example's start does not depend on the other examples of its batch, and an
attack split into chunks of examples draws the same starts as one call over all.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import partial
from typing import Callable, Protocol

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .. import models
from ..compute import flush_denormals

Forward = Callable[[Tensor], Tensor]
Loss = Callable[[Tensor, Tensor], Tensor]
Bound = float | Tensor | None

MODES = ("first", "best")
#: floor of a norm before dividing by it
TINY = 1e-12


@dataclass
class AttackResult:
    """Outcome of an attack on a batch.

    ``adversarial`` has the shape of the attacked variable; ``success`` is True
    where the prediction on it differs from the label; ``steps`` counts the
    gradient steps used per example (summed over restarts).
    """

    adversarial: Tensor
    success: Tensor
    steps: Tensor

    @property
    def success_rate(self) -> float:
        return self.success.float().mean().item()


class Threat(Protocol):
    """What an attack moves and where (see the module docstring)."""

    def bind(self, x: Tensor, rows: slice) -> tuple[Tensor, ...]: ...

    def origin(self, x: Tensor) -> Tensor: ...

    def random_start(self, v0: Tensor, ctx: tuple, generator) -> Tensor: ...

    def step(self, v: Tensor, grad: Tensor, ctx: tuple) -> Tensor: ...

    def to_input(self, v: Tensor, ctx: tuple) -> Tensor: ...


# --- losses ---------------------------------------------------------------------------


def cross_entropy(logits: Tensor, y: Tensor) -> Tensor:
    """CE(logits, y) per example, in the logits' dtype."""
    return F.cross_entropy(logits, y, reduction="none")


def cross_entropy_float64(logits: Tensor, y: Tensor) -> Tensor:
    """CE per example evaluated in float64: in float32, 1 − p_y rounds to 0 once the
    logit margin exceeds about 16, and the gradient loses its true-class term (a
    wrong direction, which normalised steps would follow)."""
    return F.cross_entropy(logits.double(), y, reduction="none")


def margin(logits: Tensor, y: Tensor) -> Tensor:
    """m = z_y − max_{j≠y} z_j per example (> 0 iff classified correctly, ties
    aside)."""
    true = logits.gather(1, y[:, None]).squeeze(1)
    other = logits.scatter(1, y[:, None], -torch.inf).amax(1)
    return true - other


def negative_margin(logits: Tensor, y: Tensor) -> Tensor:
    """−m = max_{j≠y} z_j − z_y: ascent on it lowers the margin. Unlike the
    cross-entropy it does not saturate."""
    return -margin(logits, y)


# --- pieces shared by the attacks -----------------------------------------------------


def check(eps: float, steps: int, step_size: float, restarts: int, mode: str) -> None:
    """The arguments of an L∞ attack, or ValueError."""
    if not eps > 0:
        raise ValueError(f"eps must be > 0, got {eps!r}")
    if int(steps) != steps or steps < 1:
        raise ValueError(f"steps must be an integer >= 1, got {steps!r}")
    if not step_size > 0:
        raise ValueError(f"step_size must be > 0, got {step_size!r}")
    if int(restarts) != restarts or restarts < 1:
        raise ValueError(f"restarts must be an integer >= 1, got {restarts!r}")
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")


def step_size_or_default(eps, steps: int, step_size):
    """``step_size``, or 2.5 ε / steps when None (Madry et al.)."""
    return 2.5 * eps / steps if step_size is None else step_size


def check_lengths(x: Tensor, y: Tensor) -> None:
    if x.shape[0] != y.shape[0]:
        raise ValueError(
            f"x and y must have the same length, got {x.shape[0]} and {y.shape[0]}"
        )


def generator_of(seed: int | None) -> torch.Generator | None:
    """A CPU generator seeded with ``seed`` (None: torch's global one)."""
    return torch.Generator().manual_seed(seed) if seed is not None else None


def example_seed(seed: int, restart: int, example: int) -> int:
    """The seed of one example's random start: 32 bits of sha256("seed:restart:id")
    (a CPU generator keeps 32 bits of its seed)."""
    digest = hashlib.sha256(f"{seed}:{restart}:{example}".encode()).digest()
    return int.from_bytes(digest[:4], "little")


def keyed_start(
    threat: Threat, v0: Tensor, ctx: tuple, seed: int, restart: int, ids: Tensor
) -> Tensor:
    """``threat.random_start`` drawn example by example, example ``ids[i]`` from a
    generator seeded with :func:`example_seed` (seed, restart, ids[i])."""
    starts = [
        threat.random_start(
            v0[i : i + 1],
            tuple(c[i : i + 1] for c in ctx),
            torch.Generator().manual_seed(example_seed(seed, restart, k)),
        )
        for i, k in enumerate(ids.tolist())
    ]
    return torch.cat(starts) if starts else v0.clone()


def gradient(
    forward: Forward, v: Tensor, y: Tensor, loss: Loss = cross_entropy
) -> tuple[Tensor, Tensor, Tensor]:
    """Logits, per-example loss and ∇_v of the summed loss at v."""
    v = v.detach().requires_grad_(True)
    with torch.enable_grad():
        logits = forward(v)
        value = loss(logits, y)
        (grad,) = torch.autograd.grad(value.sum(), v)
    return logits.detach(), value.detach(), grad


def rows(t: Tensor, idx: Tensor) -> Tensor:
    """Rows ``idx`` of ``t`` (index_select: a row copy, much cheaper than advanced
    indexing)."""
    return t.index_select(0, idx)


# --- the engine -----------------------------------------------------------------------


def _draw(threat: Threat, generator, v0: Tensor, ctx: tuple) -> Tensor:
    return threat.random_start(v0, ctx, generator)


def composed(threat: Threat, forward: Forward, ctx: tuple) -> Forward:
    """v ↦ forward(threat.to_input(v, ctx)): the classifier seen from the attacked
    variable."""
    return lambda v: forward(threat.to_input(v, ctx))


def _keep_where(best: Tensor, v: Tensor, better: Tensor) -> Tensor:
    """The rows of ``v`` where ``better``, else of ``best`` (one ``torch.where``: no
    per-step indexing)."""
    return torch.where(better.view(-1, *[1] * (v.ndim - 1)), v, best)


def _pgd_once(threat, forward, loss, v0, y, ctx, steps, start, mode):
    """One run of PGD from ``start`` (a map (v0, ctx) → first iterate; None: v0).
    Returns (iterate, fooled, steps used).

    In ``"first"`` mode the still-active examples are kept *compacted* (iterate,
    label, the threat's context): an example leaves these tensors when its label
    changes, so each step costs only the active examples' forward/backward pass plus a
    few elementwise ops; gathers happen only on the steps where some example leaves.
    """
    n = v0.shape[0]
    v = start(v0, ctx) if start is not None else v0.clone()
    used = torch.zeros(n, dtype=torch.long, device=v0.device)
    fooled = torch.zeros(n, dtype=torch.bool, device=v0.device)
    if mode == "first":
        idx = torch.arange(n, device=v0.device)
        va, ya, ca = v.clone(), y, ctx
        taken = 0
        for _ in range(steps):
            logits, _, grad = gradient(composed(threat, forward, ca), va, ya, loss)
            wrong = logits.argmax(1) != ya
            if wrong.any():
                done = idx[wrong]
                fooled[done] = True
                used[done] = taken
                v.index_copy_(0, done, va[wrong])
                keep = (~wrong).nonzero().squeeze(1)
                if keep.numel() == 0:
                    return v, fooled, used
                idx, ya = idx[keep], ya[keep]
                va, grad = rows(va, keep), rows(grad, keep)
                ca = tuple(rows(c, keep) for c in ca)
            va = threat.step(va, grad, ca)
            taken += 1
        # the last iterate has not been evaluated yet
        with torch.no_grad():
            logits = forward(threat.to_input(va, ca))
        fooled[idx] = logits.argmax(1) != ya
        used[idx] = taken
        v.index_copy_(0, idx, va)
        return v, fooled, used
    through = composed(threat, forward, ctx)
    best_v = v.clone()
    best_loss = torch.full((n,), -torch.inf, dtype=torch.float64, device=v0.device)
    for _ in range(steps):
        _, value, grad = gradient(through, v, y, loss)
        better = value > best_loss
        best_v = _keep_where(best_v, v, better)
        best_loss = torch.where(better, value, best_loss)
        v = threat.step(v, grad, ctx)
        used += 1
    # the last iterate has not been evaluated yet
    with torch.no_grad():
        better = loss(through(v), y) > best_loss
        best_v[better] = v[better]
        fooled = through(best_v).argmax(1) != y
    return best_v, fooled, used


def run_pgd(
    threat: Threat,
    forward: Forward,
    x: Tensor,
    y: Tensor,
    *,
    steps: int,
    restarts: int = 1,
    mode: str = "first",
    random_start: bool = True,
    batch_size: int = 1000,
    seed: int | None = 0,
    loss: Loss = cross_entropy,
    ids: Tensor | None = None,
) -> AttackResult:
    """PGD under ``threat`` with restarts and per-example early stop (module
    docstring), in chunks of ``batch_size`` examples.

    ``x`` is the clean value of the attacked variable (``threat.origin`` maps it to
    the start of the iterate: itself, or δ = 0); the result's ``adversarial`` is the
    attacked variable. Restarts always start at random; the random draws come from a
    generator seeded with ``seed`` (None: torch's global one), so results are
    reproducible; with ``ids`` [N] (integers), from one generator per example and
    restart (``engine.keyed_start``; ``seed`` required), so that the result of an
    example does not depend on the batch it shares. In ``"best"`` mode the restart of
    largest final loss is kept."""
    if int(steps) != steps or steps < 1:
        raise ValueError(f"steps must be an integer >= 1, got {steps!r}")
    if int(restarts) != restarts or restarts < 1:
        raise ValueError(f"restarts must be an integer >= 1, got {restarts!r}")
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    check_lengths(x, y)
    if ids is not None:
        if seed is None or ids.shape != (len(x),):
            raise ValueError(
                f"ids must be one integer per example, with a seed; got shape "
                f"{tuple(ids.shape)} for {len(x)} examples and seed {seed!r}"
            )
        ids = ids.cpu()
    flush_denormals()
    generator = generator_of(seed)
    out = threat.origin(x.detach()).clone()
    success = torch.zeros(len(x), dtype=torch.bool, device=x.device)
    used = torch.zeros(len(x), dtype=torch.long, device=x.device)
    for start in range(0, len(x), batch_size):
        sl = slice(start, start + batch_size)
        xb, yb = x[sl].detach(), y[sl]
        ctx, v0 = threat.bind(xb, sl), threat.origin(xb)
        best_loss = torch.full(
            (len(xb),), -torch.inf, dtype=torch.float64, device=x.device
        )
        for r in range(restarts):
            todo = (
                (~success[sl]).nonzero().squeeze(1)
                if mode == "first"
                else torch.arange(len(xb), device=x.device)
            )
            if todo.numel() == 0:
                break
            part = tuple(c[todo] for c in ctx)
            if not (random_start or r > 0):
                start = None
            elif ids is None:
                start = partial(_draw, threat, generator)
            else:
                keys = ids[sl][todo.cpu()]
                start = partial(keyed_start, threat, seed=seed, restart=r, ids=keys)
            v, fooled, n = _pgd_once(
                threat,
                forward,
                loss,
                v0[todo],
                yb[todo],
                part,
                int(steps),
                start,
                mode,
            )
            used[sl][todo] += n
            if mode == "first":
                out[sl][todo[fooled]] = v[fooled]
                if r == restarts - 1:  # keep the last iterate of examples never fooled
                    out[sl][todo[~fooled]] = v[~fooled]
                success[sl][todo[fooled]] = True
            else:
                with torch.no_grad():
                    value = loss(forward(threat.to_input(v, part)), yb).double()
                better = value > best_loss
                out[sl][better], best_loss[better] = v[better], value[better]
                success[sl][better] = fooled[better]
    return AttackResult(out, success, used)


def largest_loss_examples(
    model: nn.Module,
    threat: Threat,
    x: Tensor,
    y: Tensor,
    *,
    steps: int,
    seed: int | None = None,
) -> Tensor:
    """The iterates of largest loss (mode ``"best"``, random start, one chunk)
    against ``model``, attacked through its
    :func:`advmanifold.science.models.attack_view` in eval mode (weights untouched):
    the perturbed half of an adversarial training batch."""
    with models.frozen(model):
        result = run_pgd(
            threat,
            models.attack_view(model),
            x,
            y,
            steps=steps,
            mode="best",
            batch_size=len(x),
            seed=seed,
        )
    return result.adversarial
