"""The MNIST chapter: settings per profile, its units, and its figures.

Units (each one cache entry, see :mod:`advmanifold.book.units`):

- ``convnet-mnist``: the ConvNet classifier of Stutz et al. trained on MNIST;
- ``vaegan-mnist``: the VAE-GAN of one digit (configuration key ``digit``), ten units
  that train in parallel
  (:func:`advmanifold.science.vaegan_training.train_vaegan_class`);
- ``vaegans-mnist``: the ten VAE-GANs as one grouped model, assembled from the ten
  ``vaegan-mnist`` (its key is the one it had when it trained the ten in turn: the
  payload is the same, bit for bit);
- ``mnist-test-codes``: the encoder mean of every test image under its own class;
- ``mnist-regular-attack``: the regular L∞ attack on one chunk of test images;
- ``mnist-onmanifold-attack``: the on-manifold attack on one chunk of test images.

The attack units cover consecutive chunks of ``attack_chunk`` test images, and every
example draws its random starts from its own generators (``ids``, the test index), so
their results concatenated equal one attack over all the images. Models are keyed by
their settings and a fingerprint of the training images they see, attacks by the keys
of the models and a fingerprint of the test set, so the notebook, the planner and a
Dask worker all build the same entries. The k-NN distances take seconds and run in
the notebook.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from types import SimpleNamespace
from typing import Any, Mapping

import torch
from torch import Tensor

from ..book import cache, profiles
from ..book.profiles import Setting, integer, number, optional
from ..science import attacks, generative, models, training, vaegan_training
from ..science import verification
from ..science.data import load_mnist
from ..book.units import Unit

STEM = "02_mnist"

EPS = 0.3  # image-space L∞ radius of regular adversarial examples
ETA = 0.3  # latent L∞ radius of on-manifold adversarial examples
Z_BOUND = 2.0  # validity bound on the latent code's L∞ norm

CLASSIFIER = dict(lr=0.01, lr_decay=0.95, weight_decay=1e-4, batch_size=100)
"""The original ConvNet training (Adam), all profiles."""

VAEGAN = dict(
    lr=0.005,
    lr_decay=0.9,
    weight_decay=1e-4,
    gamma=1.0,
    betas=list(generative.BETAS),
    latent=generative.LATENT,
)
"""The original VAE-GAN optimisation, all profiles (batch size, epochs per profile)."""

TABLE: dict[str, dict[str, Any]] = {
    # smoke: only checks the code path on tiny subsets
    "smoke": dict(
        n_train=2000,
        classifier_epochs=1,
        vaegan_per_class=24,
        vaegan_batch=8,
        vaegan_epochs=1,
        n_test=40,
        n_onmanifold=60,
        attack_chunk=20,
        attempts=2,
        restarts=1,
        steps=10,
        k=50,
        n_recon=200,
        verify_n=32,
        verify_steps=5,
        verify_strong=10,
        verify_restarts=1,
        verify_targets=2,
        verify_small_eps=0.1,
    ),
    # quick (ours): full MNIST for the classifier and the k-NN search; the VAE-GANs see
    # the first 400 images of each digit, in batches of 32; the on-manifold attack runs
    # on 1,000 test images, sized for the cold quick book's 15 minutes: about 220
    # successes enter the histogram (on 2,000: 443 of 9,430 counted attempts, about
    # 0.05 per image and attempt, with these models); its attack units cover 250 test
    # images each
    "quick": dict(
        n_train=60000,
        classifier_epochs=2,
        vaegan_per_class=400,
        vaegan_batch=32,
        vaegan_epochs=10,
        n_test=1000,
        n_onmanifold=1000,
        attack_chunk=250,
        attempts=5,
        restarts=2,
        steps=40,
        k=50,
        n_recon=2000,
        verify_n=200,
        verify_steps=40,
        verify_strong=100,
        verify_restarts=2,
        verify_targets=9,
        verify_small_eps=0.1,
    ),
    # paper: the original settings (VAE-GAN batch 100, 30 epochs; 2,500 test images
    # with 5 attempts each for the on-manifold attack; 1,000 for the regular one)
    "paper": dict(
        n_train=60000,
        classifier_epochs=20,
        vaegan_per_class=None,
        vaegan_batch=100,
        vaegan_epochs=30,
        n_test=1000,
        n_onmanifold=2500,
        attack_chunk=250,
        attempts=5,
        restarts=5,
        steps=40,
        k=50,
        n_recon=2000,
        verify_n=1000,
        verify_steps=40,
        verify_strong=200,
        verify_restarts=5,
        verify_targets=9,
        verify_small_eps=0.1,
    ),
}

#: measured here (2 cores): ConvNet training per image and epoch (FONTS chapter)
SECONDS_PER_IMAGE_EPOCH = 7.7e-5
#: VAE-GAN training per image of one class model and step. The paper run measured
#: 3.4 s per step of 10 × 100 images on one thread with the 2 cores loaded 1.5× (about
#: 2.3 s on a whole core); 1.5e-3 assumes both cores of a quiet machine.
SECONDS_PER_VAEGAN_IMAGE_STEP = 1.5e-3
#: Encoding one test image (encoder mean, one class model), one thread.
SECONDS_PER_ENCODED_IMAGE = 2e-4
#: One forward and backward pass of one image through the ConvNet (one thread); the
#: regular attack stops early, so its estimate is an upper bound.
SECONDS_PER_ATTACK_PASS = 5e-5
#: One step of the on-manifold attack for one code: decoder and ConvNet, forward and
#: backward. The paper run: 452 s for 2,500 images × 5 attempts × at most 40 steps.
SECONDS_PER_LATENT_STEP = 9e-4
#: Loading the models and the test set in a unit that attacks.
ATTACK_OVERHEAD_S = 2.0


#: The chapter's settings (:class:`advmanifold.book.profiles.Settings`):
#: ``settings(profile, **overrides)``, ``settings.from_params(profile, params)``.
settings = profiles.Settings(
    TABLE,
    Setting("n_train", integer(1, 60_000)),  # first n MNIST training images
    Setting("classifier_epochs", integer(1), overridable=True),
    Setting("vaegan_per_class", optional(integer(1))),  # None: every image
    Setting("vaegan_batch", integer(1)),
    Setting("vaegan_epochs", integer(1), overridable=True),
    Setting("n_test", integer(1), overridable=True),
    Setting("n_onmanifold", integer(1), overridable=True),
    Setting("attack_chunk", integer(1)),  # test images per attack unit
    Setting("attempts", integer(1), overridable=True),
    Setting("restarts", integer(1), overridable=True),
    Setting("steps", integer(1)),
    Setting("k", integer(1)),
    Setting("n_recon", integer(1)),
    Setting("verify_n", integer(1)),
    Setting("verify_steps", integer(1)),
    Setting("verify_strong", integer(1)),
    Setting("verify_restarts", integer(1)),
    Setting("verify_targets", integer(1, 9)),  # other classes of ten
    Setting("verify_small_eps", number(gt=0)),
)


@functools.lru_cache(maxsize=4)
def _train_set(n_train: int, data_dir) -> tuple[Tensor, Tensor, str]:
    """The first ``n_train`` MNIST training images, labels and their fingerprint."""
    x, y = load_mnist(True, data_dir=data_dir, limit=n_train)
    return x, y, cache.fingerprint(x, y)


def train_set(S: SimpleNamespace, data_dir=None) -> tuple[Tensor, Tensor]:
    x, y, _ = _train_set(S.n_train, None if data_dir is None else str(data_dir))
    return x, y


@functools.lru_cache(maxsize=2)
def _test_set(data_dir) -> tuple[Tensor, Tensor, str]:
    """The MNIST test images, labels and their fingerprint."""
    x, y = load_mnist(False, data_dir=data_dir)
    return x, y, cache.fingerprint(x, y)


def _dir(data_dir) -> str | None:
    return None if data_dir is None else str(data_dir)


def test_set(data_dir=None) -> tuple[Tensor, Tensor]:
    x, y, _ = _test_set(_dir(data_dir))
    return x, y


def chunks(n: int, size: int) -> list[tuple[int, int]]:
    """Consecutive ranges [start, stop) of at most ``size`` of the first n indices."""
    return [(start, min(start + size, n)) for start in range(0, n, size)]


def vaegan_subset(y: Tensor, per_class: int | None) -> Tensor:
    """Indices (sorted) of the first ``per_class`` images of each digit (None: all)."""
    if per_class is None:
        return torch.arange(len(y))
    order = torch.argsort(y, stable=True)
    counts = torch.bincount(y, minlength=10)
    starts = torch.cumsum(counts, 0) - counts
    rank = torch.arange(len(order)) - starts[y[order]]
    return order[rank < per_class].sort().values


# ---------------------------------------------------------------------------- units


def train_classifier(
    S: SimpleNamespace, seed: int, data_dir=None, device: str = "cpu"
) -> dict[str, Tensor]:
    """Build of ``convnet-mnist``: the ConvNet's state dict (CPU tensors)."""
    x, y = train_set(S, data_dir)
    torch.manual_seed(seed)
    net = models.ConvNet().to(device)
    training.train(
        net,
        x.to(device),
        y.to(device),
        training.cross_entropy(),
        epochs=S.classifier_epochs,
        seed=seed,
        desc="ConvNet on MNIST",
        **CLASSIFIER,
    )
    return {k: v.cpu() for k, v in net.state_dict().items()}


