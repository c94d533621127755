"""The FONTS chapter (``notebooks/01_fonts``): settings, data and units (what the page
records and says: :mod:`.fonts_record`; its figures: :mod:`.fonts_plots`).

The chapter's expensive work is four units (:mod:`advmanifold.book.units`):

- ``fonts-prototypes``: A–J rendered from the faces of a font source
  (:func:`advmanifold.science.glyphs.prototypes_payload`): the original's Google Fonts
  faces in its order (``"google"``, :mod:`advmanifold.science.google_fonts`), or every
  face found in font folders and filtered (``"system"``, e.g. the Debian packages); its
  configuration is the font files' paths and SHA-256, so it is known without rendering
  anything;
- ``fonts-convnet``: the paper's classifier trained on the data set rendered from
  the first ``n_fonts`` legible faces (:func:`train_classifier`); its configuration
  holds the prototypes unit's key instead of the images.

- ``fonts-attacks``: the regular and the on-manifold attack, each with our PGD and
  with the original's Adam protocol, on ``n_attack`` correctly classified test images
  (:func:`attack_test_images`);
- ``fonts-distances``: the latent search for the distance to the manifold of the
  attacked images and their adversarial examples (:func:`search_distances`).

The data set itself is not cached: rendering it, ``n_fonts × 10 × (train + test)``
images through the spatial transformer, costs seconds where training costs minutes,
and at the paper's size it would take gigabytes on disk.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Mapping

import torch
from torch import Tensor

from ..science import decoders, glyphs, google_fonts, models, training
from ..book import profiles
from ..book.profiles import Setting, integer, optional
from ..book.units import Unit

STEM = "01_fonts"

#: Settings per profile: fonts used (None: every legible face found), θ per prototype
#: (train / test), classifier epochs, attacked test images, attack iterations and
#: restarts, latent-search steps and extra random starts. The paper: 1000 fonts × 10
#: letters × (96 + 16) θ, 20 epochs, 1000 attacked test images, 40 iterations,
#: 5 restarts, 100 search steps (Stutz et al. 2019; the search restarts are ours).
SETTINGS = {
    "smoke": dict(
        n_fonts=10,
        train_per_prototype=10,
        test_per_prototype=2,
        epochs=1,
        n_attack=20,
        attack_steps=10,
        restarts=1,
        search_steps=10,
        search_restarts=1,
    ),
    "quick": dict(
        n_fonts=500,
        train_per_prototype=16,
        test_per_prototype=4,
        epochs=3,
        n_attack=1000,
        attack_steps=40,
        restarts=3,
        search_steps=100,
        search_restarts=1,
    ),
    "paper": dict(
        n_fonts=None,
        train_per_prototype=96,
        test_per_prototype=16,
        epochs=20,
        n_attack=1000,
        attack_steps=40,
        restarts=5,
        search_steps=100,
        search_restarts=4,
    ),
}

#: When a profile takes every legible face (``n_fonts=None``), fewer than this many
#: mean the fonts are missing: the Debian packages of
#: :func:`advmanifold.science.glyphs.debian_font_packages` give about 630 (our choice).
MIN_FONTS = 500

EPS = 0.3  # L∞ budget of both attacks, in image and in θ-space (the paper's)
RANGES = "hard"  # θ ranges of the paper's experiments
SEARCH_LR = 0.09  # Adam's learning rate in the latent search (the paper's code)
#: The classifier's optimiser (the paper's): Adam, lr decayed per epoch, batch 100.
TRAINING = dict(lr=0.01, lr_decay=0.95, weight_decay=1e-4, batch_size=100)

#: Rough costs on the reference machine (2 CPU cores, no other load): seconds to
#: discover, render and filter one font file; to train the ConvNet on one image for
#: one epoch (about 130 batches of 100 per second); to render one image.
SECONDS_PER_FONT_FILE = 0.007
SECONDS_PER_IMAGE_EPOCH = 7.7e-5
SECONDS_PER_IMAGE = 6e-5
#: seconds per image and attack step (PGD or Adam, forward and input gradient) and
#: per image and step of the latent search (each start)
SECONDS_PER_ATTACK_STEP = 6e-5
SECONDS_PER_SEARCH_STEP = 3e-5
LEGIBLE_FRACTION = 0.5  # legible share of the faces found, for estimates only


#: The chapter's settings (:class:`advmanifold.book.profiles.Settings`):
#: ``settings(profile, **overrides)``, ``settings.from_params(profile, params)``.
settings = profiles.Settings(
    SETTINGS,
    Setting("n_fonts", optional(integer(1)), overridable=True),
    Setting("train_per_prototype", integer(1)),
    Setting("test_per_prototype", integer(1)),
    Setting("epochs", integer(1), overridable=True),
    Setting("n_attack", integer(1), overridable=True),
    Setting("attack_steps", integer(1)),
    Setting("restarts", integer(1), overridable=True),
    Setting("search_steps", integer(1)),
    Setting("search_restarts", integer(1)),
)


def fonts_wanted(S: SimpleNamespace) -> int:
    """Legible faces the profile asks for: ``n_fonts``, or :data:`MIN_FONTS` (all)."""
    return MIN_FONTS if S.n_fonts is None else int(S.n_fonts)


# ------------------------------------------------------------------------------ units


#: Font sources: ``"google"``, the original's Google Fonts faces installed from the
#: lock (:func:`advmanifold.science.google_fonts.fetch`, run by ``make fonts``);
#: ``"system"`` (alias ``"debian"``), the system's font folders (the Debian packages
#: of :func:`advmanifold.science.glyphs.debian_font_packages`), the fallback.
FONT_SOURCES = ("google", "system", "debian")
GOOGLE_FONTS = 1000  # faces the google source keeps: the original's count


def _font_files(font_dirs) -> list:
    if isinstance(font_dirs, (str, os.PathLike)):
        raise ValueError(
            f"font_dirs must be a list of folders or None, got {font_dirs!r}"
        )
    return glyphs.find_font_files(None if font_dirs is None else list(font_dirs))


def resolve_font_source(font_source=None, font_dirs=None):
    """``"google"``, ``"system"`` or a list of folders: folders given (``font_dirs``,
    or a list as ``font_source``) win; then ``font_source``, the variable
    ``ADVMANIFOLD_FONT_SOURCE``, and last ``"google"`` when the lock's faces are
    all installed, else ``"system"``."""
    if font_dirs is not None:
        return font_dirs
    if font_source is not None and not isinstance(font_source, str):
        return list(font_source)
    source = font_source or os.environ.get("ADVMANIFOLD_FONT_SOURCE") or None
    if source is None:
        return "google" if google_fonts.is_installed() else "system"
    if source not in FONT_SOURCES:
        raise ValueError(
            f"font_source must be one of {FONT_SOURCES} or a list of folders, "
            f"got {source!r}"
        )
    return "system" if source == "debian" else source


def google_files() -> list:
    """The installed Google faces in the original's order; a clear error if none."""
    files = google_fonts.installed_faces()
    if not files:
        raise ValueError(
            "font_source='google' but the Google fonts are not installed under "
            f"{google_fonts.google_font_dir()}: run `make fonts` or `python -m "
            "advmanifold.science.google_fonts fetch`"
        )
    return files


