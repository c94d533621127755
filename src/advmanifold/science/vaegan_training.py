"""Training the class-specific VAE-GANs of :mod:`advmanifold.science.generative`.

Losses on a batch, summed over the batch, the pixels and the latent dimensions as
in the original code, with x̂ = dec(μ + σ ⊙ ε), ε ~ N(0, I):

    L_enc,dec = KL(q(z|x) ‖ N(0, I)) + β ‖x̂ − x‖₁ + γ · (−log σ(D(x̂)))
    L_D       = γ · (−log σ(D(x)) − log(1 − σ(D(x̂))))

β = 2.25 (5 for digit 1, 3 for digit 7), γ = 1 (KL weight 1); Adam with betas
(0.5, 0.9) and weight decay 10⁻⁴; the learning rate after b of the S batches of epoch
e is 0.005 · 0.9^(e + 1 + b/S), the original scheduler's per-batch decay. Both losses
use the same forward pass, as in the original code.

Training either steps the grouped network once per batch (one Python step for all
ten; the choice on a GPU) or steps ten separate networks in turn on the same batches
(on the CPU, where grouped convolutions measured 8–20% slower than ten dense ones);
Adam acts per coordinate, so both are ten independent trainings. Every random number
(initial weights, batches, reparameterisation noise) is drawn for all ten classes
whichever models step, so one class trained alone (:func:`train_vaegan_class`, e.g. in
a process of its own) is bit for bit the model of its class in the sequential run, and
:func:`assemble_vaegans` puts ten of them back together.
"""

from __future__ import annotations

import math
from functools import partial

import torch
import torch.nn.functional as F
from torch import Tensor
from tqdm.std import tqdm

from .compute import flush_denormals
from .generative import BETAS, LATENT, VAEGANs


def _losses(
    model: VAEGANs, x: Tensor, betas: Tensor, gamma: float, noise: Tensor | None = None
) -> tuple[Tensor, Tensor, dict]:
    """Generator (encoder + decoder) and discriminator losses of one grouped batch;
    ``noise`` is the ε of the reparameterisation z = μ + σ ⊙ ε (drawn if None)."""
    mu, logvar = model.encode(x)
    eps = torch.randn_like(mu) if noise is None else noise
    z = mu + torch.exp(0.5 * logvar) * eps
    x_hat = model.decode(z)
    kl = -0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(-1)  # [B, G]
    rec = (x_hat - x).abs().flatten(2).sum(-1)  # [B, G]
    d_real, d_fake = model.discriminate(x), model.discriminate(x_hat)
    gan = F.softplus(-d_fake)  # −log σ(D(x̂))
    gen = (kl + betas * rec + gamma * gan).sum()  # sums, as the original
    disc = gamma * (F.softplus(-d_real) + F.softplus(d_fake)).sum()
    stats = {"kl": kl.mean().item(), "l1": rec.mean().item(), "gan": gan.mean().item()}
    return gen, disc, stats


def _class_table(
    labels: Tensor, n_models: int, length: int, generator: torch.Generator
) -> Tensor:
    """[G, length] training indices: a fresh permutation of each class, repeated to
    ``length``."""
    rows = []
    for g in range(n_models):  # a loop over the classes, not over examples
        idx = (labels == g).nonzero().squeeze(1)
        perm = idx[torch.randperm(len(idx), generator=generator)]
        rows.append(perm.repeat(math.ceil(length / len(perm)))[:length])
    return torch.stack(rows)


STRATEGIES = ("auto", "grouped", "sequential")


def _lr_factor(step: int, decay: float, steps_per_epoch: int) -> float:
    """The original scheduler's factor after ``step`` batches: decay^(1 + step / S)."""
    return decay ** (1 + step / steps_per_epoch)


class _Part:
    """One trained network (all classes grouped, or one class), its two optimisers."""

    def __init__(
        self,
        model: VAEGANs,
        classes: slice,
        beta: Tensor,
        lr: float,
        lr_decay: float,
        weight_decay: float,
        steps_per_epoch: int,
    ):
        self.model, self.classes, self.beta = model, classes, beta
        named = list(model.named_parameters())
        self.gen_params = [p for n, p in named if not n.startswith("disc_")]
        self.disc_params = [p for n, p in named if n.startswith("disc_")]
        self.optimisers = [
            torch.optim.Adam(ps, lr=lr, betas=(0.5, 0.9), weight_decay=weight_decay)
            for ps in (self.gen_params, self.disc_params)
        ]
        factor = partial(_lr_factor, decay=lr_decay, steps_per_epoch=steps_per_epoch)
        self.schedules = [
            torch.optim.lr_scheduler.LambdaLR(o, factor) for o in self.optimisers
        ]

    def step(self, x: Tensor, noise: Tensor, gamma: float) -> dict:
        """One Adam step of encoder + decoder and of the discriminator on the same
        forward pass."""
        gen, disc, stats = _losses(
            self.model, x[:, self.classes], self.beta, gamma, noise[:, self.classes]
        )
        g_grads = torch.autograd.grad(gen, self.gen_params, retain_graph=True)
        d_grads = torch.autograd.grad(disc, self.disc_params)
        for p, grad in zip(self.gen_params + self.disc_params, g_grads + d_grads):
            p.grad = grad
        for optimiser, schedule in zip(self.optimisers, self.schedules):
            optimiser.step()
            schedule.step()  # per batch, as the original
        stats["disc"] = disc.item() / self.model.n_models
        return stats


