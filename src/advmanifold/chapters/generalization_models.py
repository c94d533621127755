"""The models of the generalization chapter (:mod:`advmanifold.chapters.generalization`,
whose docstring describes the methods): the seeded streams of FONTS codes that make
its training and test sets, the training objective of every method, training, and
the measures of one trained model. The chapter's units are built from these.

The attacks are those of :mod:`advmanifold.science.attacks`: image-space PGD and FGSM,
the θ attacks on the FONTS manifold (:func:`~advmanifold.science.attacks.attack_theta`
and its training-time examples) and the original's Adam protocol.
"""

from __future__ import annotations

import hashlib
import itertools
import math
from dataclasses import dataclass
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..science import alignment, attacks, decoders, glyphs, models, training
from ..science.decoders import FontDecoder
from ..science.tangent import TangentSpace

STEM = "06_generalization"
METHODS = (
    "Normal",
    "OffAdvTrain",
    "OnAdvTrain",
    "STNAugm",
    "STNAdvTrain",
    "Aligned",
    "AlignedAdv",
)
ORIGINAL_METHODS = METHODS[:5]  # the methods of Stutz et al.
#: Which examples a training set of N and the test set hold: ``"iid"`` (font, letter
#: and θ uniform, a stream per seed) or ``"original"`` (the original's rows: font-major,
#: letter-minor, tiled, the first N taken; θ of one fixed data set for every seed).
ORDERS = ("iid", "original")
RANGES = "hard"
CHUNK = 1000  # examples per seeded chunk of a data stream


def load_decoder(proto, n_fonts: int | None, *, fewer: bool = False) -> FontDecoder:
    """The decoder on the first ``n_fonts`` legible fonts of a ``fonts-prototypes``
    unit (:func:`advmanifold.chapters.fonts.prototypes_unit`; all for None); when
    fewer exist, all of them with ``fewer``, else a ValueError. Kept per process (the
    prototypes entry is immutable), so a worker loads it once."""
    key = (proto.key, n_fonts, fewer)
    if key not in _DECODERS:
        images = proto.get()["images"]
        if not fewer and n_fonts is not None and n_fonts > len(images):
            raise ValueError(
                f"n_fonts={n_fonts} but only {len(images)} legible fonts exist here"
            )
        _DECODERS[key] = FontDecoder(images[:n_fonts])
    return _DECODERS[key]


_DECODERS: dict[tuple[str, int | None, bool], FontDecoder] = {}


# --- data ----------------------------------------------------------------------------


@dataclass
class Split:
    """Codes (font, letter = label, θ) and decoded images ``x [N, 1, 28, 28]``."""

    font: Tensor
    letter: Tensor
    theta: Tensor
    x: Tensor

    @property
    def y(self) -> Tensor:
        return self.letter

    def __len__(self) -> int:
        return len(self.letter)


def _chunk_generator(stream: str, seed: int, chunk: int) -> torch.Generator:
    digest = hashlib.sha256(f"{STEM}:{stream}:{seed}:{chunk}".encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:7], "little"))


def draw_codes(
    n: int, n_fonts: int, *, stream: str, seed: int, ranges: str = RANGES
) -> tuple[Tensor, Tensor, Tensor]:
    """The first ``n`` codes (font, letter, θ) of a seeded stream, i.i.d. uniform.

    The stream is drawn in chunks of :data:`CHUNK` with a generator per chunk, so the
    first n codes do not depend on how many are drawn (nested training sets)."""
    if int(n) != n or n < 0:
        raise ValueError(f"n must be a non-negative integer, got {n!r}")
    parts = []
    for c in range(math.ceil(n / CHUNK)):
        g = _chunk_generator(stream, seed, c)
        font = torch.randint(n_fonts, (CHUNK,), generator=g)
        letter = torch.randint(len(glyphs.LETTERS), (CHUNK,), generator=g)
        parts.append((font, letter, decoders.sample_theta(CHUNK, ranges, g)))
    if not parts:
        return (
            torch.zeros(0, dtype=torch.long),
            torch.zeros(0, dtype=torch.long),
            torch.zeros(0, 6),
        )
    return tuple(torch.cat(p)[:n] for p in zip(*parts))


def original_codes(
    n: int, n_fonts: int, *, stream: str, ranges: str = RANGES
) -> tuple[Tensor, Tensor, Tensor]:
    """The first ``n`` rows of the original's data set: row r shows font
    ⌊(r mod 10F) / 10⌋ and letter r mod 10 (font-major, letter-minor, the F·10
    prototypes tiled), so N ≤ 10F rows hold the first N/10 fonts, one θ each; θ is
    that of one fixed data set (seed 0 of the ``stream``) for every model seed."""
    _, _, theta = draw_codes(n, n_fonts, stream=stream, seed=0, ranges=ranges)
    within = torch.arange(n) % (len(glyphs.LETTERS) * n_fonts)
    letters = len(glyphs.LETTERS)
    return within // letters, within % letters, theta