def prototypes_unit(
    font_dirs=None, *, files=None, chapter: str = STEM, font_source=None
) -> Unit:
    """The ``fonts-prototypes`` unit, the one builder of that cache entry.

    Google source (:func:`resolve_font_source`): the first :data:`GOOGLE_FONTS`
    installed faces of the original's order that render A–J, placed as the original
    placed them (``selection="original"`` of
    :func:`advmanifold.science.glyphs.prototypes_config`). Otherwise: every legible
    face of ``files`` (default: the font files under ``font_dirs``, default the
    system's font folders), in a fixed random order
    (:func:`advmanifold.science.glyphs.load_prototypes` with its defaults)."""
    source = None if files is not None else resolve_font_source(font_source, font_dirs)
    if source == "google":
        files = google_files()
        # names below the install folder (package@version/file): the same key on
        # every machine
        root = google_fonts.google_font_dir()
        names = [Path(f).relative_to(root).as_posix() for f in files]
        digests = {n: glyphs.sha256_file(f) for n, f in zip(names, files)}
        config = glyphs.prototypes_config(
            names, digests=digests, n_fonts=GOOGLE_FONTS, selection="original"
        )
        return Unit(
            chapter,
            "fonts-prototypes",
            config,
            functools.partial(glyphs.prototypes_payload, config, files),
            estimate_s=1.0 + SECONDS_PER_FONT_FILE * min(len(files), GOOGLE_FONTS),
        )
    if files is None:
        files = _font_files(None if source == "system" else source)
    else:
        files = list(files)
    config = glyphs.prototypes_config(files)
    return Unit(
        chapter,
        "fonts-prototypes",
        config,
        functools.partial(glyphs.prototypes_payload, config, files),
        estimate_s=1.0 + SECONDS_PER_FONT_FILE * len(files),
    )


