"""Measures of the dimpled manifold model (Shamir, Melamed and BenShmuel 2021) on a
manifold whose tangent space is known exactly.

The model says: training first makes the decision boundary cling to the data
manifold, then bends it into dimples around the training points, so adversarial
perturbations are nearly normal to the manifold. At an image x with tangent space T
(dimension k in R^d; on FONTS k = 6, d = 784, :mod:`advmanifold.science.tangent`):

- tangent share of a vector v:  s(v) = ‖P_T v‖₂ / ‖v‖₂ ∈ [0, 1]  (the cosine of the
  angle between v and T); for v the input gradient, an L2 or an L∞ PGD perturbation;
- its baseline: for v uniform on the sphere, s² ~ Beta(k/2, (d − k)/2), so
  E s = Γ((k+1)/2) Γ(d/2) / (Γ(k/2) Γ((d+1)/2)) ≈ √(k/d) (Bordt et al. 2023);
  :func:`random_shares` samples it against the same T;
- distance to the decision boundary along the unit tangent part u_T = P_T g/‖P_T g‖
  and the unit normal part u_N = (g − P_T g)/‖g − P_T g‖ of the gradient g: the
  smallest t > 0 at which the predicted class of x + t u differs from that of x,
  found on a geometric grid of radii up to ``t_max`` and refined by bisection; ∞ where
  the class does not change up to ``t_max``. The ray is straight (the tangent
  *plane*, not the curved manifold) and not clipped to [0, 1]: a geometric
  question about the classifier as a function on R^d.

:func:`train_with_checkpoints` runs :func:`advmanifold.science.training.train`
unchanged and copies the weights at chosen optimiser steps.
"""

from __future__ import annotations

import itertools
import math
from typing import Any, Callable, Sequence

import torch
from torch import Tensor, nn

from . import alignment, attacks, checks, models, training

Forward = Callable[[Tensor], Tensor]
TINY = 1e-12


# ------------------------------------------------------------------ shares and baseline


def tangent_share(space, v: Tensor) -> Tensor:
    """s(v) = ‖P_T v‖/‖v‖ per example (``space`` a
    :class:`~advmanifold.science.tangent.TangentSpace`); NaN where v = 0."""
    flat = v.reshape(v.shape[0], -1)
    norm = flat.norm(dim=1)
    inside = torch.einsum("ndk,nd->nk", space.basis, flat).norm(dim=1)
    return torch.where(norm > TINY, inside / norm.clamp_min(TINY), torch.nan)


def expected_random_share(k: int, d: int) -> float:
    """E ‖P v‖/‖v‖ for v uniform on the sphere of R^d and P a projector of rank k:
    Γ((k+1)/2) Γ(d/2) / (Γ(k/2) Γ((d+1)/2)), a little below √(k/d)."""
    if not 0 < k <= d:
        raise ValueError(f"need 0 < k <= d, got k={k!r}, d={d!r}")
    lg = math.lgamma
    return math.exp(lg((k + 1) / 2) + lg(d / 2) - lg(k / 2) - lg((d + 1) / 2))


def random_shares(
    space, n_directions: int, *, seed: int = 0, chunk: int = 16
) -> Tensor:
    """Shares ``[N, n_directions]`` of Gaussian directions (uniform on the sphere
    after normalising) against each example's tangent space; ‖P v‖ = ‖Qᵀ v‖ for the
    orthonormal basis Q."""
    checks.integer("n_directions", n_directions, minimum=1)
    basis = space.basis
    n, d, _ = basis.shape
    generator = torch.Generator().manual_seed(seed)
    parts = []
    for start in range(0, int(n_directions), chunk):
        m = min(chunk, int(n_directions) - start)
        v = torch.randn(n, m, d, generator=generator).to(basis)
        inside = torch.einsum("ndk,nmd->nmk", basis, v).norm(dim=2)
        parts.append(inside / v.norm(dim=2))
    return torch.cat(parts, 1)


