"""Write ``src/advmanifold/google-fonts.tsv``: the original FONTS order, pinned to npm.

For maintainers; users only read the lock (``python -m advmanifold.science.google_fonts
fetch``). Steps:

1. the original's faces in its order: ``fonts[perm[i]]`` for the lists of
   ``common/fonts.py`` (``get_filtered_fonts``, ``get_filtered_permutation``) of
   davidstutz/disentangling-robustness-generalization, as its
   ``data/fonts/generate_prototypes.py`` walks them; read from a bare clone
   (``--original``), else from the ranks already in the lock;
2. family, weight and style from each file name; the npm packages of the family
   (``@expo-google-fonts/<family>``, else ``@fontsource/<family>``), looked up by name
   in a list of npm package names and versions (``--npm-names``, a TSV whose first two
   columns are name and version);
3. walking the order, the tarballs of the families met are downloaded with
   ``npm pack`` (cached in ``--cache``), and each face takes the first package file of
   the same weight and style that renders A–J, until ``--target`` faces are found.

Run: ``python tools/google_fonts_lock.py [--original DIR] [--npm-names FILE]``.
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import re
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from advmanifold.science import glyphs
from advmanifold.science import google_fonts as gf

ROOT = Path(__file__).resolve().parents[1]
ORIGINAL = Path("/work/.mirror/davidstutz+disentangling-robustness-generalization/repo")
NPM_NAMES = Path("/work/.library/env/packages/npm.tsv")
SCOPES = ("@expo-google-fonts/", "@fontsource/")
# RobotoMono_700Bold_Italic.ttf, in a folder 700Bold_Italic/ or (older) not
EXPO_FILE = re.compile(r"^package/(?:[^/]+/)?[^/]+_(\d{3})[A-Za-z]+(_Italic)?\.ttf$")
FONTSOURCE_FILE = re.compile(
    r"^package/files/[^/]+-latin-(\d{3})-(normal|italic)\.woff$"
)
LICENSES = ("package/LICENSE_FONT", "package/OFL.txt", "package/LICENSE")


def _function_value(tree: ast.Module, function: str, variable: str):
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name == function:
            for statement in node.body:
                if isinstance(statement, ast.Assign) and any(
                    getattr(t, "id", None) == variable for t in statement.targets
                ):
                    return ast.literal_eval(statement.value)
    raise ValueError(f"{function}: no assignment to {variable}")


def original_order(repo: Path) -> list[str]:
    """The original's font paths in the order its prototypes script walks them."""
    source = subprocess.run(
        ["git", "-C", str(repo), "show", "HEAD:common/fonts.py"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    tree = ast.parse(source)
    listed = _function_value(tree, "get_fonts", "files")
    fonts_list = [f for f in listed.split("\n") if f]
    blacklist = _function_value(tree, "get_filtered_fonts", "filtered_fonts")
    for name, index in zip(blacklist[::2], blacklist[1::2]):
        assert name.lower() in fonts_list[index].lower(), (name, index)
    for index in sorted(blacklist[1::2], reverse=True):
        del fonts_list[index]
    numbers = _function_value(tree, "get_filtered_permutation", "numbers")
    perm = [int(v) for v in numbers.split("\n") if v]
    assert sorted(perm) == list(range(len(fonts_list)))
    return [fonts_list[perm[i]] for i in range(len(fonts_list))]


def npm_names(path: Path) -> dict[str, dict[str, str]]:
    """scope → family key → ``name@version`` for the two font scopes."""
    out = {scope: {} for scope in SCOPES}
    with open(path, encoding="utf-8") as handle:
        next(handle)
        for line in handle:
            name, version = line.split("\t", 2)[:2]
            for scope in SCOPES:
                if name.startswith(scope):
                    out[scope][gf.family_key(name[len(scope) :])] = f"{name}@{version}"
    return out


def download(specs: list[str], cache: Path, batch: int) -> None:
    todo = [s for s in specs if not (cache / gf.tarball_name(s)).is_file()]
    for i in range(0, len(todo), batch):
        print(f"npm pack {len(todo[i : i + batch])} packages", file=sys.stderr)
        gf.npm_pack(todo[i : i + batch], cache)


def faces_of(tgz: Path) -> tuple[dict, str]:
    """(weight, style) → member name, and the licence member, of a tarball."""
    with tarfile.open(tgz, "r:gz") as archive:
        names = [m.name for m in archive.getmembers() if m.isfile()]
    faces = {}
    for name in sorted(names):
        if match := EXPO_FILE.match(name):
            key = (int(match[1]), "italic" if match[2] else "normal")
        elif match := FONTSOURCE_FILE.match(name):
            key = (int(match[1]), match[2])
        else:
            continue
        faces.setdefault(key, name)
    licence = next((n for n in LICENSES if n in names), "")
    return faces, licence


def check(data: bytes, suffix: str) -> str:
    """The status of a font file's bytes: ok, unreadable or missing-glyphs."""
    with tempfile.NamedTemporaryFile(suffix=suffix) as handle:
        handle.write(data)
        handle.flush()
        images = glyphs.render_font(handle.name, centring="original")
        letters = None if images is None else glyphs.has_letters(handle.name)
    if images is None or letters is None:
        return "unreadable"
    if not letters or (images[:-1].reshape(len(glyphs.LETTERS), -1).max(1) == 0).any():
        return "missing-glyphs"
    return "ok"


def family_name(path: str) -> str:
    stem = Path(path).stem
    base = stem.rsplit("-", 1)[0] if gf.parse_style(path) and "-" in stem else stem
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", " ", base)


def ambiguous(order: list[str]) -> set[str]:
    """Names without a style suffix in a folder holding several such names
    (``GenBkBasR.ttf``, ``GenBkBasBI.ttf``): their style is unknown."""
    bare = [p for p in order if "-" not in Path(p).stem]
    folders = [p.rsplit("/", 1)[0] for p in bare]
    return {p for p, f in zip(bare, folders) if folders.count(f) > 1}


def build(order: list[str], names: dict, cache: Path, target: int, batch: int):
    rows, opened, found, used = [], {}, 0, set()
    unclear = ambiguous(order)
    for start in range(0, len(order), 200):
        if found >= target:
            break
        chunk = order[start : start + 200]
        keys = {gf.family_key(p.split("/")[-2]) for p in chunk}
        specs = [names[s][k] for s in SCOPES for k in keys if k in names[s]]
        download(specs, cache, batch)
        for rank, path in enumerate(chunk, start):
            if found >= target:
                break
            style = None if path in unclear else gf.parse_style(path)
            base = {
                "rank": rank,
                "original_path": path,
                "family": family_name(path),
                "weight": style[0] if style else None,
                "style": style[1] if style else "",
            }
            if style is None:
                rows.append(gf.LockRow(**base, status="unknown-style"))
                continue
            key = gf.family_key(path.split("/")[-2])
            status, row = "no-package", None
            for scope in SCOPES:
                spec = names[scope].get(key)
                if spec is None:
                    continue
                if spec not in opened:
                    opened[spec] = faces_of(cache / gf.tarball_name(spec))
                faces, licence = opened[spec]
                member = faces.get(style)
                if member is None:
                    continue
                if (spec, member) in used:
                    status = "duplicate"
                    break
                with tarfile.open(cache / gf.tarball_name(spec), "r:gz") as archive:
                    data = archive.extractfile(member).read()
                status = check(data, Path(member).suffix)
                if status == "ok":
                    row = gf.LockRow(
                        **base,
                        status="ok",
                        package=spec,
                        integrity=gf.integrity_of(cache / gf.tarball_name(spec)),
                        file=member,
                        sha256=hashlib.sha256(data).hexdigest(),
                        license_file=licence,
                    )
                    used.add((spec, member))
                    break
            rows.append(row or gf.LockRow(**base, status=status))
            found += row is not None
        print(f"ranks {start}–{rank}: {found} faces", file=sys.stderr)
    return rows


HEADER = """\
Google Fonts faces of the original FONTS, in its order, pinned to npm packages.
Written by tools/google_fonts_lock.py; read by advmanifold.science.google_fonts.
rank, original_path: the order of Stutz et al. (2019), code of
davidstutz/disentangling-robustness-generalization: common/fonts.py (get_fonts,
get_filtered_fonts, get_filtered_permutation), walked as fonts[perm[i]] by
data/fonts/generate_prototypes.py (main); rank is i, 0-based.
family, weight, style: from the file name (no style suffix: Regular, unless the folder
has several such names). status: ok (a package holds the face and it renders A-J) or
why not (no-package, unknown-style, unreadable, missing-glyphs, duplicate: the file
of an earlier rank).
package: name@version on npm (@expo-google-fonts TTF first, else @fontsource WOFF,
Latin subset); integrity: npm's sha512 of its tarball; file, license_file: members of
the tarball; sha256: of the font file.
Counts: {counts}"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--original", type=Path, default=ORIGINAL)
    parser.add_argument("--npm-names", type=Path, default=NPM_NAMES)
    parser.add_argument("--cache", type=Path, default=Path("~/.cache/advmanifold/npm"))
    parser.add_argument(
        "--out", type=Path, default=ROOT / "src/advmanifold/google-fonts.tsv"
    )
    parser.add_argument("--target", type=int, default=gf.ORIGINAL_COUNT)
    parser.add_argument("--batch", type=int, default=40)
    args = parser.parse_args(argv)
    if args.original.exists():
        order = original_order(args.original)
    else:
        print(f"no {args.original}: taking the order from the lock", file=sys.stderr)
        order = [r.original_path for r in gf.read_lock(args.out)]
    if not args.npm_names.is_file():
        parser.error(f"--npm-names: no file {args.npm_names}")
    cache = args.cache.expanduser()
    cache.mkdir(parents=True, exist_ok=True)
    rows = build(order, npm_names(args.npm_names), cache, args.target, args.batch)
    counts = ", ".join(f"{k} {v}" for k, v in gf.match_counts(rows).items())
    header = HEADER.format(counts=counts).splitlines()
    args.out.write_text(gf.format_lock(rows, header), encoding="utf-8")
    print(f"wrote {args.out}: {counts}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
