"""Class-specific VAE-GANs on MNIST and the on-manifold attack in their latent spaces.

One VAE-GAN per digit approximates that class's manifold (Stutz et al. 2019; the
VAE-GAN of Larsen et al. 2016). Per model, with z ∈ R^10:

- encoder q(z|x): 3 convolutions (k4, s2, p1; 64 → 128 → 256; batch norm; ReLU),
  then two linear maps to μ and log σ²;
- decoder: Linear(10 → 256·3·3), then transposed convolutions 3 → 7 → 14 → 28
  (256 → 128 → 64 → 1) and a sigmoid, so images lie in [0, 1];
- discriminator D: the classifier's convolution stack (:func:`models.conv_stack`)
  and a head 576 → 100 → 1.

The ten models live in one network of grouped layers (grouped convolutions, batched
linear maps, per-channel batch norm): group g is the model of digit g and sees only
images of digit g; groups never interact. :meth:`VAEGANs.member` cuts out one class's
model and :meth:`VAEGANs.from_members` puts ten back together. Their training, the
whole grouped model or one class alone, is :mod:`advmanifold.science.vaegan_training`.

On-manifold adversarial examples (:func:`onmanifold_attack`) follow the original
protocol: PGD on the latent code of the true class's model from the encoder mean,
kept at every step within η = 0.3 (L∞) of its start and inside the per-coordinate
[min, max] of the pooled test-set encoder means (:func:`latent_box`), with several
independent attempts; :func:`count_onmanifold` counts them by the original rule or by
the stricter rule used earlier in this book. With per-example random starts (``ids``)
the attack of chunks of examples, concatenated (:func:`concat_onmanifold`), equals the
attack of all.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.std import tqdm

from . import attacks
from .models import conv_stack, freeze, frozen, predict

LATENT = 10
BETAS = (2.25, 5.0, 2.25, 2.25, 2.25, 2.25, 2.25, 3.0, 2.25, 2.25)
"""Reconstruction weight β per digit (the original settings)."""


class GroupedLinear(nn.Module):
    """G independent linear maps applied side by side: y[:, g] = W_g x[:, g] + b_g."""

    def __init__(self, groups: int, in_features: int, out_features: int):
        super().__init__()
        bound = 1 / math.sqrt(in_features)  # nn.Linear's default initialisation
        weight = torch.empty(groups, out_features, in_features).uniform_(-bound, bound)
        self.weight = nn.Parameter(weight)
        bias = torch.empty(groups, out_features).uniform_(-bound, bound)
        self.bias = nn.Parameter(bias)

    def forward(self, x: Tensor) -> Tensor:  # x: [B, G, in]
        return torch.einsum("bgi,goi->bgo", x, self.weight) + self.bias


class VAEGANs(nn.Module):
    """``n_models`` VAE-GANs evaluated in parallel; images and codes carry a group axis.

    ``encode``: [B, G, 28, 28] → (μ, log σ²) each [B, G, latent];
    ``decode``: [B, G, latent] → [B, G, 28, 28] in [0, 1];
    ``discriminate``: [B, G, 28, 28] → logits [B, G].
    With ``n_models=1`` the group axis has size 1 (see :meth:`member`).
    """

    def __init__(self, n_models: int = 10, latent: int = LATENT):
        super().__init__()
        if int(n_models) != n_models or n_models < 1:
            raise ValueError(f"n_models must be an integer >= 1, got {n_models!r}")
        if int(latent) != latent or latent < 1:
            raise ValueError(f"latent must be an integer >= 1, got {latent!r}")
        G = self.n_models = int(n_models)
        self.latent = int(latent)
        enc = []
        for c_in, c_out in ((1, 64), (64, 128), (128, 256)):
            enc += [
                nn.Conv2d(G * c_in, G * c_out, 4, 2, 1, groups=G),
                nn.BatchNorm2d(G * c_out),
                nn.ReLU(),
            ]
        self.encoder = nn.Sequential(*enc)  # 28 → 14 → 7 → 3
        self.mu = GroupedLinear(G, 256 * 9, latent)
        self.logvar = GroupedLinear(G, 256 * 9, latent)
        self.dec_linear = GroupedLinear(G, latent, 256 * 9)
        self.decoder = nn.Sequential(
            nn.BatchNorm2d(G * 256),
            nn.ReLU(),
            nn.ConvTranspose2d(
                G * 256, G * 128, 4, 2, 1, output_padding=1, groups=G
            ),  # 3 → 7
            nn.BatchNorm2d(G * 128),
            nn.ReLU(),
            nn.ConvTranspose2d(G * 128, G * 64, 4, 2, 1, groups=G),  # 7 → 14
            nn.BatchNorm2d(G * 64),
            nn.ReLU(),
            nn.ConvTranspose2d(G * 64, G, 4, 2, 1, groups=G),  # 14 → 28
            nn.Sigmoid(),
        )
        self.disc_features = conv_stack(groups=G)
        self.disc_head = nn.ModuleList(
            [GroupedLinear(G, 64 * 9, 100), GroupedLinear(G, 100, 1)]
        )

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        B, G = x.shape[0], self.n_models
        h = self.encoder(x.reshape(B, G, 28, 28)).reshape(B, G, 256 * 9)
        return self.mu(h), self.logvar(h)

    def decode(self, z: Tensor) -> Tensor:
        B, G = z.shape[0], self.n_models
        h = self.dec_linear(z.reshape(B, G, self.latent)).reshape(B, G * 256, 3, 3)
        return self.decoder(h).reshape(B, G, 28, 28)

    def discriminate(self, x: Tensor) -> Tensor:
        B, G = x.shape[0], self.n_models
        h = self.disc_features(x.reshape(B, G, 28, 28)).reshape(B, G, 64 * 9)
        return self.disc_head[1](F.relu(self.disc_head[0](h))).squeeze(-1)

    def member(self, g: int) -> "VAEGANs":
        """A stand-alone copy (``n_models=1``, eval mode) of model ``g``."""
        if not 0 <= g < self.n_models:
            raise ValueError(f"g must be in [0, {self.n_models}), got {g!r}")
        one = VAEGANs(1, self.latent).to(self.mu.weight.device)
        state = {}
        for name, value in self.state_dict().items():
            if value.ndim == 0:  # BN's num_batches_tracked
                state[name] = value.clone()
            elif isinstance(self.get_submodule(name.rsplit(".", 1)[0]), GroupedLinear):
                state[name] = value[g : g + 1].clone()
            else:  # group-major first axis
                size = value.shape[0] // self.n_models
                state[name] = value[g * size : (g + 1) * size].clone()
        one.load_state_dict(state)
        return one.eval()

    @classmethod
    def from_members(cls, members: list["VAEGANs"]) -> "VAEGANs":
        """The grouped model whose group g is ``members[g]`` (each with ``n_models=1``):
        the inverse of :meth:`member`, by concatenating group-major parameters."""
        if not members or any(
            m.n_models != 1 or m.latent != members[0].latent for m in members
        ):
            raise ValueError(
                "members must be a non-empty list of single VAE-GANs with "
                "the same latent size"
            )
        model = cls(len(members), members[0].latent).to(members[0].mu.weight.device)
        states = [m.state_dict() for m in members]
        model.load_state_dict(
            {
                name: value.clone()
                if value.ndim == 0
                else torch.cat([st[name] for st in states])
                for name, value in states[0].items()
            }
        )
        return model


def vaegans_from_payload(payload: dict, device: str | torch.device = "cpu") -> VAEGANs:
    """The grouped model (eval mode) stored by a training unit, ``{"state",
    "history"}``."""
    state = payload["state"]
    n_models, latent = state["mu.weight"].shape[:2]
    model = VAEGANs(n_models, latent)
    model.load_state_dict(state)
    return model.to(device).eval()


@torch.no_grad()
def encode_by_class(
    model: VAEGANs, x: Tensor, y: Tensor, batch_size: int = 2000
) -> Tensor:
    """Encoder means μ [N, latent] of each image under the model of its own class."""
    x = x.reshape(len(x), 28, 28)
    mu = x.new_zeros(len(x), model.latent)
    for g in range(model.n_models):  # a loop over classes, in batches of examples
        sel = (y == g).nonzero().squeeze(1)
        if sel.numel():
            member = model.member(g)
            mu[sel] = torch.cat(
                [
                    member.encode(x[s].unsqueeze(1))[0].squeeze(1)
                    for s in sel.split(batch_size)
                ]
            )
    return mu


@torch.no_grad()
def decode_by_class(model: VAEGANs, z: Tensor, y: Tensor) -> Tensor:
    """Images [N, 1, 28, 28] decoded from codes z by the model of class y."""
    out = z.new_zeros(len(z), 1, 28, 28)
    for g in range(model.n_models):
        sel = (y == g).nonzero().squeeze(1)
        if sel.numel():
            out[sel] = model.member(g).decode(z[sel].unsqueeze(1))
    return out


@torch.no_grad()
def sample(model: VAEGANs, n: int, seed: int = 0) -> Tensor:
    """n samples per class from the prior: [n, G, 28, 28] (all classes in one pass)."""
    generator = torch.Generator().manual_seed(seed)
    z = torch.randn(n, model.n_models, model.latent, generator=generator)
    return model.eval().decode(z.to(model.mu.weight.device))


def latent_box(mu: Tensor) -> tuple[Tensor, Tensor]:
    """Per-coordinate [min, max] of encoder means μ [N, latent], the original's box,
    over the whole test set with every image under its own class's encoder (pooled)."""
    if mu.ndim != 2 or len(mu) == 0:
        raise ValueError(
            f"mu must be a non-empty [N, latent] tensor, got {tuple(mu.shape)}"
        )
    return mu.amin(0), mu.amax(0)


