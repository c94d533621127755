"""The original FONTS faces from Google Fonts, pinned as npm packages.

Stutz et al. (2019) rendered FONTS from a fixed list of Google Fonts files, in a fixed
permuted order, keeping the first 1000 that render. The lock file
``advmanifold/google-fonts.tsv`` walks that order and gives, for each face, the npm
package holding the same family, weight and style (``@expo-google-fonts/*``, TrueType;
else ``@fontsource/*``, WOFF of the Latin subset), pinned by version and sha512
integrity, the file in its tarball and that file's SHA-256. It is written by
``tools/google_fonts_lock.py``.

``python -m advmanifold.science.google_fonts fetch`` downloads the pinned tarballs with
npm, checks them against the lock and installs the font and licence files under
``<data>/fonts/google`` (:func:`google_font_dir`); a second run downloads nothing.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .data import resolve_data_dir
from .glyphs import sha256_file

#: The original's first this many faces (those it kept: all of its faces rendered).
ORIGINAL_COUNT = 1000

LOCK_COLUMNS = (
    "rank",
    "original_path",
    "family",
    "weight",
    "style",
    "status",
    "package",
    "integrity",
    "file",
    "sha256",
    "license_file",
)

#: Row statuses: ``ok`` (a package holds the face and it renders A–J), or why not
#: (``duplicate``: the same package file as an earlier rank).
STATUSES = (
    "ok",
    "no-package",
    "unknown-style",
    "unreadable",
    "missing-glyphs",
    "duplicate",
)

#: Weight of a file name's style word (Google Fonts naming; the synonyms are the
#: OpenType weight-class names).
WEIGHTS = {
    "Thin": 100,
    "ExtraLight": 200,
    "UltraLight": 200,
    "Light": 300,
    "Regular": 400,
    "Medium": 500,
    "SemiBold": 600,
    "DemiBold": 600,
    "Bold": 700,
    "ExtraBold": 800,
    "Black": 900,
    "Heavy": 900,
}


class FetchError(RuntimeError):
    """The fonts could not be fetched or installed; the message says why."""


def parse_style(file_name: str) -> tuple[int, str] | None:
    """``(weight, style)`` of a Google Fonts file name such as
    ``RobotoMono-BoldItalic.ttf`` → ``(700, "italic")``; a name without a style
    suffix is Regular ``(400, "normal")``; None for a suffix that is not a style."""
    stem = Path(file_name).stem
    if "-" not in stem:
        return 400, "normal"
    suffix = stem.rsplit("-", 1)[1]
    italic = suffix.endswith("Italic")
    word = suffix[: -len("Italic")] if italic else suffix
    if italic and not word:
        return 400, "italic"
    if word not in WEIGHTS:
        return None
    return WEIGHTS[word], "italic" if italic else "normal"


def family_key(name: str) -> str:
    """Lower-case letters and digits of a family or package name: the key that
    matches ``ofl/robotomono/...`` to ``@fontsource/roboto-mono``."""
    return re.sub(r"[^a-z0-9]", "", name.lower())


@dataclass(frozen=True)
class LockRow:
    """One face of the original's order and where the lock found it."""

    rank: int
    original_path: str
    family: str
    weight: int | None
    style: str
    status: str
    package: str = ""
    integrity: str = ""
    file: str = ""
    sha256: str = ""
    license_file: str = ""

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def installed_path(self, dest: Path) -> Path:
        """Where :func:`fetch` puts this face's file under ``dest``."""
        return member_path(dest, self.package, self.file)

    def license_path(self, dest: Path) -> Path | None:
        if not self.license_file:
            return None
        return member_path(dest, self.package, self.license_file)


def member_path(dest: Path, package: str, member: str) -> Path:
    """``dest/<name@version>/<member without the tarball's "package/" folder>``;
    refuses members that would leave that folder."""
    parts = Path(member).parts
    if parts and parts[0] == "package":
        parts = parts[1:]
    if not parts or Path(member).is_absolute() or ".." in parts:
        raise FetchError(f"bad file name in the lock: {member!r} ({package})")
    return Path(dest, package, *parts)


def lock_path() -> Path:
    """The committed lock file ``advmanifold/google-fonts.tsv``."""
    from importlib.resources import files

    return Path(str(files("advmanifold").joinpath("google-fonts.tsv")))


def read_lock(path: str | os.PathLike | None = None) -> list[LockRow]:
    """Rows of the lock file (default :func:`lock_path`); ``#`` lines are comments,
    the first other line names the columns."""
    path = lock_path() if path is None else Path(path)
    lines = [
        line
        for line in path.read_text(encoding="utf-8").splitlines()
        if line and not line.startswith("#")
    ]
    if not lines or tuple(lines[0].split("\t")) != LOCK_COLUMNS:
        raise ValueError(f"{path}: the first row must name the columns {LOCK_COLUMNS}")
    rows = []
    for number, line in enumerate(lines[1:], 2):
        values = line.split("\t")
        if len(values) != len(LOCK_COLUMNS):
            raise ValueError(f"{path}: row {number} has {len(values)} fields")
        record = dict(zip(LOCK_COLUMNS, values))
        record["rank"] = int(record["rank"])
        record["weight"] = int(record["weight"]) if record["weight"] else None
        rows.append(LockRow(**record))
    return rows