def split(
    decoder: FontDecoder,
    n: int,
    *,
    stream: str,
    seed: int,
    ranges: str = RANGES,
    batch_size: int = 10_000,
    order: str = "iid",
) -> Split:
    """:func:`draw_codes` (or, for ``order="original"``, :func:`original_codes`)
    decoded into images."""
    if order not in ORDERS:
        raise ValueError(f"order must be one of {ORDERS}, got {order!r}")
    if order == "original":
        font, letter, theta = original_codes(
            n, decoder.n_fonts, stream=stream, ranges=ranges
        )
    else:
        font, letter, theta = draw_codes(
            n, decoder.n_fonts, stream=stream, seed=seed, ranges=ranges
        )
    with torch.no_grad():
        x = (
            torch.cat(
                [
                    decoder(
                        font[i : i + batch_size],
                        letter[i : i + batch_size],
                        theta[i : i + batch_size],
                    )
                    for i in range(0, n, batch_size)
                ]
            )
            if n
            else torch.zeros(0, 1, 28, 28)
        )
    return Split(font, letter, theta, x)


def train_split(decoder: FontDecoder, n: int, seed: int, order: str = "iid") -> Split:
    """The training set of ``n`` images of seed ``seed``."""
    return split(decoder, n, stream="train", seed=seed, order=order)


def test_split(decoder: FontDecoder, n: int, order: str = "iid") -> Split:
    """The fixed test set (its first ``n`` images)."""
    return split(decoder, n, stream="test", seed=0, order=order)


# --- perturbations used in training --------------------------------------------------


def random_theta(
    theta: Tensor,
    *,
    eps: float,
    ranges: str = RANGES,
    generator: torch.Generator | None = None,
) -> Tensor:
    """θ̃ uniform in the L∞ ball of radius ε around θ, clipped to the data ranges."""
    lower, upper = (b.to(theta) for b in decoders.theta_box(ranges))
    noise = torch.rand(theta.shape, generator=generator).to(theta) * 2 - 1
    return torch.maximum(torch.minimum(theta + eps * noise, upper), lower)


def objective(
    method: str, data: Split, decoder: FontDecoder, s: Any, seed: int = 0
) -> training.Objective:
    """The training objective of ``method`` for
    :func:`advmanifold.science.training.train` called with the example *indices* as
    inputs: each batch is decoded, perturbed and scored here, since the perturbations
    need the examples' codes."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    counter = itertools.count(1_000_003 * seed)
    generator = torch.Generator().manual_seed(seed)

    def adversarial_half(model, idx):
        x, y = data.x[idx], data.y[idx]
        h = len(idx) // 2
        if method in ("OffAdvTrain", "AlignedAdv"):
            x_tilde = attacks.adversarial_examples(
                model, x[h:], y[h:], eps=s.eps, steps=s.train_steps, seed=next(counter)
            )
        elif method == "STNAdvTrain":
            x_tilde = attacks.stn_examples(
                model, x[h:], y[h:], eps=s.eps, steps=s.train_steps, seed=next(counter)
            )
        else:
            f, t = data.font[idx[h:]], data.theta[idx[h:]]
            if method == "OnAdvTrain":
                t = attacks.onmanifold_examples(
                    model,
                    decoder,
                    f,
                    y[h:],
                    t,
                    eps=s.eps,
                    steps=s.train_steps,
                    seed=next(counter),
                )
            else:
                t = random_theta(t, eps=s.eps, generator=generator)
            with torch.no_grad():
                x_tilde = decoder(f, y[h:], t)
        return F.cross_entropy(model(torch.cat([x[:h], x_tilde])), y)

    def loss_fn(model: nn.Module, idx: Tensor, _y: Tensor) -> Tensor:
        x, y = data.x[idx], data.y[idx]
        if method == "Normal":
            return F.cross_entropy(model(x), y)
        if method == "Aligned":
            space = TangentSpace.of(decoder, data.font[idx], y, data.theta[idx])
            return alignment.aligned_cross_entropy(
                space, s.alpha, measure=s.penalty
            )(model, x, y)
        loss = adversarial_half(model, idx)
        if method == "AlignedAdv":
            h = len(idx) // 2
            space = TangentSpace.of(
                decoder, data.font[idx[:h]], y[:h], data.theta[idx[:h]]
            )
            loss = loss + alignment.alignment_penalty(
                space, s.alpha, measure=s.penalty
            )(model, x[:h], y[:h])
        return loss

    loss_fn.__name__ = method
    return loss_fn


def train_model(
    method: str,
    data: Split,
    decoder: FontDecoder,
    s: Any,
    seed: int,
    *,
    progress: bool = True,
    device: str = "cpu",
    wrap: Callable[[training.Objective], training.Objective] | None = None,
) -> models.ConvNet:
    """A :class:`ConvNet` trained with ``method`` on ``data`` (Adam, the original's
    schedule), in eval mode. ``wrap`` may wrap the objective (the benchmarks count
    and bound its calls); ``device`` holds the model."""
    torch.manual_seed(seed)
    model = models.ConvNet().to(device)
    loss_fn = objective(method, data, decoder, s, seed)
    training.train(
        model,
        torch.arange(len(data)),
        data.y,
        wrap(loss_fn) if wrap is not None else loss_fn,
        epochs=s.epochs,
        batch_size=s.batch_size,
        lr=s.lr,
        lr_decay=s.lr_decay,
        weight_decay=s.weight_decay,
        seed=seed,
        progress=progress,
        desc=f"{method} N={len(data)} seed {seed}",
    )
    return model


# --- evaluation ----------------------------------------------------------------------


def evaluate(
    model: nn.Module, decoder: FontDecoder, test: Split, s: Any, seed: int = 0
) -> dict[str, float]:
    """The measures of one model on the test set (see the module docstring).

    Success rates count over the attacked examples that the model classifies
    correctly; robust accuracies over all attacked examples (correct and not fooled).
    The attacks run through the model's attack view (:func:`models.attack_view`)."""
    with models.frozen(model):
        return _evaluate(model, models.attack_view(model), decoder, test, s, seed)


