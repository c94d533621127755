"""FONTS prototypes: the letters A–J rendered from font files found in folders.

Stutz et al. (2019) render each (font, letter) once, directly at 28×28 with a
font size of 21 pt, centred, glyph bright (≈ 1) on a dark background (0). These
*prototypes* are the discrete part of the FONTS latent code; the continuous part,
an affine transformation θ, is applied by :mod:`advmanifold.science.decoders`.

The original used 1000 hand-cleaned Google Fonts. We discover the faces in a list of
folders (default: the system's font folders, ``font_files.system_font_dirs``; on
Debian/Ubuntu
the packages of ``font_files.debian_font_packages``; any folder works, e.g. a checkout
of
Google Fonts): every ``.ttf``/``.otf`` file is one face, every ``.ttc``/``.otc``
collection contributes each of its faces as (path, face index). The manual cleaning is
replaced by filters applied in this order, each counted (:attr:`FontPrototypes.counts`):

1. ``unreadable``: the face cannot be opened or rendered;
2. ``deny_list``: the family name contains a substring of :data:`DENY_FAMILIES`
   (display faces that draw pictures, not letters);
3. ``missing_glyphs``: a letter renders as the face's missing-glyph box, or two
   letters are (almost) the same image;
4. ``ink``: the ink fraction of a letter is implausible or the glyph touches the border;
5. ``illegible``: leave-one-family-out k-nearest-neighbour check: after blurring, each
   letter must be recognised as itself by a majority of its 5 most similar glyphs of
   fonts of *other* families (cubes, skulls, binary digits, Greek letters on Latin
   code points fail);
6. ``near_duplicate``: the ten prototypes lie within :data:`DUPLICATE_THRESHOLD` of a
   face taken earlier (:func:`near_duplicates`; the same design in two formats or
   packages, weights too close to tell apart at 28×28).

The survivors are permuted with a seed; a manifest (path, face index, family, style,
SHA-256 of the file) travels with the prototypes.

The original's own selection, for its Google Fonts list (:mod:`.google_fonts`), is
``selection="original"``: faces in the given order, dropped only when unreadable or
missing one of A–J, the first ``n_fonts`` kept, each letter placed as the original
code placed it (``centring="original"``, :func:`original_positions`).
"""

from __future__ import annotations

import os
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

LETTERS = "ABCDEFGHIJ"
IMAGE_SIZE = 28
FONT_SIZE = 21  # image size minus a quarter, leaving room for the transformations

#: Substrings (lower case) of family names whose faces are dropped without rendering:
#: symbol and dingbat faces, and display faces of the Debian packages that pass the
#: automatic checks although their letters are hard to read at 28×28 (our choice, from
#: looking at every face that passes).
DENY_FAMILIES = (
    "dingbat",
    "symbol",
    "emoji",
    "ornament",
    "webdings",
    "wingding",
    "acid reflux",
    "gyrose",
    "weaver",
)

#: Near-duplicate threshold: RMS pixel difference of two faces' ten prototypes,
#: ‖P_a − P_b‖₂ / √(10·28·28), below which the later face is dropped (our choice: pairs
#: below it, such as the Light and Regular weights of one design or two Helvetica
#: clones, look alike at 28×28; a tenth of the Debian faces has a copy at distance 0).
DUPLICATE_THRESHOLD = 0.07

FILTERS = (
    "unreadable",
    "deny_list",
    "missing_glyphs",
    "ink",
    "illegible",
    "near_duplicate",
)


# re-exported: glyphs renders the faces that font_files finds
from .font_files import (  # noqa: E402, F401
    COLLECTION_SUFFIXES,  # noqa: F401
    FONT_SUFFIXES,  # noqa: F401
    FontFace,  # noqa: F401
    debian_font_packages,  # noqa: F401
    discover_faces,  # noqa: F401
    find_font_files,  # noqa: F401
    matplotlib_font_dir,  # noqa: F401
    matplotlib_font_files,  # noqa: F401
    sha256_file,  # noqa: F401
    system_font_dirs,  # noqa: F401
)