def train_vaegan(
    S: SimpleNamespace, digit: int, seed: int, data_dir=None, device: str = "cpu"
) -> dict[str, Any]:
    """Build of ``vaegan-mnist``: ``{"state", "trace"}`` of the VAE-GAN of ``digit``
    (``n_models=1``) and its per-step losses [epochs, steps, 4]."""
    x, y = train_set(S, data_dir)
    idx = vaegan_subset(y, S.vaegan_per_class)
    model, trace = vaegan_training.train_vaegan_class(
        x[idx].to(device),
        y[idx].to(device),
        digit,
        epochs=S.vaegan_epochs,
        batch_size=S.vaegan_batch,
        seed=seed,
        **VAEGAN,
    )
    state = {k: v.cpu() for k, v in model.state_dict().items()}
    return {"state": state, "trace": trace}


def assemble_vaegans(members: tuple[Unit, ...]) -> dict[str, Any]:
    """Build of ``vaegans-mnist``: ``{"state", "history"}`` of the ten VAE-GANs,
    assembled from the ten ``vaegan-mnist`` units (digit order); the same payload as
    the sequential training of all ten in one process
    (:func:`advmanifold.science.vaegan_training.assemble_vaegans`)."""
    parts = []
    for unit in members:
        payload = unit.get()
        parts.append((generative.vaegans_from_payload(payload), payload["trace"]))
    model, history = vaegan_training.assemble_vaegans(parts)
    return {"state": model.state_dict(), "history": history}