TRACE = ("kl", "l1", "gan", "disc")
"""The losses recorded per training step (columns of a trace)."""


def _check_training(epochs, batch_size, strategy, labels, G) -> Tensor:
    if int(epochs) != epochs or epochs < 1:
        raise ValueError(f"epochs must be an integer >= 1, got {epochs!r}")
    if int(batch_size) != batch_size or batch_size < 2:
        raise ValueError(f"batch_size must be an integer >= 2, got {batch_size!r}")
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {STRATEGIES}, got {strategy!r}")
    counts = torch.bincount(labels, minlength=G)
    if len(counts) != G or (counts == 0).any():
        raise ValueError(
            f"labels must cover every class 0..{G - 1} (one β each), "
            f"got counts {counts.tolist()}"
        )
    return counts


def _fit(
    images: Tensor,
    labels: Tensor,
    *,
    epochs: int,
    batch_size: int,
    lr: float,
    lr_decay: float,
    weight_decay: float,
    betas,
    gamma: float,
    latent: int,
    seed: int,
    strategy: str,
    classes: list[int] | None,
    progress: bool,
) -> tuple[list[_Part], list[Tensor]]:
    """The training loop of :func:`train_vaegans`: the trained parts and, per part, its
    trace [epochs, steps, 4] (the :data:`TRACE` losses of every step, float64).

    Every random number is drawn for all G classes, whichever are trained: the initial
    weights (one grouped model, seeded with ``seed``), each epoch's batches (a
    permutation of every class from one generator) and the reparameterisation noise
    ε [B, G, latent] of every step. ``classes`` (sequential only) trains the models of
    those classes alone; since models never interact, each is the one a run over all
    classes trains, bit for bit.
    """
    G = len(betas)
    counts = _check_training(epochs, batch_size, strategy, labels, G)
    if strategy == "auto":
        strategy = "grouped" if images.is_cuda else "sequential"
    if classes is None:
        classes = list(range(G))
    elif strategy != "sequential" or not all(0 <= g < G for g in classes):
        raise ValueError(
            f"classes needs strategy 'sequential' and classes in 0..{G - 1}, "
            f"got {classes!r} with {strategy!r}"
        )
    flush_denormals()
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)  # batches
    noise_generator = torch.Generator().manual_seed(seed + 1)  # reparameterisation ε
    beta = torch.tensor(betas, dtype=images.dtype, device=images.device)
    init = VAEGANs(G, latent).to(images.device)  # same initial weights, both strategies
    steps = math.ceil(counts.max().item() / batch_size)
    opt = dict(
        lr=lr, lr_decay=lr_decay, weight_decay=weight_decay, steps_per_epoch=steps
    )
    if strategy == "grouped":
        parts = [_Part(init, slice(0, G), beta, **opt)]
    else:
        parts = [
            _Part(init.member(g), slice(g, g + 1), beta[g : g + 1], **opt)
            for g in classes
        ]
    shape = (epochs, steps, len(TRACE))
    traces = [torch.zeros(shape, dtype=torch.float64) for _ in parts]
    flat = images.reshape(len(images), 28, 28)
    bar = tqdm(
        total=epochs * steps,
        desc=f"VAE-GANs ({len(classes)} of {G} classes, {strategy})",
        disable=not progress,
        mininterval=2.0,
        unit="step",
    )
    for part in parts:
        part.model.train()
    for epoch in range(epochs):
        table = _class_table(labels, G, steps * batch_size, generator)
        for s in range(steps):
            x = flat[
                table[:, s * batch_size : (s + 1) * batch_size].T
            ]  # [B, G, 28, 28]
            noise = torch.randn(batch_size, G, latent, generator=noise_generator)
            noise = noise.to(images.device)
            for part, trace in zip(parts, traces):  # grouped: one; else one per class
                stats = part.step(x, noise, gamma)
                row = [stats[k] for k in TRACE]  # Python floats, kept exactly
                trace[epoch, s] = torch.tensor(row, dtype=torch.float64)
            bar.update(1)
        bar.set_postfix(epoch=epoch + 1)
    bar.close()
    return parts, traces