def format_lock(rows: list[LockRow], header: list[str] = ()) -> str:
    """The lock file's text: ``header`` as ``#`` comments, then the rows."""
    out = [f"# {line}".rstrip() for line in header]
    out.append("\t".join(LOCK_COLUMNS))
    for row in rows:
        values = [getattr(row, c) for c in LOCK_COLUMNS]
        out.append("\t".join("" if v is None else str(v) for v in values))
    return "\n".join(out) + "\n"


def match_counts(rows: list[LockRow] | None = None) -> dict[str, int]:
    """How many faces the lock has: ``n_original_first_1000_matched`` (ranks below
    :data:`ORIGINAL_COUNT`), ``n_from_further_down`` (the rest), ``n_faces`` (their
    sum) and ``n_ranks_walked``."""
    rows = read_lock() if rows is None else rows
    ok = [r for r in rows if r.ok]
    first = sum(r.rank < ORIGINAL_COUNT for r in ok)
    return {
        "n_original_first_1000_matched": first,
        "n_from_further_down": len(ok) - first,
        "n_faces": len(ok),
        "n_ranks_walked": max((r.rank for r in rows), default=-1) + 1,
    }


def google_font_dir(data_dir: str | os.PathLike | None = None) -> Path:
    """``<data>/fonts/google`` (data: ``ADVMANIFOLD_DATA``, default
    ``~/.cache/advmanifold/data``)."""
    return resolve_data_dir(data_dir) / "fonts" / "google"


def installed_faces(
    data_dir: str | os.PathLike | None = None, rows: list[LockRow] | None = None
) -> list[Path]:
    """The installed font files of the lock's faces, in the original's order."""
    dest = google_font_dir(data_dir)
    rows = read_lock() if rows is None else rows
    paths = [r.installed_path(dest) for r in rows if r.ok]
    return [p for p in paths if p.is_file()]


def is_installed(
    data_dir: str | os.PathLike | None = None, rows: list[LockRow] | None = None
) -> bool:
    """Whether every face of the lock is installed."""
    rows = read_lock() if rows is None else rows
    wanted = sum(r.ok for r in rows)
    return wanted > 0 and len(installed_faces(data_dir, rows)) == wanted


# ------------------------------------------------------------------------- fetching


def integrity_of(path: str | os.PathLike) -> str:
    """npm's integrity string (``sha512-<base64>``) of a file."""
    digest = hashlib.sha512()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return "sha512-" + base64.b64encode(digest.digest()).decode()


def tarball_name(spec: str) -> str:
    """The file name ``npm pack`` gives ``@scope/name@version``:
    ``scope-name-version.tgz``."""
    name, version = spec.rsplit("@", 1)
    return f"{name.lstrip('@').replace('/', '-')}-{version}.tgz"


def find_npm(npm: str | None = None) -> str:
    """The npm executable: ``npm``, else variable ``ADVMANIFOLD_NPM``, else on
    PATH."""
    found = shutil.which(npm or os.environ.get("ADVMANIFOLD_NPM") or "npm")
    if not found:
        raise FetchError(
            "npm not found: the Google fonts are fetched as npm packages. Install it "
            "(Debian/Ubuntu: apt-get install npm); until then FONTS falls back to the "
            "system's fonts"
        )
    return found


def npm_pack(specs: list[str], folder: Path, npm: str | None = None) -> dict:
    """Download the tarballs of ``specs`` (``name@version``) into ``folder`` with one
    ``npm pack`` call; returns spec → tarball path."""
    command = [find_npm(npm), "pack", *specs, "--pack-destination", str(folder)]
    command += ["--json", "--loglevel=error"]
    done = subprocess.run(command, check=False, capture_output=True, text=True)
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-5:]
        raise FetchError(
            f"npm pack failed for {len(specs)} packages ({specs[0]} …): "
            + " | ".join(tail)
        )
    out = {spec: folder / tarball_name(spec) for spec in specs}
    missing = [s for s, p in out.items() if not p.is_file()]
    if missing:
        raise FetchError(f"npm pack left no tarball for {missing}")
    return out


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=".part-")
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _install_package(tgz: Path, spec: str, rows: list[LockRow], dest: Path) -> dict:
    """Check ``tgz`` against the lock and write the members ``rows`` use; returns
    relative path → SHA-256 of what was written."""
    integrity = integrity_of(tgz)
    if integrity != rows[0].integrity:
        raise FetchError(
            f"{spec}: integrity {integrity[:24]}… differs from the lock's "
            f"{rows[0].integrity[:24]}… (tarball changed upstream, or a bad download)"
        )
    wanted = {r.file: r.sha256 for r in rows}
    wanted.update({r.license_file: "" for r in rows if r.license_file})
    written = {}
    with tarfile.open(tgz, "r:gz") as archive:
        members = {m.name: m for m in archive.getmembers() if m.isfile()}
        for name, sha in wanted.items():
            if name not in members:
                raise FetchError(f"{spec}: {name} is not in the tarball")
            data = archive.extractfile(members[name]).read()
            digest = hashlib.sha256(data).hexdigest()
            if sha and digest != sha:
                raise FetchError(f"{spec}: {name} has SHA-256 {digest}, lock {sha}")
            target = member_path(dest, spec, name)
            _write_atomic(target, data)
            written[target.relative_to(dest).as_posix()] = digest
    return written


