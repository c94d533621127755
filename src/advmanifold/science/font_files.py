"""Font files and faces: where FONTS finds fonts (the system's folders, the Debian
packages, matplotlib's bundled faces, any folder), their SHA-256, and the faces of each
file (a ``.ttc``/``.otc`` collection holds several). Rendering and filtering the A–J
prototypes of the faces is :mod:`advmanifold.science.glyphs`."""

from __future__ import annotations

import hashlib
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

FONT_SUFFIXES = (".ttf", ".otf", ".ttc", ".otc")
COLLECTION_SUFFIXES = (".ttc", ".otc")
FONT_SIZE = 21  # the rendering size, to open a face (as :data:`glyphs.FONT_SIZE`)


def debian_font_packages() -> list[str]:
    """Debian/Ubuntu font packages of ``advmanifold/debian-font-packages.txt`` (about
    1,200 faces with A–J); one per line, ``#`` starts a comment."""
    from importlib.resources import files

    path = files("advmanifold").joinpath("debian-font-packages.txt")
    text = path.read_text(encoding="utf-8")
    return [
        word for line in text.splitlines() for word in line.split("#", 1)[0].split()
    ]


def system_font_dirs() -> list[Path]:
    """Folders searched by default: ``ADVMANIFOLD_FONTS`` (``os.pathsep``-separated) if
    set, else the existing system and user font folders of Linux, macOS and Windows."""
    if os.environ.get("ADVMANIFOLD_FONTS"):
        return [
            Path(p).expanduser()
            for p in os.environ["ADVMANIFOLD_FONTS"].split(os.pathsep)
            if p
        ]
    home = Path.home()
    candidates = [
        Path("/usr/share/fonts"),
        Path("/usr/local/share/fonts"),
        home / ".fonts",
        home / ".local/share/fonts",
        Path("/Library/Fonts"),
        Path("/System/Library/Fonts"),
        home / "Library/Fonts",
        Path(os.environ.get("WINDIR", "C:/Windows")) / "Fonts",
    ]
    return [p for p in candidates if p.is_dir()]


def matplotlib_font_dir() -> Path:
    """The folder of the ~40 font files bundled with matplotlib (about 8 designs)."""
    import matplotlib

    return Path(matplotlib.get_data_path()) / "fonts" / "ttf"


def matplotlib_font_files() -> list[Path]:
    """The font files bundled with matplotlib: a last-resort fallback."""
    return sorted(matplotlib_font_dir().glob("*.ttf"))


def find_font_files(font_dirs: list[str | os.PathLike] | None = None) -> list[Path]:
    """Sorted font files (:data:`FONT_SUFFIXES`) under the folders ``font_dirs``
    (default :func:`system_font_dirs`); matplotlib's bundled fonts, with a warning, when
    none is found."""
    if font_dirs is not None and isinstance(font_dirs, (str, os.PathLike)):
        raise ValueError(
            f"font_dirs must be a list of folders or None, got {font_dirs!r}"
        )
    dirs = (
        system_font_dirs()
        if font_dirs is None
        else [Path(d).expanduser() for d in font_dirs]
    )
    missing = [str(d) for d in dirs if not Path(d).is_dir()]
    if missing:
        raise ValueError(f"font_dirs: not a folder: {missing}")
    files = sorted(
        {
            p.resolve()
            for d in dirs
            for p in Path(d).rglob("*")
            if p.suffix.lower() in FONT_SUFFIXES and p.is_file()
        }
    )
    if not files:
        shown = [str(d) for d in dirs]
        warnings.warn(
            f"no font file under {shown}; using matplotlib's bundled fonts",
            stacklevel=2,
        )
        files = matplotlib_font_files()
    return files


def sha256_file(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class FontFace:
    """One face: a file, the face's index in it (0 except in collections), its names and
    the SHA-256 of the file."""

    path: str
    index: int
    family: str
    style: str
    sha256: str


def discover_faces(
    files: list[str | os.PathLike] | None = None,
    *,
    font_dirs: list[str | os.PathLike] | None = None,
    digests: dict[str, str] | None = None,
) -> list[FontFace]:
    """Every face of ``files`` (default: :func:`find_font_files` of ``font_dirs``), in
    file order and face order. A collection (``.ttc``/``.otc``) gives faces 0, 1, …
    until FreeType refuses the index; a file that cannot be opened gives one face with
    empty names (it is counted as unreadable later)."""
    from PIL import ImageFont

    files = find_font_files(font_dirs) if files is None else [Path(f) for f in files]
    digests = digests or {}
    faces = []
    for path in files:
        path = Path(path)
        sha = digests.get(str(path)) or sha256_file(path)
        collection = path.suffix.lower() in COLLECTION_SUFFIXES
        index = 0
        while True:
            try:
                face = ImageFont.truetype(str(path), FONT_SIZE, index=index)
                family, style = face.getname()
            except (OSError, ValueError):
                if index == 0:
                    faces.append(FontFace(str(path), 0, "", "", sha))
                break
            faces.append(FontFace(str(path), index, family or "", style or "", sha))
            if not collection:
                break
            index += 1
    return faces