PROTOCOLS = ("original", "strict")
"""How on-manifold successes are counted (:func:`count_onmanifold`)."""


@dataclass
class OnManifoldResult:
    """Latent-space attack outcome: A independent attempts on N examples.

    ``z0`` [N, L] encoder means; ``z`` [A, N, L] final code of every attempt (the first
    code that fools the classifier, else the last iterate); ``fooled`` [A, N]: the
    classifier's label on dec_y(z) differs from y; ``clean_correct`` [N]: it labels
    dec_y(z0) correctly; ``image_correct`` [N]: it labels x correctly; ``attacked`` [N]:
    examples that were attacked at all. The others (dec_y(z0) already wrong, or
    ‖z0‖∞ > bound + η) cannot count under either protocol, so they are skipped and keep
    ``z = z0``, ``fooled = False``.
    """

    z0: Tensor
    z: Tensor
    fooled: Tensor
    clean_correct: Tensor
    image_correct: Tensor
    attacked: Tensor
    steps: Tensor
    bound: float
    eta: float

    def count(self, protocol: str = "original") -> "OnManifoldCount":
        return count_onmanifold(
            self.fooled,
            self.z,
            self.z0,
            self.clean_correct,
            self.image_correct,
            bound=self.bound,
            protocol=protocol,
        )


