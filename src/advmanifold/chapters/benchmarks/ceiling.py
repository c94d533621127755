"""How much faster the OnAdvTrain attack could get: its time with attack views off
and on against a floor, the classifier's own gradient steps (:func:`attack_ceiling`),
and the one lever that changes the arithmetic, bfloat16 (:func:`bfloat16_lever`).

A PGD step on θ is the decoder (a warp and its θ-gradient), the classifier (forward
and input gradient) and the engine's bookkeeping. The classifier's share cannot be
removed without changing what is computed, so

    speed-up ≤ t_off / t_classifier,

whatever a faster decoder or engine achieves."""

from __future__ import annotations

import copy
import statistics

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...science import attacks, compute, decoders, models
from .harness import interleaved
from .workloads import (
    decoder_and_source,
    input_gradient_step,
    random_batch,
    trained_like_convnet,
)


def attack_ceiling(
    repeats: int = 5, n: int = 50, steps: int = 40, seed: int = 0
) -> dict[str, float]:
    """At one thread, milliseconds of the OnAdvTrain attack (PGD-``steps`` on θ for
    ``n`` examples, a training batch's perturbed half, ε = 0.3) with attack views off
    and on and of its floor, ``steps`` input-gradient steps of the classifier's attack
    view alone at batch ``n`` (decoder and engine free), in interleaved rounds. The
    decoder is on matplotlib's bundled fonts; the ConvNet stands in for a trained one
    (the cost does not depend on either's values). With them, how alike the two
    attacks' results are (:func:`_agreement`)."""
    decoder, _ = decoder_and_source(10, bundled_only=True)
    gen = torch.Generator().manual_seed(seed)
    font = torch.randint(0, decoder.n_fonts, (n,), generator=gen)
    letter = torch.randint(0, 10, (n,), generator=gen)
    theta = decoders.sample_theta(n, generator=gen)
    net = trained_like_convnet(seed)

    def attack(views: bool):
        def run():
            with models.attack_views(views):
                return attacks.onmanifold_examples(
                    net, decoder, font, letter, theta, eps=0.3, steps=steps, seed=seed
                )

        return run

    with compute.threads(1), models.frozen(net):
        x, y = decoder(font, letter, theta), letter
        one_step = input_gradient_step(models.attack_view(net), x, y)

        def classifier():
            for _ in range(steps):
                one_step()

        times = interleaved(
            {"off": attack(False), "on": attack(True), "floor": classifier},
            repeats=repeats,
        )
        same = _agreement(net, decoder, font, letter, attack(False)(), attack(True)())
    off, on, floor = (statistics.median(times[k]) for k in ("off", "on", "floor"))
    return {
        **same,
        "ceiling_attack_off_ms": off * 1e3,
        "ceiling_attack_on_ms": on * 1e3,
        "ceiling_classifier_ms": floor * 1e3,
        "ceiling_attack_speedup": off / on,
        "ceiling_speedup": off / floor,
        "ceiling_overhead_ms": (on - floor) * 1e3,
    }


def _agreement(net, decoder, font, letter, old: Tensor, new: Tensor) -> dict:
    """How alike the attack's θ̃ are with views off (``old``) and on (``new``): the
    share of examples whose θ̃ agree within 10⁻⁴ in every coordinate, and the mean
    cross-entropy of the plain network at each (the quantity the attack maximises)."""
    with torch.no_grad():
        loss = [
            F.cross_entropy(net(decoder(font, letter, t)), letter).item()
            for t in (old, new)
        ]
    close = ((old - new).abs().amax(1) <= 1e-4).float().mean().item()
    return {
        "ceiling_same_theta_share": close,
        "ceiling_loss_off": loss[0],
        "ceiling_loss_on": loss[1],
    }


class _BFloat16View(nn.Module):
    """An attack view (:class:`~advmanifold.science.models.FoldedConvNet`) with its
    buffers in bfloat16: the input cast in, the logits cast back to float32."""

    def __init__(self, folded: models.FoldedConvNet):
        super().__init__()
        self.net = copy.deepcopy(folded).to(torch.bfloat16)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x.to(torch.bfloat16)).float()


def bfloat16_lever(repeats: int = 20, n: int = 50, seed: int = 0) -> dict[str, float]:
    """At one thread, the classifier's input-gradient step at batch ``n`` in float32
    (the attack view) against the same network in bfloat16 (oneDNN uses AMX or
    AVX-512 BF16 where the CPU has them), and the share of ∇ₓ's coordinates whose
    sign (all a sign step uses) the two agree on."""
    net = trained_like_convnet(seed)
    x, y = random_batch(n, seed)
    with compute.threads(1), models.frozen(net):
        view = models.attack_view(net)
        half = _BFloat16View(view) if isinstance(view, models.FoldedConvNet) else None
        if half is None:
            return {}
        f32, b16 = (input_gradient_step(m, x, y) for m in (view, half))
        times = interleaved({"f32": f32, "b16": b16}, repeats=repeats)
        agree = (f32().sign() == b16().sign()).float().mean().item()
    a, b = (statistics.median(times[k]) for k in ("f32", "b16"))
    return {
        "lever_bf16_f32_ms": a * 1e3,
        "lever_bf16_ms": b * 1e3,
        "lever_bf16_speedup": a / b,
        "lever_bf16_sign_agreement": agree,
    }
