"""One training loop with a pluggable objective.

An objective maps ``(model, x, y)`` to a scalar loss:

- :func:`cross_entropy`  L = CE(f(x), y);
- :func:`adversarial`    L = CE(f(x + δ*), y), δ* from L∞ PGD (Madry et al.);
- objectives adding a penalty (e.g. the manifold-alignment loss of Geyer et al.)
  are composed with :func:`combined`.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.std import tqdm

from . import attacks, models
from .compute import flush_denormals
from .data import batches

Objective = Callable[[nn.Module, Tensor, Tensor], Tensor]


def cross_entropy() -> Objective:
    def objective(model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
        return F.cross_entropy(model(x), y)

    objective.__name__ = "cross_entropy"
    return objective


def adversarial_examples(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    *,
    eps: float,
    steps: int,
    step_size: float | None = None,
    lower=0.0,
    upper=1.0,
    seed: int | None = None,
) -> Tensor:
    """PGD examples of largest loss against ``model``, attacked through its
    :func:`advmanifold.models.attack_view` in eval mode (weights untouched)."""
    with models.frozen(model):
        view = models.attack_view(model)
        if getattr(model, "groups", 1) > 1:
            result = _grouped_pgd(
                view,
                x,
                y,
                eps=eps,
                steps=steps,
                step_size=step_size,
                lower=lower,
                upper=upper,
                seed=seed,
                groups=model.groups,
            )
        else:
            result = attacks.pgd(
                view,
                x,
                y,
                eps=eps,
                steps=steps,
                step_size=step_size,
                lower=lower,
                upper=upper,
                mode="best",
                batch_size=len(x),
                seed=seed,
            )
    return result.adversarial


def _grouped_pgd(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    *,
    eps,
    steps,
    step_size,
    lower,
    upper,
    seed,
    groups: int,
) -> attacks.AttackResult:
    """``attacks.pgd`` (mode "best") on the members of a grouped model (``model.groups``
    blocks of examples), each block from the random start a single model draws with
    ``seed``: the start is drawn once and repeated, and the ε-ball around x is passed
    as explicit bounds (the attack's own ball, 3ε around the start, never binds)."""
    step_size = 2.5 * eps / steps if step_size is None else step_size
    lo, hi = x - eps, x + eps
    if lower is not None:
        lower = torch.as_tensor(lower, dtype=x.dtype, device=x.device)
        lo = torch.maximum(lo, lower.expand_as(x))
    if upper is not None:
        upper = torch.as_tensor(upper, dtype=x.dtype, device=x.device)
        hi = torch.minimum(hi, upper.expand_as(x))
    generator = torch.Generator().manual_seed(seed) if seed is not None else None
    block = (len(x) // groups, *x.shape[1:])
    noise = torch.rand(block, generator=generator).to(x) * 2 - 1
    start = torch.clamp(x + eps * noise.repeat(groups, *([1] * (x.ndim - 1))), lo, hi)
    return attacks.pgd(
        model,
        start,
        y,
        eps=3 * eps,
        steps=steps,
        step_size=step_size,
        lower=lo,
        upper=hi,
        random_start=False,
        mode="best",
        batch_size=len(x),
        seed=None,
    )


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
    epoch."""
    _check_loop(epochs, batch_size)
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)

    def epoch_batches():
        for xb, yb in batches(
            x, y, batch_size=batch_size, shuffle=True, generator=generator
        ):
            yield xb, yb, len(xb)

    return _adam_loop(
        model,
        objective or cross_entropy(),
        epoch_batches,
        groups=1,
        epochs=epochs,
        n_batches=-(-len(x) // batch_size),
        lr=lr,
        weight_decay=weight_decay,
        lr_decay=lr_decay,
        desc=desc,
        progress=progress,
    )


def _check_loop(epochs, batch_size) -> None:
    if int(epochs) != epochs or epochs < 1:
        raise ValueError(f"epochs must be an integer >= 1, got {epochs!r}")
    if int(batch_size) != batch_size or batch_size < 1:
        raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")


def _adam_loop(
    model,
    objective,
    epoch_batches,
    *,
    groups,
    epochs,
    n_batches,
    lr,
    weight_decay,
    lr_decay,
    desc,
    progress,
) -> list[dict]:
    """Adam on groups × objective over the (x, y, examples per member) batches that
    ``epoch_batches()`` yields in each epoch; lr × ``lr_decay`` after each epoch.
    Returns one ``{"epoch", "loss"}`` row per epoch (the members' mean loss)."""
    flush_denormals()
    optimiser = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    schedule = torch.optim.lr_scheduler.ExponentialLR(optimiser, gamma=lr_decay)
    history = []
    bar = tqdm(
        total=epochs * n_batches,
        desc=desc,
        disable=not progress,
        mininterval=2.0,
        unit="batch",
    )
    model.train()
    for epoch in range(epochs):
        total, seen = 0.0, 0
        for xb, yb, n in epoch_batches():
            loss = objective(model, xb, yb)
            if groups > 1:
                loss = groups * loss
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            total, seen = total + loss.item() / groups * n, seen + n
            bar.update(1)
        schedule.step()
        history.append({"epoch": epoch + 1, "loss": total / seen})
        bar.set_postfix(epoch=epoch + 1, loss=f"{total / seen:.4f}")
    bar.close()
    model.eval()
    return history


def train_group(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    objective: Objective | None = None,
    *,
    seeds,
    epochs: int,
    batch_size: int = 100,
    lr: float = 1e-3,
    weight_decay: float = 0.0,
    lr_decay: float = 1.0,
    desc: str = "training",
    progress: bool = True,
) -> list[dict]:
    """:func:`train` for the ``model.groups`` members of a grouped model (e.g.
    :class:`advmanifold.models.GroupedMLP`) at once, member g with seed ``seeds[g]``.

    Each step concatenates the batch that :func:`train` with that seed would draw for
    each member and minimises G × objective (the objectives average over the G·B
    examples; G × that mean is the sum of the members' own losses). Adam's update is
    elementwise, so every member follows its single-model trajectory up to
    floating-point rounding; adversarial objectives draw each member's random start as
    the single model would. The global torch seed, which :func:`train` sets, is not
    used by the objectives here. Returns one ``{"epoch", "loss"}`` row per epoch (the
    members' mean loss).
    """
    groups = int(getattr(model, "groups", 0))
    seeds = [int(s) for s in seeds]
    if groups < 1 or len(seeds) != groups:
        raise ValueError(f"seeds must give one seed per member ({groups}), got {seeds}")
    _check_loop(epochs, batch_size)
    generators = [torch.Generator().manual_seed(s) for s in seeds]

    def epoch_batches():
        streams = [
            batches(x, y, batch_size=batch_size, shuffle=True, generator=g)
            for g in generators
        ]
        for parts in zip(*streams):
            xb = torch.cat([p[0] for p in parts])
            yield xb, torch.cat([p[1] for p in parts]), len(parts[0])

    return _adam_loop(
        model,
        objective or cross_entropy(),
        epoch_batches,
        groups=groups,
        epochs=epochs,
        n_batches=-(-len(x) // batch_size),
        lr=lr,
        weight_decay=weight_decay,
        lr_decay=lr_decay,
        desc=desc,
        progress=progress,
    )