CENTRINGS = ("bbox", "original")


def original_positions(font, letters: str, size: int = IMAGE_SIZE) -> list:
    """Where the original code draws each letter (top-left ``xy`` of
    ``ImageDraw.text``, anchor at the ascender): with A's offsets
    ``(ox, oy)`` and the letter's old ``draw.textsize`` ``(tw, th)``,

        xy = ((size − ox − tw) // 2, (size − oy − th) // 2).

    Pillow < 10 gave ``textsize = (w + ox, h + oy)`` of ``font.font.getsize``; in
    today's ``getbbox`` (anchor ``"la"``) terms ``(ox, oy) = (left, top)`` of A and
    ``(tw, th) = (right − left, bottom)`` of the letter, i.e. ``tw`` the hinted
    advance or the ink's right edge, whichever is larger, plus a negative left
    bearing, and ``th`` the ascender plus the ink below the baseline."""
    left, top = font.getbbox("A")[:2]
    out = []
    for char in letters:
        c_left, _, c_right, c_bottom = font.getbbox(char)
        width, height = c_right - c_left, c_bottom
        out.append(((size - left - width) // 2, (size - top - height) // 2))
    return out


def render_font(
    path: str | os.PathLike,
    letters: str = LETTERS,
    size: int = IMAGE_SIZE,
    font_size: int = FONT_SIZE,
    *,
    index: int = 0,
    centring: str = "bbox",
) -> np.ndarray | None:
    """Letters of face ``index`` of a font file as float32
    ``[len(letters) + 1, size, size]`` in [0, 1], ink = 1.

    ``centring="bbox"``: each glyph is centred by its bounding box;
    ``"original"``: placed as the original code did (:func:`original_positions`,
    Pillow's basic layout as in its Pillow 5 days), black on white, then inverted.
    The last image is a code point no Latin font maps (U+E000, private use), i.e.
    the font's missing-glyph box, used to detect letters the font lacks. None if the
    face cannot be read.
    """
    from PIL import Image, ImageDraw, ImageFont

    if centring not in CENTRINGS:
        raise ValueError(f"centring must be one of {CENTRINGS}, got {centring!r}")
    if centring == "original":
        return _render_original(path, letters + "\ue000", size, font_size, index)
    try:
        font = ImageFont.truetype(str(path), font_size, index=index)
    except (OSError, ValueError):
        return None
    out = np.zeros((len(letters) + 1, size, size), dtype=np.float32)
    for i, char in enumerate(letters + "\ue000"):
        image = Image.new("L", (size, size), 0)
        draw = ImageDraw.Draw(image)
        try:
            left, top, right, bottom = draw.textbbox((0, 0), char, font=font)
            corner = (
                (size - (right - left)) / 2 - left,
                (size - (bottom - top)) / 2 - top,
            )
            draw.text(corner, char, fill=255, font=font)
        except (OSError, ValueError):
            return None
        out[i] = np.asarray(image, dtype=np.float32) / 255.0
    return out


def _render_original(path, chars: str, size: int, font_size: int, index: int):
    from PIL import Image, ImageDraw, ImageFont

    try:
        font = ImageFont.truetype(
            str(path),
            font_size,
            index=index,
            layout_engine=0,  # basic layout (ImageFont.Layout.BASIC), as in Pillow 5
        )
        positions = original_positions(font, chars, size)
    except (OSError, ValueError):
        return None
    out = np.zeros((len(chars), size, size), dtype=np.float32)
    for i, (char, xy) in enumerate(zip(chars, positions)):
        image = Image.new("L", (size, size), 255)
        try:
            ImageDraw.Draw(image).text(xy, char, fill=0, font=font)
        except (OSError, ValueError):
            return None
        out[i] = (255.0 - np.asarray(image, dtype=np.float32)) / 255.0
    return out


def has_letters(path: str | os.PathLike, letters: str = LETTERS, index: int = 0):
    """Whether face ``index`` of a font file maps every letter (its cmap table);
    None if the file cannot be parsed."""
    from fontTools.ttLib import TTFont

    try:
        font = TTFont(str(path), fontNumber=index, lazy=True)
        try:
            cmap = font.getBestCmap() or {}
        finally:
            font.close()
    except Exception:  # noqa: BLE001 - fontTools raises many kinds on bad files
        return None
    return all(ord(char) in cmap for char in letters)


def blur(images: Tensor, sigma: float = 1.5) -> Tensor:
    """Gaussian blur of ``[..., H, W]`` images (separable, zero padding)."""
    radius = int(3 * sigma)
    offsets = torch.arange(-radius, radius + 1, dtype=images.dtype)
    k = torch.exp(-(offsets**2) / (2 * sigma**2))
    k = k / k.sum()
    shape = images.shape
    x = images.reshape(-1, 1, *shape[-2:])
    x = F.conv2d(x, k.view(1, 1, 1, -1), padding=(0, radius))
    x = F.conv2d(x, k.view(1, 1, -1, 1), padding=(radius, 0))
    return x.reshape(shape)


def legibility_checks(
    prototypes: Tensor,
    missing: Tensor,
    *,
    groups: Tensor | None = None,
    min_ink: float = 0.005,
    max_ink: float = 0.6,
    k: int = 5,
    min_correct: int | None = None,
) -> dict[str, Tensor]:
    """Failure masks ``[F]`` of checks 3–5 of the module docstring, each only among the
    fonts that passed the earlier ones: ``{"missing_glyphs", "ink", "illegible"}``.

    ``prototypes``: ``[F, 10, H, W]`` in [0, 1]; ``missing``: ``[F, H, W]``, each font's
    missing-glyph rendering; ``groups``: ``[F]`` integer family ids (default: every font
    its own); fonts of the same group never vote for each other. A font passes the k-NN
    check when at least ``min_correct`` (default: all) of its letters get their own
    label from the majority of their ``k`` nearest glyphs (cosine similarity of blurred
    glyphs).
    """
    expected = (prototypes.shape[0], *prototypes.shape[2:])
    if prototypes.ndim != 4 or missing.shape != expected:
        raise ValueError(
            "prototypes must be [F, L, H, W] and missing [F, H, W], "
            f"got {tuple(prototypes.shape)} and {tuple(missing.shape)}"
        )
    n_fonts, n_letters = prototypes.shape[:2]
    groups = torch.arange(n_fonts) if groups is None else torch.as_tensor(groups)
    if groups.shape != (n_fonts,):
        raise ValueError(
            f"groups must have shape [{n_fonts}], got {tuple(groups.shape)}"
        )
    min_correct = n_letters if min_correct is None else min_correct
    flat = prototypes.flatten(2)
    # 3. glyphs exist and differ from each other
    differs_missing = (flat - missing.flatten(1)[:, None]).abs().amax(2) > 0.1
    same = torch.eye(n_letters, dtype=torch.bool)
    pair = torch.cdist(flat, flat).masked_fill(same, float("inf"))
    glyphs = differs_missing.all(1) & (pair.amin((1, 2)) > 0.5)
    # 4. plausible ink, nothing cut at the border
    ink = flat.mean(2)
    border = torch.cat(
        [
            prototypes[..., 0, :],
            prototypes[..., -1, :],
            prototypes[..., :, 0],
            prototypes[..., :, -1],
        ],
        -1,
    ).amax(-1)
    inked = ((ink > min_ink) & (ink < max_ink)).all(1) & (border < 0.5).all(1)
    out = {
        "missing_glyphs": ~glyphs,
        "ink": glyphs & ~inked,
        "illegible": torch.zeros(n_fonts, dtype=torch.bool),
    }
    # 5. leave-one-family-out k-NN on blurred, unit-norm glyphs
    idx = (glyphs & inked).nonzero().squeeze(1)
    if len(idx) <= k:
        return out
    blurred = blur(prototypes[idx]).flatten(2)
    norm = blurred.norm(dim=2, keepdim=True).clamp_min(1e-8)
    blurred = (blurred / norm).flatten(0, 1)
    group = groups[idx].repeat_interleave(n_letters)
    label = torch.arange(n_letters).repeat(len(idx))
    predicted = torch.empty_like(label)
    for s in range(0, len(blurred), 2048):
        sim = blurred[s : s + 2048] @ blurred.T
        sim[
            group[s : s + 2048, None] == group[None]
        ] = -2.0  # never vote for your family
        votes = F.one_hot(label[sim.topk(k, dim=1).indices], n_letters).sum(1)
        predicted[s : s + 2048] = votes.argmax(1)
    correct = (predicted == label).view(len(idx), n_letters).sum(1)
    out["illegible"][idx[correct < min_correct]] = True
    return out


def legible(prototypes: Tensor, missing: Tensor, **kwargs) -> Tensor:
    """Boolean mask ``[F]`` of fonts passing :func:`legibility_checks`."""
    failed = legibility_checks(prototypes, missing, **kwargs)
    return ~(failed["missing_glyphs"] | failed["ink"] | failed["illegible"])


def near_duplicates(
    prototypes: Tensor, threshold: float = DUPLICATE_THRESHOLD
) -> Tensor:
    """Boolean mask ``[F]`` of faces to drop: greedily in the given order, a face is
    kept unless its prototypes are within RMS distance ``threshold`` of a face kept
    before,

        ‖P_a − P_b‖₂ / √(L·H·W) < threshold   (P the stack of the L letters).

    Pairwise distances come from one ``torch.cdist``; the loop is over faces only."""
    if not threshold >= 0:
        raise ValueError(f"threshold must be >= 0, got {threshold!r}")
    n = prototypes.shape[0]
    flat = prototypes.flatten(1).double()
    close = torch.cdist(flat, flat) / flat.shape[1] ** 0.5 < threshold
    drop = torch.zeros(n, dtype=torch.bool)
    for i in range(n):
        if not drop[i]:
            later = close[i].clone()
            later[: i + 1] = False
            drop |= later
    return drop


def denied(family: str, deny: tuple[str, ...] = DENY_FAMILIES) -> bool:
    """Whether a family name contains a deny-listed substring (case-insensitive)."""
    family = family.lower()
    return any(word in family for word in deny)


@dataclass
class FontPrototypes:
    """Prototypes ``images [F, 10, 28, 28]`` (float32, [0, 1]), the ``manifest`` of
    their faces (same order) and ``counts``: faces found and faces removed by each
    filter."""

    images: Tensor
    manifest: list[FontFace]
    counts: dict[str, int] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.manifest)

    @property
    def names(self) -> list[str]:
        """Short labels "family style" (file name and face index if the face has no
        name)."""
        return [
            f"{m.family} {m.style}".strip() or f"{Path(m.path).name}#{m.index}"
            for m in self.manifest
        ]

    def manifest_frame(self):
        """The manifest as a pandas DataFrame (columns path, index, family, style,
        sha256)."""
        import pandas as pd

        return pd.DataFrame(
            [asdict(m) for m in self.manifest],
            columns=list(FontFace.__dataclass_fields__),
        )


def render_prototypes(
    faces: list[FontFace] | list[str | os.PathLike] | None = None,
    *,
    n_fonts: int | None = None,
    seed: int = 0,
    font_dirs: list[str | os.PathLike] | None = None,
    deny: tuple[str, ...] = DENY_FAMILIES,
    duplicate_threshold: float = DUPLICATE_THRESHOLD,
    progress: bool = False,
) -> FontPrototypes:
    """Render ``faces`` (font files or faces; default: ``font_files.discover_faces`` of
    ``font_dirs``), apply the filters of the module docstring in the faces' (sorted)
    order, permute the survivors with ``seed`` and keep the first ``n_fonts`` (all if
    None). Deterministic for a given set of font files."""
    if n_fonts is not None and (int(n_fonts) != n_fonts or n_fonts < 1):
        raise ValueError(f"n_fonts must be a positive integer or None, got {n_fonts!r}")
    if faces is None:
        faces = discover_faces(font_dirs=font_dirs)
    elif not all(isinstance(f, FontFace) for f in faces):  # files: find their faces
        faces = discover_faces(faces)
    counts = {"faces": len(faces), "files": len({f.path for f in faces})}
    rendered, kept = [], []
    n_denied = 0
    for i, face in enumerate(faces):
        if face.family and denied(face.family, deny):
            n_denied += 1
            continue
        images = render_font(face.path, index=face.index)
        if images is not None:
            rendered.append(images)
            kept.append(face)
        if progress and (i + 1) % 200 == 0:
            print(f"rendered {i + 1}/{len(faces)} faces", file=sys.stderr)
    counts["unreadable"] = len(faces) - n_denied - len(kept)
    counts["deny_list"] = n_denied
    if not rendered:
        raise RuntimeError(
            f"no usable font among {len(faces)} faces; install fonts (e.g. apt-get "
            f"install {' '.join(debian_font_packages()[:3])} ...) or pass font_dirs"
        )
    stack = torch.from_numpy(np.stack(rendered))
    prototypes, missing = stack[:, :-1], stack[:, -1]
    families = {}
    groups = torch.tensor(
        [families.setdefault(f.family or f.path, len(families)) for f in kept]
    )
    failed = legibility_checks(prototypes, missing, groups=groups)
    for name, mask in failed.items():
        counts[name] = int(mask.sum())
    keep = ~(failed["missing_glyphs"] | failed["ink"] | failed["illegible"])
    index = keep.nonzero().squeeze(1)
    duplicate = near_duplicates(prototypes[index], duplicate_threshold)
    counts["near_duplicate"] = int(duplicate.sum())
    index = index[~duplicate]
    counts["kept"] = len(index)
    generator = torch.Generator().manual_seed(seed)
    order = index[torch.randperm(len(index), generator=generator)]
    if n_fonts is not None:
        if n_fonts > len(order):
            raise ValueError(
                f"n_fonts={n_fonts} but only {len(order)} legible fonts were found"
            )
        order = order[:n_fonts]
    return FontPrototypes(
        prototypes[order].contiguous(), [kept[i] for i in order.tolist()], counts
    )


def select_in_order(
    faces: list[FontFace],
    n_fonts: int | None = None,
    *,
    progress: bool = False,
) -> FontPrototypes:
    """The original's selection: ``faces`` in the given order, a face dropped only
    when unreadable or when it lacks one of A–J (:func:`has_letters`, or a blank
    letter), the first ``n_fonts`` kept (all if None; fewer if fewer render),
    letters placed as the original did (``centring="original"``). No permutation,
    no other filter."""
    if n_fonts is not None and (int(n_fonts) != n_fonts or n_fonts < 1):
        raise ValueError(f"n_fonts must be a positive integer or None, got {n_fonts!r}")
    counts = {name: 0 for name in FILTERS}
    counts.update(faces=len(faces), files=len({f.path for f in faces}))
    rendered, kept = [], []
    examined = 0
    for face in faces:
        if n_fonts is not None and len(kept) == n_fonts:
            break
        examined += 1
        images = render_font(face.path, index=face.index, centring="original")
        letters = None if images is None else has_letters(face.path, index=face.index)
        if images is None or letters is None:
            counts["unreadable"] += 1
        elif not letters or (images[:-1].reshape(len(LETTERS), -1).max(1) == 0).any():
            counts["missing_glyphs"] += 1
        else:
            rendered.append(images[:-1])
            kept.append(face)
        if progress and examined % 200 == 0:
            print(f"rendered {examined}/{len(faces)} faces", file=sys.stderr)
    counts["kept"] = len(kept)
    counts["not_examined"] = len(faces) - examined
    if not kept:
        raise RuntimeError(f"no usable font among {len(faces)} faces")
    images = torch.from_numpy(np.stack(rendered))
    return FontPrototypes(images, kept, counts)


def prototypes_config(
    files: list[str | os.PathLike],
    *,
    n_fonts: int | None = None,
    seed: int = 0,
    duplicate_threshold: float = DUPLICATE_THRESHOLD,
    digests: dict[str, str] | None = None,
    selection: str = "filtered",
) -> dict:
    """The cache configuration of the prototypes of ``files``: their paths and SHA-256
    (cheap to compute: no rendering) and the rendering and filter settings.

    ``selection="filtered"``: the filters of the module docstring, permuted with
    ``seed``; ``"original"``: :func:`select_in_order` of ``files`` in their given
    order (the order is kept in the configuration; seed and filters do not enter)."""
    digests = digests or {str(f): sha256_file(f) for f in files}
    if selection == "original":
        return {
            "files": [(str(f), digests[str(f)]) for f in files],
            "n_fonts": n_fonts,
            "size": IMAGE_SIZE,
            "font_size": FONT_SIZE,
            "letters": LETTERS,
            "selection": "original",
            "centring": "original",
            "version": 2,
        }
    if selection != "filtered":
        raise ValueError(
            f"selection must be 'filtered' or 'original', got {selection!r}"
        )
    return {
        "files": sorted(digests.items()),
        "n_fonts": n_fonts,
        "seed": seed,
        "size": IMAGE_SIZE,
        "font_size": FONT_SIZE,
        "letters": LETTERS,
        "deny": list(DENY_FAMILIES),
        "duplicate_threshold": duplicate_threshold,
        "version": 2,
    }


def prototypes_payload(
    config: dict, files: list[str | os.PathLike] | None = None
) -> dict:
    """Render the prototypes described by :func:`prototypes_config` ``config``: the
    cache payload ``{"images", "manifest", "counts"}``. ``files`` gives the order in
    which faces are filtered (default: sorted as by ``font_files.find_font_files``,
    which the
    order of ``config["files"]``, sorted as strings, is not); for
    ``selection="original"`` it gives where the configuration's files are, in its
    order (default: its names are the paths)."""
    if config.get("selection") == "original":
        names = [Path(f) for f, _ in config["files"]]
        files = names if files is None else [Path(f) for f in files]
        if len(files) != len(names):
            raise ValueError(f"{len(files)} files for {len(names)} in the config")
        digests = {str(f): sha for f, (_, sha) in zip(files, config["files"])}
        faces = discover_faces(files, digests=digests)
        result = select_in_order(faces, config["n_fonts"])
        return {
            "images": result.images,
            "manifest": [asdict(m) for m in result.manifest],
            "counts": result.counts,
        }
    digests = dict(config["files"])
    files = sorted(Path(f) for f in digests) if files is None else files
    faces = discover_faces(files, digests=digests)
    result = render_prototypes(
        faces,
        n_fonts=config["n_fonts"],
        seed=config["seed"],
        duplicate_threshold=config["duplicate_threshold"],
    )
    return {
        "images": result.images,
        "manifest": [asdict(m) for m in result.manifest],
        "counts": result.counts,
    }


def prototypes_from_payload(payload: dict) -> FontPrototypes:
    """The :class:`FontPrototypes` of a payload of :func:`prototypes_payload`."""
    return FontPrototypes(
        payload["images"],
        [FontFace(**m) for m in payload["manifest"]],
        dict(payload["counts"]),
    )


def load_prototypes(
    n_fonts: int | None = None,
    *,
    seed: int = 0,
    font_dirs: list[str | os.PathLike] | None = None,
    files: list[str | os.PathLike] | None = None,
    duplicate_threshold: float = DUPLICATE_THRESHOLD,
) -> FontPrototypes:
    """:func:`render_prototypes` of the faces in ``files`` (default:
    ``font_files.find_font_files`` of ``font_dirs``), with their manifest and filter
    counts.
    Not cached: the book keeps it as the unit
    :func:`advmanifold.chapters.fonts.prototypes_unit`."""
    files = find_font_files(font_dirs) if files is None else [Path(f) for f in files]
    config = prototypes_config(
        files, n_fonts=n_fonts, seed=seed, duplicate_threshold=duplicate_threshold
    )
    return prototypes_from_payload(prototypes_payload(config, files))