def classifier_unit(
    S: SimpleNamespace, *, seed: int = 0, data_dir=None, device: str = "cpu"
) -> Unit:
    _, _, data = _train_set(S.n_train, None if data_dir is None else str(data_dir))
    config = {
        "model": "ConvNet",
        "epochs": S.classifier_epochs,
        **CLASSIFIER,
        "seed": seed,
        "data": data,
    }
    estimate = SECONDS_PER_IMAGE_EPOCH * S.n_train * S.classifier_epochs + 2.0
    build = functools.partial(train_classifier, S, seed, data_dir, device)
    return Unit(STEM, "convnet-mnist", config, build, estimate_s=estimate)


def _vaegans_config(S: SimpleNamespace, seed: int, data: str) -> dict[str, Any]:
    # the sequential strategy on every device, so that the entry does not depend on it
    return {
        "model": "vaegans-v2",
        "loss": "sum",
        "lr_schedule": "per-batch",
        "strategy": "sequential",
        "epochs": S.vaegan_epochs,
        "batch_size": S.vaegan_batch,
        "per_class": S.vaegan_per_class,
        **VAEGAN,
        "seed": seed,
        "data": data,
    }


def vaegan_unit(
    S: SimpleNamespace, digit: int, *, seed: int = 0, data_dir=None, device: str = "cpu"
) -> Unit:
    """Unit ``vaegan-mnist``: the VAE-GAN of one digit, the configuration of the ten
    (``vaegans-mnist``) plus ``digit``."""
    x, y, data = _train_set(S.n_train, None if data_dir is None else str(data_dir))
    counts = torch.bincount(y[vaegan_subset(y, S.vaegan_per_class)], minlength=10)
    config = {**_vaegans_config(S, seed, data), "digit": int(digit)}
    steps = math.ceil(counts.max().item() / S.vaegan_batch) * S.vaegan_epochs
    estimate = SECONDS_PER_VAEGAN_IMAGE_STEP * steps * S.vaegan_batch + 2.0
    build = functools.partial(train_vaegan, S, int(digit), seed, data_dir, device)
    return Unit(STEM, "vaegan-mnist", config, build, estimate_s=estimate)


