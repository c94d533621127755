"""Implicit bias of gradient training on data in a linear subspace (Melamed, Yehudai and
Vardi, 2023): initialisation scale, weight decay and attacks restricted to a subspace.

Let the data lie in a k-dimensional subspace S with orthogonal projector P (PMNIST:
:class:`~advmanifold.science.manifolds.linear.LinearManifold`). The first layer of a
network sees x through W₁x, and the gradient of any loss with respect to W₁ is
Σᵢ uᵢ xᵢᵀ: its rows lie in S, so (∂L/∂W₁)(I − P) = 0. Gradient steps never move the
off-subspace part W₁(I − P); only the initialisation and weight decay set it. Under
SGD with momentum β, learning rate η and L2 weight decay λ (torch's coupled form: the
step uses ∇L + λθ), every off-subspace weight w follows the same linear recursion

    v_t = β v_{t−1} + λ w_{t−1},   w_t = w_{t−1} − η v_t,   v₀ = 0,

so after T steps W₁(I − P) = ρ_T · W₁⁰(I − P) (:func:`off_subspace_factor`; ρ_T = 1
without weight decay). The input gradient ∇ₓ f = W₁ᵀ u has the off-subspace part
(W₁(I − P))ᵀ u: it scales with the initialisation scale c (:func:`scale_init`) and
with ρ_T, while the on-subspace part is learnt. A perturbation δ ⟂ S moves the first
layer's pre-activations by W₁δ = W₁(I − P)δ, hence the robustness to it.

Attacks (:func:`advmanifold.science.attacks.restricted_l2_pgd`) are L2 PGD on the
logit margin, restricted to a subspace V (S, its complement S⟂, or everything;
:func:`restriction`): the projector Q onto V and the projection onto an L2 ball
centred at 0 commute (Q is orthogonal, the ball's projection a radial scaling), so
every iterate lies in V ∩ B_ε. An L∞ ball and a
subspace do not commute (clipping coordinates leaves V), hence L2. There is no
[0, 1] box: PMNIST images leave [0, 1] and a box would leave V as well (the PMNIST
chapter's convention, :data:`~advmanifold.science.manifolds.linear.ATTACK_BOX`).
"""

from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.std import tqdm

from . import checks
from .attacks import margin, restricted_l2_pgd
from .compute import flush_denormals
from .data import batches

Forward = Callable[[Tensor], Tensor]
#: where a restricted attack may move: S⟂ (off the data), S (on it), anywhere
WHERE = ("orthogonal", "subspace", "full")


def scale_init(model: nn.Module, c: float) -> nn.Module:
    """Multiply every parameter (weights and biases of every layer) by ``c`` > 0, in
    place: call it right after construction to scale PyTorch's default init."""
    if isinstance(c, bool) or not (isinstance(c, (int, float)) and math.isfinite(c)):
        raise ValueError(f"c must be a finite number > 0, got {c!r}")
    if not c > 0:
        raise ValueError(f"c must be a finite number > 0, got {c!r}")
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(float(c))
    return model


def first_linear(model: nn.Module) -> nn.Linear:
    """The first :class:`torch.nn.Linear` of ``model`` (the layer that sees x)."""
    for module in model.modules():
        if isinstance(module, nn.Linear):
            return module
    raise ValueError("model has no nn.Linear layer")


def weight_split(weight: Tensor, manifold) -> tuple[Tensor, Tensor]:
    """‖W P‖_F and ‖W (I − P)‖_F of a first-layer weight W [h, d] (rows in input
    space)."""
    with torch.no_grad():
        w = weight.detach().float()
        on = manifold.project_vectors(w)
        return on.norm(), (w - on).norm()


def off_subspace_factor(
    steps: int, lr: float, momentum: float = 0.0, weight_decay: float = 0.0
) -> float:
    """ρ_T: the factor SGD (torch's, coupled weight decay, no dampening or Nesterov)
    applies to a weight whose loss gradient stays 0 for ``steps`` steps:
    (w_T, v_T) = A^T (1, 0) with A = [[1 − ηλ, −ηβ], [λ, β]]."""
    checks.integer("steps", steps, minimum=0)
    a = torch.tensor(
        [[1 - lr * weight_decay, -lr * momentum], [weight_decay, momentum]],
        dtype=torch.float64,
    )
    return float(torch.linalg.matrix_power(a, int(steps))[0, 0])