def tangent_and_normal(space, g: Tensor) -> tuple[Tensor, Tensor]:
    """Unit vectors u_T = P_T g/‖P_T g‖ and u_N = (g − P_T g)/‖g − P_T g‖, shaped
    like ``g``; NaN where the part is 0."""
    flat = g.reshape(g.shape[0], -1)
    tangent = space.project_vectors(flat)
    normal = flat - tangent

    def unit(w: Tensor) -> Tensor:
        norm = w.norm(dim=1, keepdim=True)
        return torch.where(norm > TINY, w / norm.clamp_min(TINY), torch.nan)

    return unit(tangent).view_as(g), unit(normal).view_as(g)


# ------------------------------------------------------------------ boundary distances


@torch.no_grad()
def _classes(forward: Forward, x: Tensor, batch_size: int) -> Tensor:
    return torch.cat(
        [forward(x[i : i + batch_size]).argmax(1) for i in range(0, len(x), batch_size)]
    )


def radii(t_min: float, t_max: float, n: int) -> Tensor:
    """The geometric grid t_min = r_1 < … < r_n = t_max of the line search."""
    if not 0 < t_min < t_max:
        raise ValueError(f"need 0 < t_min < t_max, got {t_min!r}, {t_max!r}")
    checks.integer("n", n, minimum=2)
    return torch.logspace(math.log10(t_min), math.log10(t_max), int(n))


@torch.no_grad()
def boundary_distance(
    forward: Forward,
    x: Tensor,
    u: Tensor,
    *,
    t_min: float = 0.05,
    t_max: float = 28.0,
    grid: int = 12,
    iterations: int = 10,
    batch_size: int = 4000,
) -> Tensor:
    """Smallest t at which argmax f(x + t u) differs from argmax f(x), per example:
    the first change on the grid :func:`radii`, bisected ``iterations`` times inside
    its bracket (a change between 0 and t_min counts at the bracket [0, t_min]).
    ∞ where no grid radius changes the class; NaN where u is NaN."""
    n, shape = len(x), (-1,) + (1,) * (x.ndim - 1)
    base = _classes(forward, x, batch_size)
    r = radii(t_min, t_max, grid).to(x)
    ok = ~torch.isnan(u.reshape(n, -1)).any(1)
    u = torch.nan_to_num(u)
    points = x.unsqueeze(1) + r.view(1, -1, *([1] * (x.ndim - 1))) * u.unsqueeze(1)
    classes = _classes(forward, points.flatten(0, 1), batch_size).view(n, len(r))
    changed = classes != base[:, None]
    found = changed.any(1)
    first = changed.float().argmax(1)  # first index with a change (0 if none)
    hi = r[first]
    lo = torch.where(first > 0, r[(first - 1).clamp_min(0)], torch.zeros_like(hi))
    for _ in range(int(iterations)):
        mid = (lo + hi) / 2
        same = _classes(forward, x + mid.view(shape) * u, batch_size) == base
        lo, hi = torch.where(same, mid, lo), torch.where(same, hi, mid)
    distance = torch.where(found, (lo + hi) / 2, torch.inf)
    return torch.where(ok, distance, torch.nan)


# -------------------------------------------------------------------- the measurements

#: per-example columns of :func:`measure`
COLUMNS = (
    "correct",
    "grad_share",
    "l2_share",
    "linf_share",
    "l2_success",
    "linf_success",
    "d_tangent",
    "d_normal",
)


