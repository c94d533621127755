"""The FONTS chapter (``notebooks/01_fonts``): settings, units, bookkeeping and figures.

The chapter's expensive work is two units (:mod:`advmanifold.book.units`):

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
from ..book import figures, profiles
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
    every = prototypes(prototypes_dep)
    data = dataset(every.images[: n_used(len(every), S.n_fonts)], S, seed)
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

    every = prototypes(prototypes_dep)
    images = every.images[: n_used(len(every), S.n_fonts)]
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
    every = prototypes(prototypes_dep)
    images = every.images[: n_used(len(every), S.n_fonts)]
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


# ------------------------------------------------------------------------ bookkeeping


def record_fonts(res, every: glyphs.FontPrototypes, S: SimpleNamespace):
    """Add the font counts and the fallback flag to ``res``; return the manifest of the
    faces used (also added as table ``manifest``)."""
    count = n_used(len(every), S.n_fonts)
    manifest = every.manifest_frame().iloc[:count]
    manifest.insert(0, "font", range(count))
    res.add_table("manifest", manifest)
    res.add("n_font_files", every.counts["files"])
    res.add("n_faces", every.counts["faces"])
    for name in glyphs.FILTERS:
        res.add(f"removed_{name}", every.counts[name])
    res.add("duplicate_threshold", glyphs.DUPLICATE_THRESHOLD)
    res.add("n_fonts_legible", len(every))
    res.add("n_families_legible", every.manifest_frame().family.nunique())
    res.add("n_fonts", count)
    res.add("n_families", manifest.family.nunique())
    res.add("n_fonts_wanted", fonts_wanted(S))
    res.add("fonts_fallback", int(count < fonts_wanted(S)))
    return manifest


def source_of(unit: Unit) -> str:
    """``"google"`` or ``"system"``: the font source of a prototypes unit."""
    return "google" if unit.config.get("selection") == "original" else "system"


def record_source(res, unit: Unit) -> str:
    """Record the font source of the prototypes ``unit`` (label ``font_source``, flag
    ``font_source_google``) and, for the Google source, how much of the original's
    list it has (:func:`advmanifold.science.google_fonts.match_counts`)."""
    source = res.label("font_source", source_of(unit))
    res.add("font_source_google", int(source == "google"))
    if source == "google":
        for name, value in google_fonts.match_counts().items():
            # the lock's own face count is not the faces found (``n_faces``)
            res.add("n_lock_faces" if name == "n_faces" else name, value)
    return source


def prototypes_prose(source: str, metrics: Mapping[str, float]) -> str:
    """The paragraph saying which faces this run rendered, with this run's counts."""
    m = metrics
    if source == "google":
        return (
            "**Source: the original's Google Fonts.** The original took the first "
            "1,000 faces that render, in a fixed permutation of its Google Fonts list "
            "with a blacklist removed. We walk the same list in the same order and "
            "take each face from a pinned npm package of Google Fonts "
            "(`@expo-google-fonts`, else `@fontsource`), matched by family, weight "
            "and style "
            "(`src/advmanifold/google-fonts.tsv`, fetched by `make fonts`). Of the "
            "original's first 1,000 faces, "
            f"**{m['n_original_first_1000_matched']:.0f}** are on npm and are used; "
            f"the other **{m['n_from_further_down']:.0f}** come from further down its "
            f"order (the walk reaches rank {m['n_ranks_walked'] - 1:.0f}). As in the "
            "original, "
            "no face is dropped unless it cannot be rendered or lacks a letter, and "
            "the faces keep the original's order. Each glyph is placed as the "
            "original placed it: the horizontal and vertical offsets of the letter A "
            "centre every letter of a face. This run uses the first "
            f"{m['n_fonts']:.0f} of the {m['n_fonts_legible']:.0f} faces."
        )
    return (
        "**Source: the fonts installed here** (fallback; `make fonts` fetches the "
        "original's Google Fonts). We render A–J from every face in the font folders "
        "(`font_dirs` names others): each `.ttf`/`.otf` file is one face, each `.ttc` "
        "collection contributes each of its faces, each letter centred by its own "
        "bounding box. Instead of the original's hand cleaning (our choice), filters "
        "drop faces in this order (details in `advmanifold.science.glyphs`): faces "
        "that cannot be rendered; families on a short deny-list of symbol and display "
        "faces; faces lacking a letter or drawing two letters alike; faces with "
        "implausible ink or glyphs cut at the border; faces failing a legibility vote "
        "(each blurred letter must be recognised as itself by the majority of its five "
        "most similar glyphs from fonts of *other* families); and visual "
        "near-duplicates of a face already taken (root-mean-square pixel difference of "
        f"the ten prototypes below {glyphs.DUPLICATE_THRESHOLD:.2f}). Of "
        f"{m['n_faces']:.0f} faces, {m['n_fonts_legible']:.0f} remain; this run uses "
        f"the first {m['n_fonts']:.0f} of them in a fixed random order."
    )


