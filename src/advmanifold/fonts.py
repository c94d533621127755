"""FONTS prototypes: the letters A–J rendered from the font files of this machine.

Stutz et al. (2019) render each (font, letter) once, directly at 28×28 with a
font size of 21 pt, centred, glyph bright (≈ 1) on a dark background (0). These
*prototypes* are the discrete part of the FONTS latent code; the continuous part,
an affine transformation θ, is applied by :mod:`advmanifold.decoders`.

The original used 1000 hand-cleaned Google Fonts. Offline we use the font files
installed on the machine (on Debian/Ubuntu: :data:`DEBIAN_FONT_PACKAGES`), and
replace the manual cleaning by automatic checks (:func:`legible`):

1. every letter has a glyph (its rendering differs from the font's "missing glyph"
   box) and the ten letters are pairwise different;
2. ink covers a plausible fraction of the image and does not touch the border;
3. k-nearest-neighbour check: after blurring, each of the font's letters must be
   recognised as itself by a majority vote of the 5 most similar glyphs of *other*
   fonts. Symbol and decorative fonts (cubes, skulls, binary digits, Greek
   letters on Latin code points) fail it.

Fonts whose ten prototypes are identical to an earlier font's are dropped.
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

LETTERS = "ABCDEFGHIJ"
IMAGE_SIZE = 28
FONT_SIZE = 21  # image size minus a quarter, leaving room for the transformations
FONT_SUFFIXES = (".ttf", ".otf")

#: Debian/Ubuntu packages giving about 1,200 faces with A–J (serif, sans, mono,
#: display, blackletter, handwriting); ~59 MB. ``apt-get install`` them on Colab.
DEBIAN_FONT_PACKAGES = (
    "fonts-aenigma fonts-dustin fonts-georgewilliams fonts-linex fonts-urw-base35 fonts-cmu fonts-lyx "
    "fonts-liberation fonts-croscore fonts-crosextra-caladea fonts-crosextra-carlito fonts-freefont-ttf "
    "fonts-linuxlibertine fonts-ebgaramond fonts-vollkorn fonts-sil-gentium-basic fonts-adf-accanthis "
    "fonts-adf-baskervald fonts-adf-gillius fonts-adf-irianis fonts-adf-romande fonts-adf-switzera "
    "fonts-adf-tribun fonts-adf-verana fonts-gfs-didot fonts-yrsa-rasa fonts-roboto-slab fonts-open-sans "
    "fonts-lato fonts-roboto-unhinted fonts-inter fonts-cantarell fonts-cabin fonts-karla fonts-go "
    "fonts-comfortaa fonts-quicksand fonts-dosis fonts-league-spartan fonts-clear-sans fonts-b612 "
    "fonts-tiresias fonts-paratype fonts-uralic fonts-eurofurence fonts-averia-gwf fonts-johnsmith-induni "
    "fonts-arkpandora fonts-hack fonts-inconsolata fonts-jetbrains-mono fonts-anonymous-pro "
    "fonts-courier-prime fonts-ocr-a fonts-ocr-b fonts-pc fonts-bebas-neue fonts-yanone-kaffeesatz "
    "fonts-routed-gothic fonts-roadgeek fonts-gotico-antiqua fonts-klaudia-berenika fonts-blankenburg "
    "fonts-essays1743 fonts-dancingscript fonts-kaushanscript fonts-lobstertwo fonts-kristi fonts-breip "
    "fonts-bwht fonts-sjfonts fonts-dkg-handwriting fonts-femkeklaver fonts-humor-sans fonts-comic-neue "
    "fonts-cabinsketch fonts-tomsontalks fonts-leckerli-one fonts-cherrybomb"
).split()


def font_dirs() -> list[Path]:
    """Folders searched for fonts: ``ADVMANIFOLD_FONTS`` (``os.pathsep``-separated) if set,
    else the system and user font folders of Linux, macOS and Windows."""
    if os.environ.get("ADVMANIFOLD_FONTS"):
        return [Path(p).expanduser() for p in os.environ["ADVMANIFOLD_FONTS"].split(os.pathsep) if p]
    home = Path.home()
    candidates = [Path("/usr/share/fonts"), Path("/usr/local/share/fonts"), home / ".fonts",
                  home / ".local/share/fonts", Path("/Library/Fonts"), Path("/System/Library/Fonts"),
                  home / "Library/Fonts", Path(os.environ.get("WINDIR", "C:/Windows")) / "Fonts"]
    return [p for p in candidates if p.is_dir()]


def matplotlib_font_files() -> list[Path]:
    """The ~40 font files bundled with matplotlib: a last-resort fallback (about 8 designs)."""
    import matplotlib

    return sorted((Path(matplotlib.get_data_path()) / "fonts" / "ttf").glob("*.ttf"))


def find_font_files(dirs: list[Path] | None = None) -> list[Path]:
    """Sorted TrueType/OpenType files under ``dirs`` (default :func:`font_dirs`); matplotlib's
    bundled fonts when none is found."""
    dirs = font_dirs() if dirs is None else [Path(d) for d in dirs]
    files = sorted({p.resolve() for d in dirs for p in d.rglob("*") if p.suffix.lower() in FONT_SUFFIXES
                    and p.is_file()})
    return files or matplotlib_font_files()


def render_font(path: str | os.PathLike, letters: str = LETTERS, size: int = IMAGE_SIZE,
                font_size: int = FONT_SIZE) -> np.ndarray | None:
    """Letters of one font as float32 ``[len(letters) + 1, size, size]`` in [0, 1], ink = 1.

    Each glyph is centred by its bounding box. The last image is a code point no
    Latin font maps (U+E000, private use), i.e. the font's missing-glyph box, used to
    detect letters the font lacks. None if the file cannot be read.
    """
    from PIL import Image, ImageDraw, ImageFont

    try:
        font = ImageFont.truetype(str(path), font_size)
    except (OSError, ValueError):
        return None
    out = np.zeros((len(letters) + 1, size, size), dtype=np.float32)
    for i, char in enumerate(letters + "\ue000"):
        image = Image.new("L", (size, size), 0)
        draw = ImageDraw.Draw(image)
        try:
            left, top, right, bottom = draw.textbbox((0, 0), char, font=font)
            draw.text(((size - (right - left)) / 2 - left, (size - (bottom - top)) / 2 - top), char,
                      fill=255, font=font)
        except (OSError, ValueError):
            return None
        out[i] = np.asarray(image, dtype=np.float32) / 255.0
    return out


def _blur(images: Tensor, sigma: float = 1.5) -> Tensor:
    """Gaussian blur of ``[..., H, W]`` images (separable, zero padding)."""
    radius = int(3 * sigma)
    k = torch.exp(-torch.arange(-radius, radius + 1, dtype=images.dtype) ** 2 / (2 * sigma ** 2))
    k = k / k.sum()
    shape = images.shape
    x = images.reshape(-1, 1, *shape[-2:])
    x = F.conv2d(x, k.view(1, 1, 1, -1), padding=(0, radius))
    x = F.conv2d(x, k.view(1, 1, -1, 1), padding=(radius, 0))
    return x.reshape(shape)


def legible(prototypes: Tensor, missing: Tensor, *, min_ink: float = 0.005, max_ink: float = 0.6,
            k: int = 5, min_correct: int | None = None) -> Tensor:
    """Boolean mask ``[F]`` of fonts passing the checks of the module docstring.

    ``prototypes``: ``[F, 10, H, W]`` in [0, 1]; ``missing``: ``[F, H, W]``, each font's
    missing-glyph rendering. A font passes the k-NN check when at least ``min_correct``
    (default: all) of its letters get their own label from the majority of their ``k``
    nearest glyphs among the *other* fonts (cosine similarity of blurred glyphs).
    """
    if prototypes.ndim != 4 or missing.shape != (prototypes.shape[0], *prototypes.shape[2:]):
        raise ValueError("prototypes must be [F, L, H, W] and missing [F, H, W], "
                         f"got {tuple(prototypes.shape)} and {tuple(missing.shape)}")
    n_fonts, n_letters = prototypes.shape[:2]
    min_correct = n_letters if min_correct is None else min_correct
    flat = prototypes.flatten(2)
    # 1. glyphs exist and differ from each other
    differs_missing = (flat - missing.flatten(1)[:, None]).abs().amax(2) > 0.1
    pair = torch.cdist(flat, flat).masked_fill(torch.eye(n_letters, dtype=torch.bool), float("inf"))
    keep = differs_missing.all(1) & (pair.amin((1, 2)) > 0.5)
    # 2. plausible ink, nothing cut at the border
    ink = flat.mean(2)
    border = torch.cat([prototypes[..., 0, :], prototypes[..., -1, :], prototypes[..., :, 0],
                        prototypes[..., :, -1]], -1).amax(-1)
    keep &= ((ink > min_ink) & (ink < max_ink)).all(1) & (border < 0.5).all(1)
    # 3. leave-one-font-out k-NN on blurred, unit-norm glyphs
    if keep.sum() <= k:
        return keep
    idx = keep.nonzero().squeeze(1)
    blurred = _blur(prototypes[idx]).flatten(2)
    blurred = (blurred / blurred.norm(dim=2, keepdim=True).clamp_min(1e-8)).flatten(0, 1)
    font = torch.arange(len(idx)).repeat_interleave(n_letters)
    label = torch.arange(n_letters).repeat(len(idx))
    predicted = torch.empty_like(label)
    for s in range(0, len(blurred), 2048):
        sim = blurred[s:s + 2048] @ blurred.T
        sim[font[s:s + 2048, None] == font[None]] = -2.0          # never vote for yourself
        votes = F.one_hot(label[sim.topk(k, dim=1).indices], n_letters).sum(1)
        predicted[s:s + 2048] = votes.argmax(1)
    correct = (predicted == label).view(len(idx), n_letters).sum(1)
    keep[idx[correct < min_correct]] = False
    return keep


@dataclass
class FontPrototypes:
    """Prototypes ``images [F, 10, 28, 28]`` (float32, [0, 1]) and the ``names`` of their fonts."""

    images: Tensor
    names: list[str]

    def __len__(self) -> int:
        return len(self.names)


def render_prototypes(files: list[Path] | None = None, *, n_fonts: int | None = None, seed: int = 0,
                      progress: bool = False) -> FontPrototypes:
    """Render, check (:func:`legible`), de-duplicate, permute with ``seed`` and keep the first
    ``n_fonts`` (all if None) fonts. Deterministic for a given set of font files."""
    if n_fonts is not None and (int(n_fonts) != n_fonts or n_fonts < 1):
        raise ValueError(f"n_fonts must be a positive integer or None, got {n_fonts!r}")
    files = find_font_files() if files is None else [Path(f) for f in files]
    rendered, names = [], []
    for i, path in enumerate(files):
        images = render_font(path)
        if images is not None:
            rendered.append(images)
            names.append(Path(path).name)
        if progress and (i + 1) % 200 == 0:
            print(f"rendered {i + 1}/{len(files)} font files", file=sys.stderr)
    if not rendered:
        raise RuntimeError(f"no usable font among {len(files)} files; install fonts "
                           f"(e.g. apt-get install {' '.join(DEBIAN_FONT_PACKAGES[:3])} ...)")
    stack = torch.from_numpy(np.stack(rendered))
    prototypes, missing = stack[:, :-1], stack[:, -1]
    keep = legible(prototypes, missing)
    # drop exact duplicates (the same design shipped twice), keeping the first file
    quantised = (prototypes * 255).round().to(torch.uint8).flatten(1)
    seen, unique = set(), torch.zeros_like(keep)
    for i in keep.nonzero().squeeze(1).tolist():
        key = quantised[i].numpy().tobytes()
        if key not in seen:
            seen.add(key)
            unique[i] = True
    index = unique.nonzero().squeeze(1)
    order = index[torch.randperm(len(index), generator=torch.Generator().manual_seed(seed))]
    if n_fonts is not None:
        if n_fonts > len(order):
            raise ValueError(f"n_fonts={n_fonts} but only {len(order)} legible fonts were found")
        order = order[:n_fonts]
    return FontPrototypes(prototypes[order].contiguous(), [names[i] for i in order.tolist()])


def load_prototypes(n_fonts: int | None = None, *, seed: int = 0, files: list[Path] | None = None,
                    cache: bool | None = None) -> FontPrototypes:
    """:func:`render_prototypes`, cached by the list of font files (names and sizes)."""
    from .cache import cached

    files = find_font_files() if files is None else [Path(f) for f in files]
    config = {"files": [f"{Path(f).name}:{Path(f).stat().st_size}" for f in files], "n_fonts": n_fonts,
              "seed": seed, "size": IMAGE_SIZE, "font_size": FONT_SIZE, "letters": LETTERS, "version": 1}
    payload = cached("fonts-prototypes", config,
                     lambda: vars(render_prototypes(files, n_fonts=n_fonts, seed=seed)), enabled=cache)
    return FontPrototypes(payload["images"], list(payload["names"]))