def prototypes(unit: Unit) -> glyphs.FontPrototypes:
    """The :class:`~advmanifold.science.glyphs.FontPrototypes` of a prototypes unit."""
    return glyphs.prototypes_from_payload(unit.get())


def n_used(n_legible: int, n_fonts: int | None) -> int:
    """Faces used: the first ``n_fonts`` legible ones, or all (None, or too few)."""
    return n_legible if n_fonts is None else min(int(n_fonts), n_legible)


def used_images(prototypes_dep: Unit, S: SimpleNamespace) -> Tensor:
    """The prototypes ``[F, 10, 28, 28]`` of the faces a run uses: the first
    ``S.n_fonts`` legible ones of ``prototypes_dep`` (:func:`n_used`)."""
    every = prototypes(prototypes_dep)
    return every.images[: n_used(len(every), S.n_fonts)]


def dataset(images: Tensor, S: SimpleNamespace, seed: int) -> dict[str, Tensor]:
    """FONTS from prototypes ``images [F, 10, 28, 28]``: each under
    ``S.train_per_prototype`` + ``S.test_per_prototype`` random θ of :data:`RANGES`
    (:func:`advmanifold.science.decoders.make_dataset`, on the CPU)."""
    return decoders.make_dataset(
        decoders.FontDecoder(images),
        S.train_per_prototype,
        test_per_prototype=S.test_per_prototype,
        ranges=RANGES,
        seed=seed,
    )


def train_classifier(
    prototypes_dep: Unit, S: SimpleNamespace, seed: int, device: str = "cpu"
) -> dict[str, Tensor]:
    """Build of ``fonts-convnet``: the ConvNet's state dict (CPU tensors) after training
    on :func:`dataset` of the first ``S.n_fonts`` legible faces of
    ``prototypes_dep``."""
    data = dataset(used_images(prototypes_dep, S), S, seed)
    torch.manual_seed(seed)  # the initial weights do not depend on the caller's RNG
    net = models.ConvNet().to(device)
    training.train(
        net,
        data["x"].to(device),
        data["y"].to(device),
        epochs=S.epochs,
        seed=seed,
        desc="ConvNet on FONTS",
        **TRAINING,
    )
    return {k: v.cpu() for k, v in net.state_dict().items()}


def classifier_unit(
    S: SimpleNamespace,
    *,
    seed: int = 0,
    font_dirs=None,
    device: str = "cpu",
    prototypes_dep: Unit | None = None,
    font_source=None,
) -> Unit:
    """The ``fonts-convnet`` unit for settings ``S`` (only the data and training
    settings enter its configuration) and the prototypes unit of ``font_dirs`` or
    ``font_source``."""
    if prototypes_dep is None:
        prototypes_dep = prototypes_unit(font_dirs, font_source=font_source)
    dep = prototypes_dep
    data = {
        k: getattr(S, k)
        for k in ("n_fonts", "train_per_prototype", "test_per_prototype")
    }
    config = {
        "model": "ConvNet",
        "prototypes": dep.key,
        **data,
        "ranges": RANGES,
        "epochs": S.epochs,
        **TRAINING,
        "seed": seed,
    }
    n_files = len(dep.config["files"])
    if dep.config.get("selection") == "original":
        n_found = min(n_files, dep.config["n_fonts"] or n_files)
    else:
        n_found = LEGIBLE_FRACTION * n_files
    n_fonts = S.n_fonts if S.n_fonts is not None else n_found
    n_images = n_fonts * 10 * (S.train_per_prototype + S.test_per_prototype)
    n_train = n_fonts * 10 * S.train_per_prototype
    estimate = (
        SECONDS_PER_IMAGE * n_images
        + SECONDS_PER_IMAGE_EPOCH * n_train * S.epochs
        + 2.0
    )
    build = functools.partial(train_classifier, dep, S, seed, device)
    return Unit(STEM, "fonts-convnet", config, build, deps=(dep,), estimate_s=estimate)