def fallback_warning(n_used: int, n_wanted: int, profile: str) -> str | None:
    """A MyST warning box for a run on fewer legible faces than the profile asks for,
    or None."""
    if n_used >= n_wanted:
        return None
    packages = "src/advmanifold/debian-font-packages.txt"
    return (
        ":::{admonition} Fallback fonts: not comparable with the paper\n"
        ":class: warning\n"
        f"This run used **{n_used}** legible font faces instead of the **{n_wanted}** "
        f"that the `{profile}` profile asks for: the fonts this chapter is meant to be "
        "rendered from are not installed here (or `font_dirs` names too few). Its "
        "numbers are **not comparable** with the paper's FONTS results, and the claims "
        "ledger marks this chapter's verdicts as such.\n\n"
        "To fix it, run `make fonts` (part of `make book`): it fetches the "
        "original's Google Fonts faces as pinned npm packages (`python -m "
        "advmanifold.science.google_fonts fetch`, needs `npm`) and installs the "
        f"Debian/Ubuntu font packages listed in `{packages}` as the fallback "
        "(when it runs as root or with password-less sudo; otherwise run `sudo "
        "apt-get install --no-install-recommends $(grep -o '^[^#]*' "
        + packages
        + ")`); or pass `font_dirs` with folders holding more fonts, and run the "
        "chapter again.\n"
        ":::"
    )


def filter_table(every: glyphs.FontPrototypes, count: int):
    """The faces found, removed by each filter, kept and used, as a styled table."""
    import pandas as pd

    steps = [
        "faces found",
        *(f"removed: {n.replace('_', ' ')}" for n in glyphs.FILTERS),
        "kept",
        "used in this run",
    ]
    counts = [
        every.counts["faces"],
        *(every.counts[n] for n in glyphs.FILTERS),
        len(every),
        count,
    ]
    return pd.DataFrame({"step": steps, "faces": counts}).style.hide(axis="index")


# ---------------------------------------------------------------------------- figures
# Figures are at most 10 in wide with text of at least 10 pt, so that their text
# stays at 8 pt or more at the book's content width (about 750 px).

THETA_LABELS = ("$t_x$", "$t_y$", r"$\lambda_x$", r"$\lambda_y$", "$s$", "$r$")
SET_ORDER = ("test", "on-manifold adversarial", "regular adversarial")


def style() -> None:
    """The book's seaborn theme (:func:`advmanifold.book.figures.style`)."""
    figures.style()


def _image(ax, image: Tensor) -> None:
    ax.imshow(image.detach().cpu(), cmap="gray", vmin=0, vmax=1)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.grid(False)


def _short(name: str, width: int = 16) -> str:
    return name if len(name) <= width else name[: width - 1] + "…"


def _row_label(ax, name: str) -> None:
    """A horizontal label left of an image row: family and style on two lines."""
    words = name.split()
    half = (len(words) + 1) // 2
    text = "\n".join(
        _short(" ".join(part), 14) for part in (words[:half], words[half:]) if part
    )
    ax.set_ylabel(text, rotation=0, ha="right", va="center", fontsize=12, labelpad=6)


def plot_decoder_parameters(
    decoder: decoders.FontDecoder, font: list[int], letter: list[int], names: list[str]
):
    """One row per parameter of θ; for each (font, letter): the parameter at the lower
    end of its range, the prototype (identity θ), the upper end (others at identity)."""
    import matplotlib.pyplot as plt

    lower, upper = decoders.theta_box(RANGES)
    thetas = []
    for i in range(6):
        for value in (lower[i], None, upper[i]):
            theta = decoders.IDENTITY.clone()
            if value is not None:
                theta[i] = value
            thetas.append(theta)
    thetas = torch.stack(thetas)  # [18, 6]
    n = len(font)
    f = torch.tensor(font).repeat_interleave(len(thetas))
    y = torch.tensor(letter).repeat_interleave(len(thetas))
    with torch.no_grad():
        images = decoder(f, y, thetas.repeat(n, 1)).view(n, 6, 3, 28, 28).cpu()
    fig, axes = plt.subplots(
        6, 3 * n, figsize=(1.2 * 3 * n + 1.6, 1.2 * 6 + 0.9), squeeze=False
    )
    for row in range(6):
        for k in range(n):
            for j in range(3):
                ax = axes[row, 3 * k + j]
                _image(ax, images[k, row, j])
                if row == 0:
                    ax.set_title(("lower", "prototype", "upper")[j], fontsize=12)
        bounds = f"[{lower[row]:.2f}, {upper[row]:.2f}]"
        axes[row, 0].set_ylabel(f"{THETA_LABELS[row]}\n{bounds}", fontsize=12)
    for k in range(n):
        name = _short(names[font[k]], 18)
        axes[0, 3 * k + 1].set_title(f"{name}\nprototype", fontsize=12)
    fig.tight_layout(h_pad=0.3, w_pad=0.3)
    return fig