def measure(model: nn.Module, x: Tensor, y: Tensor, space, s: Any) -> dict:
    """Per test image: correct prediction, tangent shares of the input gradient
    g = ∇ₓ CE and of the L2 and L∞ PGD perturbations δ = x̃ − x (first label change,
    no random start, box [0, 1]; δ = 0 and so a NaN share where the clean image is
    misclassified), their successes, and the boundary distances along u_T and u_N.

    ``s`` holds ``l2_eps``, ``linf_eps``, ``attack_steps``, ``t_min``, ``t_max``,
    ``grid`` and ``iterations``. The attacks run through the model's attack view,
    whose float32 logits are cast to float64 before the CE: in float32, 1 − p_y
    rounds to 0 for a confident image (margin above about 16) and ∇ₓ CE loses its
    true-class term, a wrong direction for shares and for sign steps alike."""
    with models.frozen(model):
        view = models.attack_view(model)
        correct = models.predict(view, x) == y

        def view64(v: Tensor) -> Tensor:
            return view(v).double()

        g = alignment.input_gradients(view64, x, y)
        kwargs = dict(steps=s.attack_steps, random_start=False, mode="first")
        l2 = attacks.pgd_l2(view, x, y, eps=s.l2_eps, **kwargs)
        linf = attacks.pgd(view64, x, y, eps=s.linf_eps, **kwargs)
        u_t, u_n = tangent_and_normal(space, g)
        search = dict(
            t_min=s.t_min, t_max=s.t_max, grid=s.grid, iterations=s.iterations
        )
        d_t = boundary_distance(view, x, u_t, **search)
        d_n = boundary_distance(view, x, u_n, **search)
    return {
        "correct": correct,
        "grad_share": tangent_share(space, g),
        "l2_share": tangent_share(space, l2.adversarial - x),
        "linf_share": tangent_share(space, linf.adversarial - x),
        "l2_success": l2.success & correct,
        "linf_success": linf.success & correct,
        "d_tangent": d_t,
        "d_normal": d_n,
    }


def stack(measures: Sequence[dict]) -> dict:
    """Column → ``[len(measures), N]`` from per-model :func:`measure` results."""
    return {k: torch.stack([m[k] for m in measures]) for k in COLUMNS}


# ----------------------------------------------------------------- training checkpoints


def checkpoint_steps(steps_per_epoch: int, epochs: int, n_early: int) -> list[int]:
    """Step 0, ``n_early`` log-spaced steps in [1, steps_per_epoch] (rounded, unique)
    and every epoch's end k · steps_per_epoch."""
    for name, value in (
        ("steps_per_epoch", steps_per_epoch),
        ("epochs", epochs),
        ("n_early", n_early),
    ):
        checks.integer(name, value, minimum=1)
    early = torch.logspace(0, math.log10(steps_per_epoch), int(n_early)).round()
    ends = [k * int(steps_per_epoch) for k in range(1, int(epochs) + 1)]
    return sorted({0, *(int(t) for t in early.tolist()), *ends})


def train_with_checkpoints(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    steps: Sequence[int],
    **train_kwargs,
) -> list[tuple[int, dict]]:
    """:func:`advmanifold.science.training.train` with cross-entropy, keeping a copy
    of the state dict (CPU) after each optimiser step count in ``steps`` (0: before
    any step). The objective is called once per step, before that step's update, so
    its t-th call sees the weights after t steps; the last count is copied after
    training."""
    wanted = {int(t) for t in steps}
    kept: list[tuple[int, dict]] = []
    counter = itertools.count()
    loss = training.cross_entropy()

    def copy_state(m: nn.Module) -> dict:
        return {k: v.detach().cpu().clone() for k, v in m.state_dict().items()}

    def objective(m: nn.Module, xb: Tensor, yb: Tensor) -> Tensor:
        t = next(counter)
        if t in wanted:
            kept.append((t, copy_state(m)))
        return loss(m, xb, yb)

    training.train(model, x, y, objective, **train_kwargs)
    total = next(counter)
    if total in wanted:
        kept.append((total, copy_state(model)))
    missing = sorted(wanted - {t for t, _ in kept})
    if missing:
        raise ValueError(f"steps {missing} exceed the {total} steps of training")
    return kept


def load_state(
    state: dict, make: Callable[[], nn.Module] = models.ConvNet
) -> nn.Module:
    """A fresh model with ``state`` loaded, in eval mode."""
    model = make()
    model.load_state_dict(state)
    return model.eval()