def _evaluate(model, view, decoder, test, s, seed) -> dict[str, float]:
    n_test, n_attack, n_align = (
        min(v, len(test)) for v in (s.n_test, s.n_attack, s.n_align)
    )
    predicted = models.predict(model, test.x[:n_test])
    out = {"test_error": (predicted != test.y[:n_test]).float().mean().item()}
    a = slice(0, n_attack)
    x, y, f, t = test.x[a], test.y[a], test.font[a], test.theta[a]
    correct = models.predict(model, x) == y
    kwargs = dict(steps=s.attack_steps, restarts=s.restarts, mode="first", seed=seed)
    on, _ = attacks.attack_theta(
        view, decoder, f, y, t, eps=s.eps, ranges=RANGES, **kwargs
    )
    regular = attacks.pgd(view, x, y, eps=s.eps, **kwargs)
    n_correct = max(int(correct.sum()), 1)
    rate = lambda r: (r.success & correct).sum().item() / n_correct  # noqa: E731
    out["onmanifold_success"], out["regular_success"] = rate(on), rate(regular)
    fgsm = attacks.fgsm(view, x, y, eps=s.eps_small)
    pgd = attacks.pgd(
        view,
        x,
        y,
        eps=s.eps_small,
        steps=s.attack_steps,
        restarts=s.restarts,
        mode="best",
        seed=seed,
    )
    out["fgsm_accuracy"] = attacks.robust_accuracy(view, x, y, fgsm)
    out["pgd_accuracy"] = attacks.robust_accuracy(view, x, y, pgd)
    b = slice(0, n_align)
    g = alignment.input_gradients(model, test.x[b], test.y[b])
    space = TangentSpace.of(decoder, test.font[b], test.y[b], test.theta[b])
    frame = alignment.alignment_frame(g, space)
    out["alignment_cosine"] = float(frame.cosine.median())
    out["alignment_ratio"] = float(frame.ratio.median())
    return out


def evaluate_original(
    model: nn.Module, decoder: FontDecoder, test: Split, s: Any, seed: int = 0
) -> dict[str, float]:
    """The success rates under the original's protocol
    (:func:`advmanifold.science.attacks.adam_attack`): ``s.attempts`` attempts of
    ``s.original_steps`` Adam steps on the first ``s.n_original_on`` test images on
    the manifold (θ, font and letter fixed) and the first ``s.n_original_off`` in
    image space, each rate the mean over (example, attempt) pairs of the correctly
    classified examples (the original's ``raw_success``)."""
    kwargs = dict(
        steps=s.original_steps, lr=s.adam_lr, attempts=s.attempts, seed=seed
    )
    out = {}
    with models.frozen(model):
        view = models.attack_view(model)
        a = slice(0, min(s.n_original_on, len(test)))
        x, y = test.x[a], test.y[a]
        on, _ = attacks.attack_theta(
            view, decoder, test.font[a], y, test.theta[a], eps=s.eps, ranges=RANGES,
            attack=attacks.adam_attack, **kwargs,
        )
        out["onmanifold_success_original"] = on.per_attempt_success(
            models.predict(model, x) == y
        )
        b = slice(0, min(s.n_original_off, len(test)))
        x, y = test.x[b], test.y[b]
        regular = attacks.adam_attack(view, x, y, eps=s.eps, **kwargs)
        out["regular_success_original"] = regular.per_attempt_success(
            models.predict(model, x) == y
        )
    return out