@dataclass
class OnManifoldCount:
    """Successes under one counting protocol: ``success`` [A, N] (original: every
    counted attempt) or [N] (strict: one per image), their number, the denominator
    and the rate = successes / denominator."""

    protocol: str
    success: Tensor
    successes: int
    denominator: int

    @property
    def rate(self) -> float:
        return self.successes / self.denominator if self.denominator else float("nan")


def count_onmanifold(
    fooled: Tensor,
    z: Tensor,
    z0: Tensor,
    clean_correct: Tensor,
    image_correct: Tensor,
    *,
    bound: float = 2.0,
    protocol: str = "original",
) -> OnManifoldCount:
    """Count on-manifold adversarial examples from A attempts on N examples.

    ``"original"`` (Stutz et al.'s published evaluation): validity is checked on the
    clean code, ‖z0‖∞ ≤ bound; the denominator is the examples whose decoded clean
    code dec(z0) is classified correctly, each counted once per attempt; an attempt
    succeeds when it fools the classifier and its example is valid, so out-of-bound
    examples count as failures and the rate is averaged over the attempts:

        rate = Σ_a Σ_n [fooled_an ∧ ‖z0_n‖∞ ≤ bound ∧ c_n] / (A · Σ_n c_n).

    ``"strict"`` (the rule this book used before): validity on the adversarial code,
    ‖z_an‖∞ ≤ bound; the denominator is the examples classified correctly both as x
    and as dec(z0); an example succeeds when any attempt fools with a valid code.
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")
    attempts = fooled.shape[0]
    if protocol == "original":
        valid = z0.abs().amax(-1) <= bound  # [N]
        success = fooled & (valid & clean_correct).unsqueeze(0)  # [A, N]
        return OnManifoldCount(
            protocol, success, int(success.sum()), attempts * int(clean_correct.sum())
        )
    eligible = clean_correct & image_correct
    success = (fooled & (z.abs().amax(-1) <= bound)).any(0) & eligible  # [N]
    return OnManifoldCount(protocol, success, int(success.sum()), int(eligible.sum()))


def onmanifold_attack(
    classifier: nn.Module,
    model: VAEGANs,
    x: Tensor,
    y: Tensor,
    *,
    box: tuple[Tensor, Tensor] | None,
    eta: float = 0.3,
    bound: float = 2.0,
    steps: int = 40,
    step_size: float | None = None,
    attempts: int = 1,
    seed: int = 0,
    batch_size: int = 1000,
    progress: bool = True,
    z0: Tensor | None = None,
    ids: Tensor | None = None,
) -> OnManifoldResult:
    """On-manifold adversarial examples in the latent space of the true class's model.

    :func:`advmanifold.science.attacks.latent_pgd` on the code z against
    classifier ∘ dec_y, from the encoder mean z0 = μ_y(x) with a random start; every
    step keeps z in the ε-ball ‖z − z0‖∞ ≤ η and in ``box`` = (lower, upper) per
    coordinate (the pooled test-latent box of :func:`latent_box`; None for no box);
    the first code that fools the
    classifier is kept. ``attempts`` independent runs (different random starts) are all
    returned; counting is left to :meth:`OnManifoldResult.count`. Examples are grouped
    by class (one attack per class and attempt). ``z0``: the encoder means if already
    computed (None: encoded here). ``ids`` (one integer per example, e.g. its index in
    the test set): each example's random starts come from its own generators, so the
    attack of a chunk of examples equals the matching rows of the attack of all
    (:func:`concat_onmanifold`).
    """
    if not bound > 0:
        raise ValueError(f"bound must be > 0, got {bound!r}")
    if int(attempts) != attempts or attempts < 1:
        raise ValueError(f"attempts must be an integer >= 1, got {attempts!r}")
    lower, upper = (None, None) if box is None else box
    classifier.eval()
    if z0 is None:
        z0 = encode_by_class(model, x, y)
    image_correct = predict(classifier, x) == y
    clean_correct = predict(classifier, decode_by_class(model, z0, y)) == y
    # skipping these is exact: they cannot count under either protocol
    attacked = clean_correct & (z0.abs().amax(1) <= bound + eta)
    z = z0.unsqueeze(0).repeat(attempts, 1, 1)
    fooled = torch.zeros(attempts, len(x), dtype=torch.bool, device=x.device)
    used = torch.zeros(attempts, len(x), dtype=torch.long, device=x.device)
    bar = tqdm(
        total=int(attacked.sum()) * attempts,
        desc="on-manifold attack",
        unit="code",
        disable=not progress,
        mininterval=2.0,
    )
    with contextlib.ExitStack() as stack:
        stack.callback(bar.close)
        stack.enter_context(frozen(classifier))
        for g in range(model.n_models):
            sel = (attacked & (y == g)).nonzero().squeeze(1)
            if not sel.numel():
                continue
            member = freeze(model.member(g))

            def decode(v, member=member):
                return member.decode(v.unsqueeze(1)).reshape(-1, 1, 28, 28)

            for a in range(attempts):
                result = attacks.latent_pgd(
                    classifier,
                    decode,
                    z0[sel],
                    y[sel],
                    eta=eta,
                    steps=steps,
                    step_size=step_size,
                    lower=lower,
                    upper=upper,
                    batch_size=batch_size,
                    seed=seed + 1000 * a + g,
                    ids=None if ids is None else ids[sel.cpu()],
                )
                z[a, sel] = result.adversarial
                fooled[a, sel], used[a, sel] = result.success, result.steps
                bar.update(len(sel))
    return OnManifoldResult(
        z0,
        z,
        fooled,
        clean_correct,
        image_correct,
        attacked,
        used,
        float(bound),
        float(eta),
    )


def concat_onmanifold(parts: list[OnManifoldResult]) -> OnManifoldResult:
    """The results of attacks on consecutive chunks of examples as one result (the
    example axis concatenated; ``bound`` and ``eta`` must agree)."""
    first = parts[0] if parts else None
    if not parts or any((p.bound, p.eta) != (first.bound, first.eta) for p in parts):
        raise ValueError("parts must be a non-empty list with the same bound and eta")
    return OnManifoldResult(
        torch.cat([p.z0 for p in parts]),
        torch.cat([p.z for p in parts], dim=1),
        torch.cat([p.fooled for p in parts], dim=1),
        torch.cat([p.clean_correct for p in parts]),
        torch.cat([p.image_correct for p in parts]),
        torch.cat([p.attacked for p in parts]),
        torch.cat([p.steps for p in parts], dim=1),
        parts[0].bound,
        parts[0].eta,
    )
