"""What the pieces measure: the benchmark MLP (a cached unit trained on MNIST), the
FONTS decoder (on cached font prototypes), a ConvNet standing in for a trained one
with random batches, and the steps they are timed on (an attack step, a training
step, an adversarial-training step). :func:`units` lists the appendix's cached
work."""

from __future__ import annotations

from typing import Any, Callable, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from ...science import models, training
from ...science.models import MLP
from .sizes import STEM, settings

# ---------------------------------------- the MLP and the font prototypes


def mlp_flops(sizes=(784, 1568, 1568, 10), *, backward: bool = True) -> int:
    """Floating-point operations per example of the MLP: 2·Σ a·b for the forward
    matrix products, the same again for the backward pass to the *input* (no weight
    gradients, as in an attack); biases and ReLUs are negligible and not counted."""
    forward = sum(2 * a * b for a, b in zip(sizes[:-1], sizes[1:]))
    return forward * (2 if backward else 1)


#: seconds per training image of the benchmark MLP's epoch on the reference machine
SECONDS_PER_MLP_IMAGE = 1e-3


def _train_mlp(
    n_train: int, data_dir, epochs: int, batch_size: int, lr: float, seed: int
) -> dict:
    """Build of :func:`mlp_unit`: the MLP trained on the first ``n_train`` MNIST
    training images; its state dict."""
    from ...science.data import load_mnist

    x, y = load_mnist(True, data_dir, limit=n_train)
    torch.manual_seed(seed)
    model = MLP()
    training.train(
        model,
        x,
        y,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        seed=seed,
        desc="benchmark MLP",
        progress=False,
    )
    return model.state_dict()


def mlp_unit(
    n_train: int,
    *,
    data_dir=None,
    epochs: int = 1,
    batch_size: int = 128,
    lr: float = 1e-3,
    seed: int = 0,
):
    """The ``benchmark-mlp`` unit: the 784-1568-1568-10 MLP trained with Adam on
    cross-entropy on the first ``n_train`` MNIST training images (keyed by their
    fingerprint and the settings)."""
    from functools import partial

    from ...book.cache import fingerprint
    from ...science.data import load_mnist
    from ...book.units import Unit

    x, y = load_mnist(True, data_dir, limit=n_train)
    config = {
        "model": "MLP-784-1568-1568-10",
        "epochs": epochs,
        "batch_size": batch_size,
        "lr": lr,
        "seed": seed,
        "data": fingerprint(x, y),
    }
    build = partial(_train_mlp, n_train, data_dir, epochs, batch_size, lr, seed)
    return Unit(
        STEM,
        "benchmark-mlp",
        config,
        build,
        estimate_s=SECONDS_PER_MLP_IMAGE * epochs * len(x),
    )


def trained_mlp(n_train: int, *, data_dir=None, seed: int = 0) -> nn.Module:
    """The MLP of :func:`mlp_unit`, loaded from the cache or trained now."""
    torch.manual_seed(seed)
    model = MLP()
    model.load_state_dict(mlp_unit(n_train, data_dir=data_dir, seed=seed).get())
    return model.eval()


def prototypes_unit(bundled_only: bool):
    """The ``fonts-prototypes`` unit of the FONTS pieces: matplotlib's bundled fonts,
    or every font of the system (:func:`advmanifold.chapters.fonts.prototypes_unit`)."""
    from .. import fonts
    from ...science import glyphs

    files = glyphs.matplotlib_font_files() if bundled_only else None
    return fonts.prototypes_unit(files=files, chapter=STEM)


def units(profile: str, params: Mapping[str, Any]) -> list:
    """The appendix's cached work for ``profile`` and the notebook's ``params``
    (:mod:`advmanifold.book.units`): the benchmark MLP and the font prototypes that the
    FONTS decoder and ConvNet pieces render."""
    cfg = settings.from_params(profile, params)
    found = [
        mlp_unit(
            cfg.mlp_train,
            data_dir=params.get("data_dir"),
            seed=int(params.get("seed", 0)),
        ),
        prototypes_unit(bundled_only=True),
    ]  # the decoder piece and, in smoke, the OnAdvTrain unit's fonts
    if not cfg.decoder_bundled_fonts:
        found.append(prototypes_unit(bundled_only=False))
    return found


def decoder_and_source(n_fonts: int, *, bundled_only: bool = False):
    """A FONTS decoder on ``n_fonts`` legible fonts (fewer if fewer are installed,
    :func:`advmanifold.chapters.generalization_models.load_decoder`) and the fonts'
    source; ``bundled_only`` uses matplotlib's bundled fonts (fast, ~8 designs)."""
    from ..generalization_models import load_decoder

    proto = prototypes_unit(bundled_only)
    source = "matplotlib" if bundled_only else "system"
    return load_decoder(proto, n_fonts, fewer=True), source


# ---------------------------------------- the ConvNet and its steps


def random_batch(batch: int, seed: int = 0):
    """``batch`` uniform random 28 × 28 images and labels (seeded): the ConvNet's
    cost does not depend on what it sees."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(batch, 1, 28, 28, generator=g)
    return x, torch.randint(0, 10, (batch,), generator=g)


def trained_like_convnet(seed: int = 0) -> models.ConvNet:
    """A ConvNet in eval mode with non-trivial batch-norm statistics (three batches of
    random images), standing in for a trained one: the cost does not depend on the
    weights."""
    torch.manual_seed(seed)
    net = models.ConvNet().train()
    with torch.no_grad():
        for _ in range(3):
            net(torch.rand(100, 1, 28, 28))
    return net.eval()


def input_gradient_step(forward, x, y, *, counting=False) -> Callable[[], Any]:
    """One attack step's work: ∇ₓ Σ CE(f(x), y) (``counting``: through
    ``.backward()``, the same arithmetic, for :func:`flops`)."""

    def step():
        v = x.detach().requires_grad_(True)
        loss = F.cross_entropy(forward(v), y, reduction="sum")
        if counting:
            loss.backward()
            return v.grad
        return torch.autograd.grad(loss, v)[0]

    return step


def training_step(model, x, y, objective=None) -> Callable[[], None]:
    """One Adam step of ``model`` (train mode) on the batch."""
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-3)
    objective = objective or (lambda m, xb, yb: F.cross_entropy(m(xb), yb))

    def step():
        model.train()
        loss = objective(model, x, y)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()

    return step


def adversarial_training_step(
    model, x, y, eps: float = 0.3, steps: int = 40
) -> Callable[[], None]:
    """OffAdvTrain's step: PGD-``steps`` on the second half of the batch (through the
    attack view, :func:`advmanifold.science.training.adversarial_examples`), then one
    Adam step on the clean half and the examples."""
    from ...science.attacks import adversarial_examples

    h = len(x) // 2

    def objective(m, xb, yb):
        x_adv = adversarial_examples(m, xb[h:], yb[h:], eps=eps, steps=steps, seed=0)
        return F.cross_entropy(m(torch.cat([xb[:h], x_adv])), yb)

    return training_step(model, x, y, objective)