def vaegans_unit(
    S: SimpleNamespace, *, seed: int = 0, data_dir=None, device: str = "cpu"
) -> Unit:
    """Unit ``vaegans-mnist``: the ten VAE-GANs, assembled from the ten
    ``vaegan-mnist`` (its dependencies). Their configurations are this one's plus the
    digit, so this configuration determines them and keeps the key it had when this
    unit trained the ten itself; the payload is the same."""
    _, _, data = _train_set(S.n_train, None if data_dir is None else str(data_dir))
    members = tuple(
        vaegan_unit(S, g, seed=seed, data_dir=data_dir, device=device)
        for g in range(len(VAEGAN["betas"]))
    )
    build = functools.partial(assemble_vaegans, members)
    # cost_model 2: timings of the ten trained in one unit must not rescale this
    return Unit(
        STEM,
        "vaegans-mnist",
        _vaegans_config(S, seed, data),
        build,
        deps=members,
        estimate_s=2.0,
        cost_model=2,
    )


def encode_test_set(gans: Unit, data_dir=None) -> dict[str, Tensor]:
    """Build of ``mnist-test-codes``: ``{"mu"}`` [10000, latent], the encoder mean of
    every test image under its own class's model."""
    x, y = test_set(data_dir)
    model, _ = vaegans(gans)
    return {"mu": generative.encode_by_class(model, x, y)}


def codes_unit(gans: Unit, data_dir=None) -> Unit:
    """Unit ``mnist-test-codes`` (:func:`encode_test_set`) of the ``vaegans-mnist``
    unit ``gans``."""
    x, _, test = _test_set(_dir(data_dir))
    config = {"vaegans": gans.key, "test": test, "version": 1}
    estimate = SECONDS_PER_ENCODED_IMAGE * len(x) + 2.0
    build = functools.partial(encode_test_set, gans, data_dir)
    return Unit(
        STEM, "mnist-test-codes", config, build, deps=(gans,), estimate_s=estimate
    )


def regular_attack(
    classifier: models.ConvNet, x: Tensor, y: Tensor, S, seed: int, offset: int = 0
) -> dict[str, Tensor]:
    """The regular attack on the test images ``x`` (test indices ``offset`` on) that
    the classifier labels correctly: L∞ sign-PGD, ‖δ‖∞ ≤ ε, pixels in [0, 1], restarts
    for the examples not fooled yet, the first fooling iterate kept; starts drawn per
    test index. ``{"index", "adversarial", "success", "steps"}``."""
    keep = (models.predict(classifier, x) == y).nonzero().squeeze(1)
    index = keep.cpu() + offset
    result = attacks.pgd(
        classifier,
        x[keep],
        y[keep],
        eps=EPS,
        steps=S.steps,
        lower=0.0,
        upper=1.0,
        restarts=S.restarts,
        mode="first",
        seed=seed,
        ids=index,
    )
    return {
        "index": index,
        "adversarial": result.adversarial.cpu(),
        "success": result.success.cpu(),
        "steps": result.steps.cpu(),
    }


def _regular_payload(
    net: Unit, S, seed: int, rows: tuple[int, int], data_dir, device: str
) -> dict[str, Tensor]:
    x, y = test_set(data_dir)
    start, stop = rows
    xs, ys = x[start:stop].to(device), y[start:stop].to(device)
    return regular_attack(classifier(net, device), xs, ys, S, seed, offset=start)


def regular_unit(
    net: Unit,
    S: SimpleNamespace,
    rows: tuple[int, int],
    *,
    seed: int = 0,
    data_dir=None,
    device: str = "cpu",
) -> Unit:
    """Unit ``mnist-regular-attack``: :func:`regular_attack` of the classifier of
    unit ``net`` on the test images [start, stop) = ``rows``."""
    _, _, test = _test_set(_dir(data_dir))
    start, stop = rows
    config = {
        "classifier": net.key,
        "test": test,
        "start": start,
        "stop": stop,
        "eps": EPS,
        "steps": S.steps,
        "restarts": S.restarts,
        "mode": "first",
        "seed": seed,
        "version": 1,
    }
    passes = (stop - start) * S.steps * S.restarts
    estimate = ATTACK_OVERHEAD_S + SECONDS_PER_ATTACK_PASS * passes
    build = functools.partial(
        _regular_payload, net, S, seed, (start, stop), data_dir, device
    )
    return Unit(
        STEM,
        "mnist-regular-attack",
        config,
        build,
        deps=(net,),
        estimate_s=estimate,
    )


