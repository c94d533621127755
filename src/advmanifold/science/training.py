"""One training loop with a pluggable objective.

An objective maps ``(model, x, y)`` to a scalar loss:

- :func:`cross_entropy`  L = CE(f(x), y);
- :func:`adversarial`    L = CE(f(x + δ*), y), δ* from L∞ PGD (Madry et al.;
  :func:`advmanifold.science.attacks.adversarial_examples`);
- objectives adding a penalty (e.g. the manifold-alignment loss of Geyer et al.)
  are composed with :func:`combined`.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.std import tqdm

from .attacks import adversarial_examples
from .compute import flush_denormals
from .data import batches

Objective = Callable[[nn.Module, Tensor, Tensor], Tensor]


def cross_entropy() -> Objective:
    def objective(model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
        return F.cross_entropy(model(x), y)

    objective.__name__ = "cross_entropy"
    return objective


def adversarial(
    eps: float, steps: int = 10, step_size: float | None = None, lower=0.0, upper=1.0
) -> Objective:
    """Adversarial training: CE on PGD examples (random start, largest-loss iterate)."""
    counter = iter(range(1 << 62))

    def objective(model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
        x_adv = adversarial_examples(
            model,
            x,
            y,
            eps=eps,
            steps=steps,
            step_size=step_size,
            lower=lower,
            upper=upper,
            seed=next(counter),
        )
        return F.cross_entropy(model(x_adv), y)

    objective.__name__ = f"adversarial(eps={eps}, steps={steps})"
    return objective


def combined(*terms: Objective) -> Objective:
    """Sum of objectives, e.g.
    ``combined(adversarial(0.1), alignment_penalty(...))``."""

    def objective(model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
        return sum(term(model, x, y) for term in terms)

    objective.__name__ = " + ".join(t.__name__ for t in terms)
    return objective


def train(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    objective: Objective | None = None,
    *,
    epochs: int,
    batch_size: int = 100,
    lr: float = 1e-3,
    weight_decay: float = 0.0,
    lr_decay: float = 1.0,
    seed: int = 0,
    desc: str = "training",
    progress: bool = True,
) -> list[dict]:
    """Adam on ``objective`` over shuffled mini-batches; the learning rate is multiplied
    by ``lr_decay`` after each epoch. Returns one ``{"epoch", "loss"}`` row per
    epoch (the mean loss over its examples)."""
    if int(epochs) != epochs or epochs < 1:
        raise ValueError(f"epochs must be an integer >= 1, got {epochs!r}")
    if int(batch_size) != batch_size or batch_size < 1:
        raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    objective = objective or cross_entropy()
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    flush_denormals()
    optimiser = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    schedule = torch.optim.lr_scheduler.ExponentialLR(optimiser, gamma=lr_decay)
    history = []
    bar = tqdm(
        total=epochs * -(-len(x) // batch_size),
        desc=desc,
        disable=not progress,
        mininterval=2.0,
        unit="batch",
    )
    model.train()
    for epoch in range(epochs):
        total, seen = 0.0, 0
        for xb, yb in batches(
            x, y, batch_size=batch_size, shuffle=True, generator=generator
        ):
            loss = objective(model, xb, yb)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            total, seen = total + loss.item() * len(xb), seen + len(xb)
            bar.update(1)
        schedule.step()
        history.append({"epoch": epoch + 1, "loss": total / seen})
        bar.set_postfix(epoch=epoch + 1, loss=f"{total / seen:.4f}")
    bar.close()
    model.eval()
    return history