def _present(path: Path, sha: str) -> bool:
    return bool(sha) and path.is_file() and sha256_file(path) == sha


def fetch(
    dest: str | os.PathLike | None = None,
    *,
    lock: str | os.PathLike | None = None,
    npm: str | None = None,
    batch_size: int = 40,
    downloader: Callable[[list[str], Path], dict] | None = None,
    log: Callable[[str], None] | None = print,
) -> dict:
    """Install the lock's faces (and their licence files) under ``dest`` (default
    :func:`google_font_dir`). Files present with the right SHA-256 are kept; the
    packages of the others are downloaded, ``batch_size`` per ``npm pack`` call
    (``downloader(specs, folder) → {spec: tarball}`` replaces npm), checked against
    the lock's integrity and unpacked atomically. Returns a summary."""
    started = time.perf_counter()
    dest = google_font_dir() if dest is None else Path(dest).expanduser()
    dest.mkdir(parents=True, exist_ok=True)
    rows = [r for r in read_lock(lock) if r.ok]
    manifest_file = dest / "manifest.json"
    manifest = {}
    if manifest_file.is_file():
        manifest = json.loads(manifest_file.read_text()).get("files", {})
    by_package: dict[str, list[LockRow]] = {}
    for row in rows:
        by_package.setdefault(row.package, []).append(row)

    def complete(spec: str) -> bool:
        for row in by_package[spec]:
            if not _present(row.installed_path(dest), row.sha256):
                return False
            licence = row.license_path(dest)
            if licence is not None:
                key = licence.relative_to(dest).as_posix()
                if not _present(licence, manifest.get(key, "")):
                    return False
        return True

    missing = [spec for spec in by_package if not complete(spec)]
    download = downloader or (lambda specs, folder: npm_pack(specs, folder, npm))
    downloaded = 0
    batches = [missing[i : i + batch_size] for i in range(0, len(missing), batch_size)]
    for number, batch in enumerate(batches, 1):
        with tempfile.TemporaryDirectory(dir=dest, prefix=".download-") as folder:
            tarballs = download(batch, Path(folder))
            for spec in batch:
                if spec not in tarballs or not Path(tarballs[spec]).is_file():
                    raise FetchError(f"no tarball downloaded for {spec}")
                downloaded += Path(tarballs[spec]).stat().st_size
                manifest.update(
                    _install_package(Path(tarballs[spec]), spec, by_package[spec], dest)
                )
        _write_atomic(manifest_file, json.dumps({"files": manifest}, indent=0).encode())
        if log:
            log(
                f"batch {number}/{len(batches)}: {len(batch)} packages, "
                f"{downloaded / 1e6:.1f} MB so far, "
                f"{time.perf_counter() - started:.0f} s"
            )
    summary = {
        "faces": len(rows),
        "packages": len(by_package),
        "packages_downloaded": len(missing),
        "faces_installed": sum(len(by_package[s]) for s in missing),
        "mb_downloaded": round(downloaded / 1e6, 1),
        "seconds": round(time.perf_counter() - started, 1),
        "dest": str(dest),
    }
    if log:
        log(
            f"Google fonts for FONTS in {dest}: {summary['faces']} faces from "
            f"{summary['packages']} npm packages; installed now "
            f"{summary['faces_installed']} faces from "
            f"{summary['packages_downloaded']} packages "
            f"({summary['mb_downloaded']} MB downloaded), already present "
            f"{summary['faces'] - summary['faces_installed']}; "
            f"{summary['seconds']} s"
        )
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m advmanifold.science.google_fonts", description=__doc__
    )
    commands = parser.add_subparsers(dest="command", required=True)
    get = commands.add_parser("fetch", help="download and install the lock's faces")
    get.add_argument("--dest", help="folder (default <data>/fonts/google)")
    get.add_argument("--lock", help="lock file (default: the package's)")
    get.add_argument("--batch-size", type=int, default=40)
    commands.add_parser("counts", help="faces of the original's order in the lock")
    args = parser.parse_args(argv)
    if args.command == "counts":
        for key, value in match_counts().items():
            print(f"{key}: {value}")
        return 0
    try:
        fetch(args.dest, lock=args.lock, batch_size=args.batch_size)
    except FetchError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