def _onmanifold_payload(
    net: Unit,
    gans: Unit,
    codes: Unit,
    S,
    seed: int,
    rows: tuple[int, int],
    data_dir,
    device: str,
) -> dict[str, Any]:
    x, y = test_set(data_dir)
    start, stop = rows
    model, _ = vaegans(gans, device)
    mu = test_codes(codes, device)
    result = generative.onmanifold_attack(
        classifier(net, device),
        model,
        x[start:stop].to(device),
        y[start:stop].to(device),
        box=generative.latent_box(mu),
        eta=ETA,
        bound=Z_BOUND,
        steps=S.steps,
        attempts=S.attempts,
        seed=seed,
        z0=mu[start:stop],
        ids=torch.arange(start, stop),
    )
    return {
        k: v.cpu() if isinstance(v, Tensor) else v
        for k, v in dataclasses.asdict(result).items()
    }


def onmanifold_unit(
    net: Unit,
    gans: Unit,
    codes: Unit,
    S: SimpleNamespace,
    rows: tuple[int, int],
    *,
    seed: int = 0,
    data_dir=None,
    device: str = "cpu",
) -> Unit:
    """Unit ``mnist-onmanifold-attack``: the on-manifold attack
    (:func:`advmanifold.science.generative.onmanifold_attack`) of the classifier of
    ``net`` through the VAE-GANs of ``gans`` on the test images [start, stop) =
    ``rows``, from their codes in ``codes``, in the pooled box of all test codes, with
    starts drawn per test index."""
    _, _, test = _test_set(_dir(data_dir))
    start, stop = rows
    config = {
        "classifier": net.key,
        "vaegans": gans.key,
        "codes": codes.key,
        "test": test,
        "start": start,
        "stop": stop,
        "eta": ETA,
        "bound": Z_BOUND,
        "steps": S.steps,
        "attempts": S.attempts,
        "seed": seed,
        "version": 1,
    }
    code_steps = (stop - start) * S.attempts * S.steps
    estimate = ATTACK_OVERHEAD_S + SECONDS_PER_LATENT_STEP * code_steps
    build = functools.partial(
        _onmanifold_payload,
        net,
        gans,
        codes,
        S,
        seed,
        (start, stop),
        data_dir,
        device,
    )
    return Unit(
        STEM,
        "mnist-onmanifold-attack",
        config,
        build,
        deps=(net, gans, codes),
        estimate_s=estimate,
    )


def _verify_payload(
    net: Unit, S, eps: float, seed: int, data_dir, device: str
) -> dict[str, Any]:
    x, y = test_set(data_dir)
    found = verification.verify(
        classifier(net, device),
        x[: S.verify_n].to(device),
        y[: S.verify_n].to(device),
        eps,
        box=(0.0, 1.0),
        steps=S.verify_steps,
        strong_steps=S.verify_strong,
        restarts=S.verify_restarts,
        targets=S.verify_targets,
        seed=seed,
    )
    return {"eps": found.eps, "clean": found.clean, "successes": found.successes}


def verify_unit(net: Unit, S, eps: float, *, seed=0, data_dir=None, device="cpu"):
    """Unit ``mnist-verify``: every attack of
    :func:`advmanifold.science.verification.verify` at ``eps`` on the first
    ``verify_n`` test images (ours, strong, margin and, when installed,
    torchattacks'), per-example successes."""
    _, _, test = _test_set(_dir(data_dir))
    keys = ("verify_n", "verify_steps", "verify_strong", "verify_restarts")
    config = {
        "classifier": net.key, "test": test, "eps": float(eps),
        **{k: getattr(S, k) for k in (*keys, "verify_targets")},
        "seed": seed,
        "third_party": verification.torchattacks_available(),
        "version": 1,
    }
    # our PGD, the strong margin and CE runs and torchattacks' five, in passes
    passes = S.verify_n * (
        3 * S.verify_steps + 2 * S.verify_strong * S.verify_restarts
        + S.verify_steps * (2 + S.verify_targets)
    )
    build = functools.partial(_verify_payload, net, S, eps, seed, data_dir, device)
    return Unit(
        STEM,
        "mnist-verify",
        config,
        build,
        deps=(net,),
        estimate_s=ATTACK_OVERHEAD_S + SECONDS_PER_ATTACK_PASS * passes,
    )