def plot_decoder_random(
    decoder: decoders.FontDecoder,
    font: list[int],
    letter: list[int],
    names: list[str],
    n_theta: int = 5,
    seed: int = 0,
):
    """Prototypes (left column), each under ``n_theta`` random θ of the data ranges."""
    import matplotlib.pyplot as plt

    n = len(font)
    generator = torch.Generator().manual_seed(seed)
    theta = decoders.sample_theta(n * n_theta, RANGES, generator)
    theta = torch.cat([decoders.IDENTITY.expand(n, 1, 6), theta.view(n, n_theta, 6)], 1)
    cols = n_theta + 1
    f = torch.tensor(font).repeat_interleave(cols)
    y = torch.tensor(letter).repeat_interleave(cols)
    with torch.no_grad():
        images = decoder(f, y, theta.reshape(-1, 6)).view(n, cols, 28, 28).cpu()
    fig, axes = plt.subplots(
        n, cols, figsize=(1.2 * cols + 1.9, 1.2 * n + 0.5), squeeze=False
    )
    for r in range(n):
        for c in range(cols):
            _image(axes[r, c], images[r, c])
            if r == 0:
                title = "prototype" if c == 0 else f"random θ {c}"
                axes[r, c].set_title(title, fontsize=12)
        _row_label(axes[r, 0], names[font[r]])
    fig.tight_layout(h_pad=0.3, w_pad=0.3)
    return fig


def plot_examples(rows: list[tuple[str, Tensor, Tensor]], show: Tensor):
    """Rows of images (label, images ``[N, 1, 28, 28]``, predicted letters ``[N]``) at
    the indices ``show``, each titled with its prediction."""
    import matplotlib.pyplot as plt

    cols = max(len(show), 1)
    size = (1.0 * cols + 1.6, 1.6 * len(rows))
    fig, axes = plt.subplots(len(rows), cols, figsize=size, squeeze=False)
    for r, (label, images, predicted) in enumerate(rows):
        for c, i in enumerate(show.tolist()):
            _image(axes[r, c], images[i, 0])
            axes[r, c].set_title(f"→ {glyphs.LETTERS[predicted[i]]}", fontsize=13)
        for c in range(len(show), cols):
            axes[r, c].axis("off")
        axes[r, 0].set_ylabel(label.replace(" ", "\n", 1), fontsize=13)
    fig.tight_layout(h_pad=0.8, w_pad=0.3)
    return fig


def plot_distances(distances):
    """a) histograms of the distance to the manifold per set; b) distance vs ‖δ‖₂."""
    import matplotlib.pyplot as plt
    import numpy as np
    import seaborn as sns

    palette = dict(zip(SET_ORDER, sns.color_palette("colorblind", 3)))
    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(9, 4.2))
    bins = np.linspace(0, max(distances.distance.max(), 1e-3) * 1.02, 40)
    for name in SET_ORDER:
        part = distances[distances.set == name]
        if len(part):
            ax0.hist(
                part.distance,
                bins=bins,
                alpha=0.6,
                color=palette[name],
                label=f"{name} (n = {len(part)})",
            )
    ax0.set_xlabel("distance to the manifold ‖x̃ − π(x̃)‖₂\n(pixel values in [0, 1])")
    ax0.set_ylabel("number of examples")
    ax0.set_yscale("log")
    ax0.legend(fontsize=11, loc="upper right")
    ax0.set_title("a) distance found by the latent search", fontsize=12)
    adv = distances[distances.set != "test"]
    sns.scatterplot(
        data=adv,
        x="delta_l2",
        y="distance",
        hue="set",
        palette=palette,
        s=14,
        ax=ax1,
        legend=False,
    )
    top = max(adv.delta_l2.max(), 1e-3) if len(adv) else 1.0
    ax1.plot([0, top], [0, top], color="grey", lw=1, ls="--", label="distance = ‖δ‖₂")
    ax1.set_xlabel("size of the perturbation ‖δ‖₂ = ‖x̃ − x‖₂")
    ax1.set_ylabel("distance to the manifold")
    ax1.legend(fontsize=11, loc="upper left")
    ax1.set_title("b) distance against ‖δ‖₂", fontsize=12)
    fig.tight_layout()
    return fig


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


def record_distances(res, distances) -> None:
    """Add the median distance, ‖δ‖₂, ratio and angle of each set to ``res``, and the
    share of on-manifold examples traced back (distance below a tenth of ‖δ‖₂)."""
    median = distances.groupby("set").median(numeric_only=True)
    for key, name in [
        ("test", "test"),
        ("onmanifold", "on-manifold adversarial"),
        ("regular", "regular adversarial"),
    ]:
        if name not in median.index:
            continue
        res.add(f"distance_{key}_median", median.loc[name, "distance"])
        if key != "test":
            res.add(f"l2_{key}_median", median.loc[name, "delta_l2"])
            res.add(
                f"{key}_distance_over_l2_median", median.loc[name, "distance_over_l2"]
            )
            res.add(f"{key}_angle_deg_median", median.loc[name, "angle_deg"])
    on = distances[distances.set == "on-manifold adversarial"]
    if len(on):
        res.add("onmanifold_found_fraction", (on.distance <= 0.1 * on.delta_l2).mean())