def attack_test_images(
    prototypes_dep: Unit, net: Unit, S: SimpleNamespace, seed: int, device: str
) -> dict[str, Any]:
    """Build of ``fonts-attacks``. Of the test images the classifier of ``net`` labels
    correctly, ``S.n_attack`` drawn with ``seed`` (``index``) are attacked with ε =
    :data:`EPS`: in image space (L∞ PGD, pixels kept in [0, 1]) and on
    the manifold (PGD on θ with font and letter fixed,
    :func:`advmanifold.science.attacks.attack_theta`), ``S.restarts`` random starts of
    ``S.attack_steps`` sign steps, the first fooling iterate kept; and both again with
    the original's protocol (Adam, lr 0.005, 5 attempts of 40 steps), whose success is
    the mean over (example, attempt) pairs. Returns the attacked images (``x``,
    ``y``, ``font``, ``theta``), both PGD results, the on-manifold images ``x_on``,
    the protocol's two rates and ``attacks_s``, the seconds of the two PGD attacks."""
    import time

    from ..science import attacks

    images = used_images(prototypes_dep, S)
    data = dataset(images, S, seed)
    model, decoder = classifier(net, device), decoders.FontDecoder(images).to(device)
    test_x, test_y = data["test_x"].to(device), data["test_y"].to(device)
    correct = (models.predict(model, test_x) == test_y).cpu().nonzero().squeeze(1)
    order = torch.randperm(len(correct), generator=torch.Generator().manual_seed(seed))
    pick = correct[order[: S.n_attack]]
    x, y = data["test_x"][pick].to(device), data["test_y"][pick].to(device)
    font = data["test_font"][pick].to(device)
    theta = data["test_theta"][pick].to(device)
    started = time.perf_counter()
    pgd = dict(
        eps=EPS, steps=S.attack_steps, restarts=S.restarts, mode="first", seed=seed
    )
    regular = attacks.pgd(model, x, y, **pgd)
    on_manifold, x_on = attacks.attack_theta(
        model, decoder, font, y, theta, ranges=RANGES, **pgd
    )
    attacks_s = time.perf_counter() - started
    regular_original = attacks.adam_attack(model, x, y, eps=EPS, seed=seed)
    on_manifold_original, _ = attacks.attack_theta(
        model,
        decoder,
        font,
        y,
        theta,
        ranges=RANGES,
        eps=EPS,
        attack=attacks.adam_attack,
        seed=seed,
    )
    every_one = torch.ones(len(y), dtype=torch.bool)  # all attacked are correct

    def cpu(result) -> dict[str, Tensor]:
        return {
            k: getattr(result, k).cpu() for k in ("adversarial", "success", "steps")
        }

    return {
        "index": pick,
        **{k: v.cpu() for k, v in dict(x=x, y=y, font=font, theta=theta).items()},
        "regular": cpu(regular),
        "onmanifold": cpu(on_manifold),
        "x_on": x_on.cpu(),
        "regular_success_rate_original": regular_original.per_attempt_success(
            every_one
        ),
        "onmanifold_success_rate_original": on_manifold_original.per_attempt_success(
            every_one
        ),
        "attacks_s": attacks_s,
    }


def attacks_unit(
    prototypes_dep: Unit, net: Unit, S: SimpleNamespace, seed: int, device: str
) -> Unit:
    """The ``fonts-attacks`` unit (:func:`attack_test_images`) of the classifier of
    ``net``."""
    config = {
        "classifier": net.key,
        "prototypes": prototypes_dep.key,
        "n_attack": S.n_attack,
        "eps": EPS,
        "ranges": RANGES,
        "steps": S.attack_steps,
        "restarts": S.restarts,
        "mode": "first",
        "original": {"steps": 40, "lr": 0.005, "attempts": 5},
        "seed": seed,
        "version": 1,
    }
    steps_per_image = 2 * S.attack_steps * S.restarts + 2 * 5 * 40
    estimate = 3.0 + SECONDS_PER_ATTACK_STEP * S.n_attack * steps_per_image
    build = functools.partial(attack_test_images, prototypes_dep, net, S, seed, device)
    return Unit(
        STEM,
        "fonts-attacks",
        config,
        build,
        deps=(prototypes_dep, net),
        estimate_s=estimate,
    )


def attacked(unit: Unit, device: str = "cpu") -> SimpleNamespace:
    """The payload of a ``fonts-attacks`` unit: tensors on ``device``, the PGD results
    as :class:`advmanifold.science.attacks.AttackResult`."""
    from ..science import attacks

    found = unit.get()
    move = {k: v.to(device) for k, v in found.items() if isinstance(v, Tensor)}
    results = {
        k: attacks.AttackResult(**{f: v.to(device) for f, v in found[k].items()})
        for k in ("regular", "onmanifold")
    }
    rest = {k: v for k, v in found.items() if k not in move and k not in results}
    return SimpleNamespace(**move, **results, **rest)


