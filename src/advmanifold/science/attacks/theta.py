"""Attacks on the FONTS manifold: the affine parameters θ of the decoder.

x = dec(font, letter, θ) (:mod:`advmanifold.science.decoders`) is differentiable in
θ, so an L∞ attack on θ with font and letter fixed finds *on-manifold* adversarial
examples: ‖θ̃ − θ‖∞ ≤ ε and θ̃ in its data range, x̃ = dec(font, letter, θ̃).

- :class:`ThetaBox`, the threat model. The engine hands the classifier only the
  still-active examples, so each example's (font, letter) travels with it as two
  extra coordinates of the attacked variable v = (θ, font, letter) ``[N, 8]`` whose
  box is a single point; ``to_input`` decodes v.
- :func:`attack_theta`: PGD (:func:`~advmanifold.science.attacks.linf.pgd`'s
  settings) or the original's Adam protocol
  (:func:`~advmanifold.science.attacks.adam.adam_attack`) under that threat model.
- :func:`onmanifold_examples`: the training-time examples of ``OnAdvTrain``
  (largest-loss PGD iterate on θ).
- :class:`WarpBox` and :func:`stn_examples`: the original's spatial-transformer
  attack (``STNAdvTrain``), which warps the *rendered* image a second time by θ̃
  near the identity.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .. import decoders, models
from ..decoders import FontDecoder
from . import adam, linf
from .engine import check, largest_loss_examples, run_pgd, step_size_or_default
from .threats import LinfBall, bounds


class ThetaBox(LinfBall):
    """θ in {‖θ̃ − θ‖∞ ≤ ε} ∩ the data box of ``ranges``
    (:func:`advmanifold.science.decoders.theta_box`), font and letter fixed, sign
    steps of ``step_size``; the attacked variable is v = (θ, font, letter)
    (:meth:`pack`) and the classifier sees dec(font, letter, θ), its grid from
    ``F.affine_grid`` or, with ``closed_form``, the same up to rounding, faster
    (:func:`advmanifold.science.decoders.affine_grid`).
    """

    def __init__(
        self,
        decoder: FontDecoder,
        eps: float,
        ranges: str = "hard",
        step_size: float | None = None,
        closed_form: bool = False,
    ):
        super().__init__(eps, None, None, step_size)
        self.decoder = decoder
        self.closed_form = closed_form
        self.theta_lower, self.theta_upper = decoders.theta_box(ranges)

    @staticmethod
    def pack(font: Tensor, letter: Tensor, theta: Tensor) -> Tensor:
        """v = (θ, font, letter) ``[N, 8]`` in θ's dtype."""
        ids = torch.stack([font, letter], 1).to(theta.dtype)
        return torch.cat([theta, ids], 1)

    def bind(self, v: Tensor, rows: slice) -> tuple[Tensor, Tensor]:
        lower, upper = (b.to(v) for b in (self.theta_lower, self.theta_upper))
        ids = v[:, 6:]
        lo = torch.cat([lower.expand(len(v), 6), ids], 1)
        hi = torch.cat([upper.expand(len(v), 6), ids], 1)
        return bounds(v, self.eps, lo, hi)

    def to_input(self, v: Tensor, ctx: tuple) -> Tensor:
        """dec(font, letter, θ); with ``closed_form``, its grid in closed form
        (:func:`advmanifold.science.decoders.affine_grid`)."""
        ids = v[:, 6:].detach().round().long()
        return self.decoder(
            ids[:, 0], ids[:, 1], v[:, :6], closed_form=self.closed_form
        )