def train_sgd(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    *,
    epochs: int,
    batch_size: int = 128,
    lr: float = 0.1,
    momentum: float = 0.9,
    weight_decay: float = 0.0,
    clip: float | None = None,
    seed: int = 0,
    desc: str = "training",
    progress: bool = True,
) -> dict:
    """SGD with momentum on cross-entropy over shuffled mini-batches (order from
    ``seed``); L2 weight decay λ on every parameter (torch's coupled form, the
    gradient of λ/2 ‖θ‖²); ``clip`` caps the loss gradient's global norm (before the
    decay term is added). Returns ``{"loss": [mean loss per epoch], "steps": T}``."""
    for key, v in (("epochs", epochs), ("batch_size", batch_size)):
        checks.integer(key, v, minimum=1)
    if not lr > 0:
        raise ValueError(f"lr must be > 0, got {lr!r}")
    if not 0 <= momentum < 1:
        raise ValueError(f"momentum must be in [0, 1), got {momentum!r}")
    if not weight_decay >= 0:
        raise ValueError(f"weight_decay must be >= 0, got {weight_decay!r}")
    if clip is not None and not clip > 0:
        raise ValueError(f"clip must be None or > 0, got {clip!r}")
    generator = torch.Generator().manual_seed(int(seed))
    flush_denormals()
    params = [p for p in model.parameters() if p.requires_grad]
    optimiser = torch.optim.SGD(
        params, lr=lr, momentum=momentum, weight_decay=weight_decay
    )
    per_epoch = -(-len(x) // batch_size)
    bar = tqdm(
        total=epochs * per_epoch,
        desc=desc,
        disable=not progress,
        mininterval=2.0,
        unit="batch",
    )
    losses, steps = [], 0
    model.train()
    for _ in range(int(epochs)):
        total = torch.zeros(())
        for xb, yb in batches(
            x, y, batch_size=batch_size, shuffle=True, generator=generator
        ):
            loss = F.cross_entropy(model(xb), yb)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            if clip is not None:
                nn.utils.clip_grad_norm_(params, clip)
            optimiser.step()
            total += loss.detach() * len(xb)
            steps += 1
            bar.update(1)
        losses.append(float(total) / len(x))
        bar.set_postfix(loss=f"{losses[-1]:.4f}")
    bar.close()
    model.eval()
    return {"loss": losses, "steps": steps}


# -- margins and gradients -------------------------------------------------------------
def margin_gradients(forward: Forward, x: Tensor, y: Tensor) -> Tensor:
    """gᵢ = ∇_{xᵢ} m(f(xᵢ), yᵢ), all examples at once (the summed margin's gradient:
    examples do not interact). Unlike the cross-entropy's, it does not vanish when
    the softmax saturates, and its direction does not depend on the logits' scale."""
    x = x.detach().requires_grad_(True)
    with torch.enable_grad():
        (grad,) = torch.autograd.grad(margin(forward(x), y).sum(), x)
    return grad


def restriction(manifold, where: str) -> Callable[[Tensor], Tensor]:
    """The projector Q of an attack's subspace as a map v ↦ Qv (shape kept):
    ``"orthogonal"`` I − P, ``"subspace"`` P, ``"full"`` I."""
    if where not in WHERE:
        raise ValueError(f"where must be one of {WHERE}, got {where!r}")
    if where == "full":
        return lambda v: v
    if getattr(manifold, "mode", "global") != "global":
        raise ValueError("restricted attacks need a global (single-subspace) manifold")
    if where == "subspace":
        return manifold.project_vectors
    return manifold.residual


def restricted_robustness(
    forward: Forward,
    x: Tensor,
    y: Tensor,
    manifold,
    eps_grid,
    *,
    steps: int,
    seed: int = 0,
) -> Tensor:
    """Per-example survival under
    :func:`~advmanifold.science.attacks.restricted_l2_pgd` for every restriction of
    :data:`WHERE` and ε of ``eps_grid``: a bool tensor [len(WHERE), len(eps_grid), n],
    True where the example is classified correctly clean and under attack. Each
    restriction attacks all (ε, example) pairs as one batch."""
    with torch.no_grad():
        clean = forward(x).argmax(1) == y
    grid = torch.as_tensor([float(e) for e in eps_grid], dtype=x.dtype)
    n_eps = len(grid)
    xs, ys = x.repeat(n_eps, *[1] * (x.ndim - 1)), y.repeat(n_eps)
    eps = grid.to(x.device).repeat_interleave(len(x))
    out = []
    for where in WHERE:
        found = restricted_l2_pgd(
            forward,
            xs,
            ys,
            eps=eps,
            steps=steps,
            restrict=restriction(manifold, where),
            seed=seed,
        )
        out.append(clean & ~found.success.view(n_eps, len(x)))
    return torch.stack(out).cpu()