def search_distances(
    prototypes_dep: Unit, attack: Unit, S: SimpleNamespace, seed: int, device: str
) -> dict[str, Any]:
    """Build of ``fonts-distances``: :func:`distance_frame` of the attacked test images
    and of their successful on-manifold and regular adversarial examples, as
    columns (``set``: list of names; the others tensors; ``columns``: their order)."""
    images = used_images(prototypes_dep, S)
    decoder = decoders.FontDecoder(images).to(device)
    a = attacked(attack, device)
    sets = {  # images and which of them to measure
        "test": (a.x, torch.ones(len(a.x), dtype=torch.bool)),
        "on-manifold adversarial": (a.x_on, a.onmanifold.success.cpu()),
        "regular adversarial": (a.regular.adversarial, a.regular.success.cpu()),
    }
    frame = distance_frame(
        decoder,
        a.font,
        a.y,
        a.theta,
        a.x,
        sets,
        steps=S.search_steps,
        lr=SEARCH_LR,
        restarts=S.search_restarts,
        ranges=RANGES,
        seed=seed,
    )
    columns = {c: torch.tensor(frame[c].to_numpy()) for c in frame if c != "set"}
    return {"set": list(frame["set"]), **columns, "columns": list(frame.columns)}


def distances_unit(
    prototypes_dep: Unit, attack: Unit, S: SimpleNamespace, seed: int, device: str
) -> Unit:
    """The ``fonts-distances`` unit (:func:`search_distances`) of the attacks of
    ``attack``."""
    config = {
        "attacks": attack.key,
        "steps": S.search_steps,
        "lr": SEARCH_LR,
        "restarts": S.search_restarts,
        "ranges": RANGES,
        "seed": seed,
        "version": 1,
    }
    searched = 3 * S.n_attack  # at most: test images and both adversarial sets
    steps = S.search_steps * (1 + S.search_restarts)
    estimate = 2.0 + SECONDS_PER_SEARCH_STEP * searched * steps
    build = functools.partial(search_distances, prototypes_dep, attack, S, seed, device)
    return Unit(
        STEM,
        "fonts-distances",
        config,
        build,
        deps=(prototypes_dep, attack),
        estimate_s=estimate,
    )


def distances(unit: Unit):
    """The distance frame of a ``fonts-distances`` unit (:func:`distance_frame`)."""
    import pandas as pd

    found = dict(unit.get())
    columns = found.pop("columns")
    frame = {k: v if k == "set" else v.numpy() for k, v in found.items()}
    return pd.DataFrame(frame)[columns]


def units(profile: str, params: Mapping[str, Any]) -> list[Unit]:
    """The chapter's units for ``profile`` and notebook parameters ``params``:
    prototypes, classifier, attacks, distances."""
    S = settings.from_params(profile, params)
    dep = prototypes_unit(
        params.get("font_dirs"), font_source=params.get("font_source")
    )
    seed = int(params.get("seed") or 0)
    device = params.get("device") or "cpu"
    net = classifier_unit(
        S,
        seed=seed,
        font_dirs=params.get("font_dirs"),
        device=device,
        prototypes_dep=dep,
    )
    attack = attacks_unit(dep, net, S, seed, device)
    return [dep, net, attack, distances_unit(dep, attack, S, seed, device)]


def classifier(unit: Unit, device: str = "cpu") -> models.ConvNet:
    """The trained ConvNet of a ``fonts-convnet`` unit, in eval mode, weights frozen."""
    model = models.ConvNet()
    model.load_state_dict(unit.get())
    return models.freeze(model.to(device))


# -------------------------------------------------------------------------- distances


def distance_frame(
    decoder: decoders.FontDecoder,
    font: Tensor,
    letter: Tensor,
    theta: Tensor,
    clean: Tensor,
    sets: Mapping[str, tuple[Tensor, Tensor]],
    **search: Any,
):
    """Distances to the manifold of the examples of ``sets`` (name → (images ``[N, …]``,
    mask ``[N]`` of those to measure)), all measured in one batched latent search
    (:func:`advmanifold.science.manifolds.decoder.project`, keyword arguments
    ``search``).

    ``font``, ``letter``, ``theta`` and ``clean`` are those of the N attacked test
    images. Returns a DataFrame (one row per example: set, distance, delta_l2,
    angle_deg, distance_over_l2); empty sets are left out."""
    from ..science.manifolds import decoder as decoder_manifold

    index, images, labels = [], [], []
    for name, (imgs, keep) in sets.items():
        keep = keep.nonzero().squeeze(1).to(clean.device)
        index.append(keep)
        images.append(imgs[keep])
        labels += [name] * len(keep)
    index, images = torch.cat(index), torch.cat(images)
    projection, _ = decoder_manifold.project(
        decoder,
        font[index],
        letter[index],
        images,
        theta[index],
        reference=clean[index],
        **search,
    )
    frame = projection.to_frame(set=labels)
    frame["distance_over_l2"] = frame.distance / frame.delta_l2
    return frame