def attack_theta(
    classifier: nn.Module,
    decoder: FontDecoder,
    font: Tensor,
    letter: Tensor,
    theta: Tensor,
    *,
    eps: float = 0.3,
    ranges: str = "hard",
    attack=None,
    **attack_kwargs,
):
    """On-manifold adversarial examples: an L∞ attack on θ with font and letter fixed,
    ‖θ̃ − θ‖∞ ≤ ε and θ̃ kept in its data range (:class:`ThetaBox`); the images are
    dec(font, letter, θ̃).

    ``attack`` is :func:`~advmanifold.science.attacks.linf.pgd` (default; keyword
    arguments ``steps``, ``step_size``, ``restarts``, ``mode``, ``random_start``,
    ``seed`` as there) or :func:`~advmanifold.science.attacks.adam.adam_attack` (the
    original's protocol: ``steps``, ``lr``, ``attempts``, ``seed``). Every example is
    in one chunk. Returns ``(result on θ, images)``; for ``adam_attack`` both carry a
    leading attempts axis.
    """
    v = ThetaBox.pack(font, letter, theta)
    kwargs = {**attack_kwargs, "batch_size": len(v)}  # one chunk, as always
    if attack is None or attack is linf.pgd:
        steps, step_size = kwargs.pop("steps", 40), kwargs.pop("step_size", None)
        restarts, mode = kwargs.get("restarts", 1), kwargs.get("mode", "first")
        check(eps, steps, 1.0 if step_size is None else step_size, restarts, mode)
        step_size = step_size_or_default(eps, steps, step_size)
        threat = ThetaBox(decoder, eps, ranges, step_size)
        result = run_pgd(threat, classifier, v, letter, steps=steps, **kwargs)
    elif attack is adam.adam_attack:
        threat = ThetaBox(decoder, eps, ranges)
        result = adam.run_adam(threat, classifier, v, letter, **kwargs)
    else:
        raise ValueError("attack must be attacks.pgd or attacks.adam_attack")
    result.adversarial = result.adversarial[..., :6]
    flat = result.adversarial.reshape(-1, 6)
    repeat = len(flat) // len(theta)
    with torch.no_grad():
        images = decoder(font.repeat(repeat), letter.repeat(repeat), flat)
    return result, images.view(*result.adversarial.shape[:-1], *images.shape[1:])


def onmanifold_examples(
    model: nn.Module,
    decoder: FontDecoder,
    font: Tensor,
    letter: Tensor,
    theta: Tensor,
    *,
    eps: float,
    steps: int,
    ranges: str = "hard",
    seed: int | None = None,
) -> Tensor:
    """Adversarial θ̃ for training (``OnAdvTrain``): PGD on θ (largest-loss iterate,
    random start) with ‖θ̃ − θ‖∞ ≤ ε and θ̃ in the data ranges, font and letter
    fixed; weights untouched. With attack views on
    (:func:`advmanifold.science.models.attack_views`), the decoder's grid is in
    closed form (the same up to rounding, faster)."""
    check(eps, steps, 1.0, 1, "best")
    step_size = step_size_or_default(eps, steps, None)
    threat = ThetaBox(decoder, eps, ranges, step_size, models.attack_views_on())
    v = ThetaBox.pack(font, letter, theta)
    v_adv = largest_loss_examples(model, threat, v, letter, steps=steps, seed=seed)
    return v_adv[:, :6].detach()


class WarpBox(LinfBall):
    """θ of a second warp of fixed ``images`` ``[N, 1, H, W]``, in
    {‖θ̃ − θ₀‖∞ ≤ ε} ∩ the data box of ``ranges``; the classifier sees
    warp(images, θ̃). Each example's image travels with it in the context."""

    def __init__(
        self, images: Tensor, eps: float, ranges: str = "hard", step_size=None
    ):
        lower, upper = (b.to(images) for b in decoders.theta_box(ranges))
        super().__init__(eps, lower, upper, step_size)
        self.images = images

    def bind(self, theta: Tensor, rows: slice) -> tuple[Tensor, Tensor, Tensor]:
        return (*super().bind(theta, rows), self.images[rows])

    def to_input(self, theta: Tensor, ctx: tuple) -> Tensor:
        return decoders.warp(ctx[2], theta)


def stn_examples(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    *,
    eps: float,
    steps: int,
    ranges: str = "hard",
    seed: int | None = None,
) -> Tensor:
    """Images warped adversarially (``STNAdvTrain``): θ̃ by PGD (largest-loss
    iterate, random start) in ‖θ̃ − θ_id‖∞ ≤ ε ∩ the data ranges around the identity
    θ_id, x̃ = warp(x, θ̃); weights untouched."""
    check(eps, steps, 1.0, 1, "best")
    threat = WarpBox(x, eps, ranges, step_size_or_default(eps, steps, None))
    identity = decoders.IDENTITY.to(x).expand(len(x), 6)
    theta = largest_loss_examples(model, threat, identity, y, steps=steps, seed=seed)
    with torch.no_grad():
        return decoders.warp(x, theta)