def epoch_history(traces: list[Tensor], sizes: list[int]) -> list[dict]:
    """One row per epoch: each :data:`TRACE` loss averaged over the steps and the
    models, from the traces [epochs, steps, 4] of parts of ``sizes`` models (G in
    all): Σ_s Σ_p v_ps · n_p / (G · S), summed in this order, so that the history of
    ten single-class traces equals that of one run over all classes bit for bit."""
    G = sum(sizes)
    epochs, steps = traces[0].shape[:2]
    rows = [t.tolist() for t in traces]
    history = []
    for epoch in range(epochs):
        sums = dict.fromkeys(TRACE, 0.0)
        for s in range(steps):
            for row, n in zip(rows, sizes):
                for k, v in zip(TRACE, row[epoch][s]):
                    sums[k] += v * n / (G * steps)
        history.append({"epoch": epoch + 1, **sums})
    return history


def train_vaegans(
    images: Tensor,
    labels: Tensor,
    *,
    epochs: int,
    batch_size: int = 100,
    lr: float = 0.005,
    lr_decay: float = 0.9,
    weight_decay: float = 1e-4,
    betas=BETAS,
    gamma: float = 1.0,
    latent: int = LATENT,
    seed: int = 0,
    strategy: str = "auto",
    progress: bool = True,
) -> tuple[VAEGANs, list[dict]]:
    """Train one VAE-GAN per class on ``images`` [N, 1, 28, 28], ``labels`` in 0..G−1.

    An epoch is ⌈max_g N_g / batch_size⌉ steps; each step feeds every model a batch of
    ``batch_size`` images of its own class (smaller classes wrap around).
    ``strategy="grouped"`` trains the G models as one network of grouped layers (one
    Python step for all); ``"sequential"`` steps G separate networks in turn on the same
    batches; ``"auto"`` picks grouped on CUDA and sequential on the CPU, where grouped
    convolutions measured slower than ten dense ones. Either way the result is returned
    as one grouped :class:`~advmanifold.science.generative.VAEGANs` (eval mode), plus
    one row of mean losses per epoch (:func:`epoch_history`). The sequential run equals
    :func:`assemble_vaegans` of :func:`train_vaegan_class` for every class.
    """
    parts, traces = _fit(
        images,
        labels,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        lr_decay=lr_decay,
        weight_decay=weight_decay,
        betas=betas,
        gamma=gamma,
        latent=latent,
        seed=seed,
        strategy=strategy,
        classes=None,
        progress=progress,
    )
    history = epoch_history(traces, [p.model.n_models for p in parts])
    if len(parts) == 1 and parts[0].model.n_models == len(betas):  # grouped
        return parts[0].model.eval(), history
    return VAEGANs.from_members([p.model for p in parts]).eval(), history


def train_vaegan_class(
    images: Tensor,
    labels: Tensor,
    digit: int,
    *,
    epochs: int,
    batch_size: int = 100,
    lr: float = 0.005,
    lr_decay: float = 0.9,
    weight_decay: float = 1e-4,
    betas=BETAS,
    gamma: float = 1.0,
    latent: int = LATENT,
    seed: int = 0,
    progress: bool = True,
) -> tuple[VAEGANs, Tensor]:
    """The model of class ``digit`` alone (``n_models=1``, eval mode) and its trace
    [epochs, steps, 4]: bit for bit member ``digit`` of :func:`train_vaegans` with
    ``strategy="sequential"`` and the same arguments (the random numbers of every
    class are drawn, only this class's model steps; see ``_fit``), so the ten
    classes can train in parallel and :func:`assemble_vaegans` puts them together."""
    parts, traces = _fit(
        images,
        labels,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        lr_decay=lr_decay,
        weight_decay=weight_decay,
        betas=betas,
        gamma=gamma,
        latent=latent,
        seed=seed,
        strategy="sequential",
        classes=[int(digit)],
        progress=progress,
    )
    return parts[0].model.eval(), traces[0]


def assemble_vaegans(
    members: list[tuple[VAEGANs, Tensor]],
) -> tuple[VAEGANs, list[dict]]:
    """The grouped model and history of :func:`train_vaegans` (sequential) from the
    (model, trace) of :func:`train_vaegan_class` for every class, in class order."""
    model = VAEGANs.from_members([m for m, _ in members]).eval()
    return model, epoch_history([t for _, t in members], [1] * len(members))