def verifications(units: list[Unit]) -> dict[float, verification.Verification]:
    """{ε: Verification} of ``mnist-verify`` units."""
    return {
        p["eps"]: verification.Verification(p["eps"], p["clean"], p["successes"])
        for p in (u.get() for u in units)
    }


def grid(profile: str, params: Mapping[str, Any]) -> dict[str, Any]:
    """The chapter's units by role: ``classifier``, ``vaegan`` (the ten digits),
    ``vaegans``, ``codes``, ``regular`` and ``onmanifold`` (lists of chunks) and
    ``verify`` (one per ε)."""
    S = settings.from_params(profile, params)
    kwargs = dict(
        seed=int(params.get("seed") or 0),
        data_dir=params.get("data_dir"),
        device=params.get("device") or "cpu",
    )
    n_test = len(_test_set(_dir(kwargs["data_dir"]))[0])
    net = classifier_unit(S, **kwargs)
    gans = vaegans_unit(S, **kwargs)
    codes = codes_unit(gans, kwargs["data_dir"])
    return {
        "classifier": net,
        "vaegan": list(gans.deps),
        "vaegans": gans,
        "codes": codes,
        "regular": [
            regular_unit(net, S, rows, **kwargs)
            for rows in chunks(min(S.n_test, n_test), S.attack_chunk)
        ],
        "onmanifold": [
            onmanifold_unit(net, gans, codes, S, rows, **kwargs)
            for rows in chunks(min(S.n_onmanifold, n_test), S.attack_chunk)
        ],
        "verify": [
            verify_unit(net, S, eps, **kwargs) for eps in (EPS, S.verify_small_eps)
        ],
    }


def units(profile: str, params: Mapping[str, Any]) -> list[Unit]:
    """The chapter's units for ``profile`` and notebook parameters ``params``,
    dependencies first."""
    found = grid(profile, params)
    return [
        found["classifier"],
        *found["vaegan"],
        found["vaegans"],
        found["codes"],
        *found["regular"],
        *found["onmanifold"],
        *found["verify"],
    ]


def classifier(unit: Unit, device: str = "cpu") -> models.ConvNet:
    """The trained ConvNet of a ``convnet-mnist`` unit, in eval mode, weights frozen."""
    net = models.ConvNet()
    net.load_state_dict(unit.get())
    return models.freeze(net.to(device))


def vaegans(unit: Unit, device: str = "cpu") -> tuple[generative.VAEGANs, list[dict]]:
    """The trained VAE-GANs of a ``vaegans-mnist`` unit (eval mode), their history."""
    payload = unit.get()
    return generative.vaegans_from_payload(payload, device), payload["history"]


def test_codes(unit: Unit, device: str = "cpu") -> Tensor:
    """The encoder means [10000, latent] of a ``mnist-test-codes`` unit."""
    return unit.get()["mu"].to(device)


def regular_result(
    chunk_units: list[Unit], device: str = "cpu"
) -> tuple[Tensor, attacks.AttackResult]:
    """The regular attack over the chunks, concatenated: the test indices attacked
    (those labelled correctly) and the attack's result on them, equal to
    :func:`regular_attack` on all the images at once."""
    parts = [u.get() for u in chunk_units]
    index = torch.cat([p["index"] for p in parts]).to(device)
    fields = ("adversarial", "success", "steps")
    joined = [torch.cat([p[f] for p in parts]).to(device) for f in fields]
    return index, attacks.AttackResult(*joined)


def onmanifold_result(
    chunk_units: list[Unit], device: str = "cpu"
) -> generative.OnManifoldResult:
    """The on-manifold attack over the chunks, concatenated
    (:func:`advmanifold.science.generative.concat_onmanifold`)."""
    parts = []
    for unit in chunk_units:
        payload = {
            k: v.to(device) if isinstance(v, Tensor) else v
            for k, v in unit.get().items()
        }
        parts.append(generative.OnManifoldResult(**payload))
    return generative.concat_onmanifold(parts)


def build_seconds(chunk_units: list[Unit]) -> float:
    """Seconds the units took to build, summed (as recorded in the cache; NaN where
    a unit has no record)."""
    return float(sum(u.build_seconds() for u in chunk_units))


def prior_linf_above(bound: float = Z_BOUND, latent: int = generative.LATENT) -> float:
    """P(‖z‖∞ > bound) for z ~ N(0, I_latent): 1 − erf(bound / √2)^latent."""
    return 1.0 - math.erf(bound / math.sqrt(2.0)) ** latent
