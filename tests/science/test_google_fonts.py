"""The original's Google Fonts faces: the lock, the original centring, the fetch (with
a fake npm, no network) and the chapter's font source."""

import hashlib
import io
import json
import re
import shutil
import stat
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

from advmanifold.chapters import fonts
from advmanifold.science import glyphs
from advmanifold.science import google_fonts as gf

DEJAVU = glyphs.matplotlib_font_dir() / "DejaVuSans.ttf"


# ---------------------------------------------------------------------------- lock


def test_lock_parses_and_is_consistent():
    rows = gf.read_lock()
    ranks = [r.rank for r in rows]
    assert ranks == list(range(len(rows)))  # every rank walked, in order
    assert {r.status for r in rows} <= set(gf.STATUSES)
    ok = [r for r in rows if r.ok]
    assert len(ok) >= gf.ORIGINAL_COUNT
    for row in ok:
        assert re.fullmatch(
            r"@(expo-google-fonts|fontsource)/[a-z0-9-]+@[\d.]+", row.package
        )
        assert row.integrity.startswith("sha512-") and len(row.integrity) == 95
        assert re.fullmatch(r"[0-9a-f]{64}", row.sha256)
        assert row.file.startswith("package/") and row.file.endswith((".ttf", ".woff"))
        assert row.weight in gf.WEIGHTS.values() and row.style in ("normal", "italic")
        assert gf.parse_style(row.original_path) == (row.weight, row.style)
    assert all(not r.package and not r.file for r in rows if not r.ok)
    # one package, one integrity
    integrity = {}
    assert all(integrity.setdefault(r.package, r.integrity) == r.integrity for r in ok)
    counts = gf.match_counts(rows)
    assert (
        counts["n_faces"]
        == len(ok)
        == (counts["n_original_first_1000_matched"] + counts["n_from_further_down"])
    )
    assert counts["n_original_first_1000_matched"] == sum(r.rank < 1000 for r in ok)
    assert counts["n_ranks_walked"] == len(rows)


def test_lock_text_round_trips(tmp_path):
    rows = gf.read_lock()[:30]
    path = tmp_path / "lock.tsv"
    path.write_text(gf.format_lock(rows, ["a comment"]))
    assert gf.read_lock(path) == rows
    path.write_text("rank\tpath\n0\tx\n")
    with pytest.raises(ValueError, match="columns"):
        gf.read_lock(path)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("RobotoMono-Bold.ttf", (700, "normal")),
        ("Roboto-ThinItalic.ttf", (100, "italic")),
        ("Ubuntu-Italic.ttf", (400, "italic")),
        ("Lato-Regular.ttf", (400, "normal")),
        ("Koulen.ttf", (400, "normal")),
        ("Inter-ExtraLight.ttf", (200, "normal")),
        ("Inter-Light.ttf", (300, "normal")),
        ("Inter-MediumItalic.ttf", (500, "italic")),
        ("Inter-SemiBoldItalic.ttf", (600, "italic")),
        ("Inter-ExtraBold.ttf", (800, "normal")),
        ("Inter-BlackItalic.ttf", (900, "italic")),
        ("jsMath-cmbx10.ttf", None),
        ("OpenSans-CondBold.ttf", None),
    ],
)
def test_style_suffix_gives_weight_and_style(name, expected):
    assert gf.parse_style(name) == expected


def test_family_key_matches_folders_to_package_names():
    assert gf.family_key("roboto-mono") == gf.family_key("robotomono") == "robotomono"
    assert gf.family_key("IBM Plex Sans") == "ibmplexsans"


# ------------------------------------------------------------------------ centring


def test_original_centring_places_letters_by_the_offsets_of_a():
    """The original drew each letter at ((28 − ox − tw)//2, (28 − oy − th)//2) with
    A's offsets (ox, oy) and the letter's old ``textsize`` (tw, th). Recomputed here
    from rendered ink, the hinted advance and the ascender, not from ``getbbox``.

    Pinned by hand for DejaVu Sans at 21 px (2048 units per em): ascender 1901 units
    → ceil(19.49) = 20 px; A's top, 1493 units = 15.3 px, hinted to 15 px, so A's
    offsets are (0, 20 − 15) = (0, 5); A's ink ends at 15 px past a 14 px advance,
    so its textsize is (15, 20) and A lands at ((28 − 15)//2, (28 − 5 − 20)//2) =
    (6, 1); J reaches 2 px left of its pen and 4 px below the baseline: textsize
    (6 + 2, 20 + 4) = (8, 24), position (10, −1)."""
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.truetype(str(DEJAVU), 21, layout_engine=ImageFont.Layout.BASIC)
    ascent = font.getmetrics()[0]

    def ink(char):  # ink box around the pen origin on the baseline
        image = Image.new("L", (100, 100), 0)
        ImageDraw.Draw(image).text((50, 50), char, fill=255, font=font, anchor="ls")
        rows, cols = np.nonzero(np.asarray(image))
        return cols.min() - 50, rows.min() - 50, cols.max() - 49, rows.max() - 49

    left_a, top_a = ink("A")[:2]
    ox, oy = min(0, left_a), ascent + top_a
    expected = []
    for char in glyphs.LETTERS:
        left, _, right, bottom = ink(char)
        advance = font.getlength(char)
        assert advance == int(advance)  # hinted, as Pillow's basic layout was
        tw = max(int(advance), right) - min(0, left)
        th = ascent + max(0, bottom)
        expected.append(((28 - ox - tw) // 2, (28 - oy - th) // 2))
    assert (ascent, ox, oy) == (20, 0, 5)
    assert expected[0] == (6, 1) and expected[-1] == (10, -1)
    assert glyphs.original_positions(font, glyphs.LETTERS) == expected
    images = glyphs.render_font(DEJAVU, centring="original")
    assert images.shape == (11, 28, 28) and images.dtype == np.float32
    for i, (char, xy) in enumerate(zip(glyphs.LETTERS, expected)):
        image = Image.new("L", (28, 28), 0)
        ImageDraw.Draw(image).text(xy, char, fill=255, font=font)
        np.testing.assert_array_equal(images[i], np.asarray(image) / np.float32(255))
    assert not np.array_equal(images, glyphs.render_font(DEJAVU))
    with pytest.raises(ValueError, match="centring"):
        glyphs.render_font(DEJAVU, centring="middle")


def test_select_in_order_keeps_the_order_and_drops_only_what_cannot_render(tmp_path):
    broken = tmp_path / "broken.ttf"
    broken.write_bytes(b"not a font")
    files = [
        glyphs.matplotlib_font_dir() / "DejaVuSerif.ttf",
        broken,
        glyphs.matplotlib_font_dir() / "STIXSizOneSymReg.ttf",  # no Latin letters
        DEJAVU,
        glyphs.matplotlib_font_dir() / "DejaVuSansMono.ttf",
    ]
    faces = glyphs.discover_faces(files)
    result = glyphs.select_in_order(faces, 2)
    assert [Path(m.path).name for m in result.manifest] == [
        "DejaVuSerif.ttf",
        "DejaVuSans.ttf",
    ]
    assert result.counts["unreadable"] == 1 and result.counts["missing_glyphs"] == 1
    assert result.counts["kept"] == 2 and result.counts["not_examined"] == 1
    expected = glyphs.render_font(DEJAVU, centring="original")[:10]
    torch.testing.assert_close(result.images[1], torch.from_numpy(expected))
    assert len(glyphs.select_in_order(faces, 5)) == 3  # fewer when fewer render


def test_debian_prototypes_config_is_unchanged():
    files = [Path("/fonts/a.ttf"), Path("/fonts/b.otf")]
    digests = {str(f): str(i) * 64 for i, f in enumerate(files)}
    assert glyphs.prototypes_config(files, digests=digests) == {
        "files": [("/fonts/a.ttf", "0" * 64), ("/fonts/b.otf", "1" * 64)],
        "n_fonts": None,
        "seed": 0,
        "size": 28,
        "font_size": 21,
        "letters": "ABCDEFGHIJ",
        "deny": list(glyphs.DENY_FAMILIES),
        "duplicate_threshold": glyphs.DUPLICATE_THRESHOLD,
        "version": 2,
    }
    original = glyphs.prototypes_config(
        files[::-1], digests=digests, n_fonts=1000, selection="original"
    )
    assert original["files"] == [("/fonts/b.otf", "1" * 64), ("/fonts/a.ttf", "0" * 64)]
    assert original["selection"] == original["centring"] == "original"
    assert "seed" not in original and "deny" not in original


# --------------------------------------------------------------------------- fetch

FAKE_NPM = """#!{python}
import json, shutil, sys
from pathlib import Path
args = sys.argv[1:]
dest = Path(args[args.index("--pack-destination") + 1])
specs = [a for a in args[1:] if not a.startswith("-") and a != str(dest)]
with open({log!r}, "a") as log:
    log.write(" ".join(specs) + "\\n")
out = []
for spec in specs:
    name = spec.lstrip("@").replace("/", "-").rsplit("@", 1)
    filename = f"{{name[0]}}-{{name[1]}}.tgz"
    shutil.copy(Path({store!r}) / filename, dest / filename)
    out.append({{"id": spec, "filename": filename}})
print(json.dumps(out))
"""


def _tarball(path: Path, members: dict) -> None:
    with tarfile.open(path, "w:gz") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))


@pytest.fixture
def fake_registry(tmp_path, monkeypatch):
    """A lock of two faces in one fake package, served by a fake ``npm``."""
    store = tmp_path / "store"
    store.mkdir()
    font = DEJAVU.read_bytes()
    bold = (glyphs.matplotlib_font_dir() / "DejaVuSans-Bold.ttf").read_bytes()
    tgz = store / "fontsource-dejavu-1.0.0.tgz"
    _tarball(
        tgz,
        {
            "package/files/dejavu-latin-400-normal.woff": font,
            "package/files/dejavu-latin-700-normal.woff": bold,
            "package/LICENSE": b"licence text",
            "package/README.md": b"not installed",
        },
    )
    common = dict(
        family="DejaVu",
        style="normal",
        status="ok",
        package="@fontsource/dejavu@1.0.0",
        integrity=gf.integrity_of(tgz),
        license_file="package/LICENSE",
    )
    rows = [
        gf.LockRow(
            rank=0,
            original_path="ofl/dejavu/DejaVu-Regular.ttf",
            weight=400,
            file="package/files/dejavu-latin-400-normal.woff",
            sha256=hashlib.sha256(font).hexdigest(),
            **common,
        ),
        gf.LockRow(
            1, "ofl/other/Other-Regular.ttf", "Other", 400, "normal", "no-package"
        ),
        gf.LockRow(
            rank=2,
            original_path="ofl/dejavu/DejaVu-Bold.ttf",
            weight=700,
            file="package/files/dejavu-latin-700-normal.woff",
            sha256=hashlib.sha256(bold).hexdigest(),
            **common,
        ),
    ]
    lock = tmp_path / "lock.tsv"
    lock.write_text(gf.format_lock(rows, ["test lock"]))
    npm = tmp_path / "npm"
    log = tmp_path / "npm.log"
    npm.write_text(
        FAKE_NPM.format(python=sys.executable, log=str(log), store=str(store))
    )
    npm.chmod(npm.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("ADVMANIFOLD_NPM", str(npm))
    monkeypatch.setenv("ADVMANIFOLD_DATA", str(tmp_path / "data"))
    return {"lock": lock, "log": log, "rows": rows, "tgz": tgz}


def test_fetch_installs_the_locked_files_then_skips_them(fake_registry):
    lock, log = fake_registry["lock"], fake_registry["log"]
    first = gf.fetch(lock=lock, log=None)
    dest = gf.google_font_dir()
    assert first["faces"] == 2 and first["packages_downloaded"] == 1
    assert first["faces_installed"] == 2 and first["mb_downloaded"] > 0
    base = dest / "@fontsource/dejavu@1.0.0"
    installed = sorted(p.relative_to(base).as_posix() for p in base.rglob("*"))
    assert installed == [
        "LICENSE",
        "files",
        "files/dejavu-latin-400-normal.woff",
        "files/dejavu-latin-700-normal.woff",
    ]
    assert (
        base / "files/dejavu-latin-400-normal.woff"
    ).read_bytes() == DEJAVU.read_bytes()
    manifest = json.loads((dest / "manifest.json").read_text())["files"]
    assert (
        manifest["@fontsource/dejavu@1.0.0/LICENSE"]
        == hashlib.sha256(b"licence text").hexdigest()
    )
    assert log.read_text().split() == ["@fontsource/dejavu@1.0.0"]
    assert not list(dest.glob(".download-*"))  # the tarball is not kept
    rows = gf.read_lock(lock)
    assert gf.installed_faces(rows=rows) == [
        r.installed_path(dest) for r in rows if r.ok
    ]
    assert gf.is_installed(rows=rows)

    second = gf.fetch(lock=lock, log=None)
    assert second["packages_downloaded"] == 0 and second["mb_downloaded"] == 0
    assert len(log.read_text().splitlines()) == 1  # npm not called again

    (base / "files/dejavu-latin-700-normal.woff").write_bytes(b"damaged")
    third = gf.fetch(lock=lock, log=None)
    assert third["packages_downloaded"] == 1
    assert gf.sha256_file(base / "files/dejavu-latin-700-normal.woff") == (
        fake_registry["rows"][2].sha256
    )


def test_fetch_refuses_a_tarball_that_differs_from_the_lock(fake_registry):
    _tarball(fake_registry["tgz"], {"package/files/other.woff": b"x"})
    with pytest.raises(gf.FetchError, match="integrity"):
        gf.fetch(lock=fake_registry["lock"], log=None)
    assert gf.installed_faces(rows=gf.read_lock(fake_registry["lock"])) == []


def test_fetch_without_npm_says_what_to_install(fake_registry, monkeypatch):
    monkeypatch.setenv("ADVMANIFOLD_NPM", "no-such-npm-here")
    with pytest.raises(gf.FetchError, match="apt-get install npm"):
        gf.fetch(lock=fake_registry["lock"], log=None)


def test_lock_member_names_cannot_leave_the_install_folder(tmp_path):
    with pytest.raises(gf.FetchError, match="bad file name"):
        gf.member_path(tmp_path, "@x/y@1", "package/../../etc/passwd")


# ------------------------------------------------------------------------- chapter


def test_font_source_resolution(monkeypatch):
    monkeypatch.delenv("ADVMANIFOLD_FONT_SOURCE", raising=False)
    monkeypatch.setattr(gf, "is_installed", lambda *a, **k: True)
    assert fonts.resolve_font_source() == "google"
    assert fonts.resolve_font_source(font_dirs=["/x"]) == ["/x"]
    assert fonts.resolve_font_source(["/y"]) == ["/y"]
    assert fonts.resolve_font_source("debian") == "system"
    monkeypatch.setattr(gf, "is_installed", lambda *a, **k: False)
    assert fonts.resolve_font_source() == "system"
    monkeypatch.setenv("ADVMANIFOLD_FONT_SOURCE", "google")
    assert fonts.resolve_font_source() == "google"
    with pytest.raises(ValueError, match="font_source"):
        fonts.resolve_font_source("fancy")


def test_google_unit_takes_the_installed_faces_in_order(tmp_path, monkeypatch):
    monkeypatch.setenv("ADVMANIFOLD_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("ADVMANIFOLD_DATA", str(tmp_path / "data"))
    names = ["DejaVuSerif.ttf", "STIXSizOneSymReg.ttf", "DejaVuSans.ttf"]
    files = []
    for name in names:  # as fetch installs them: package@version/file
        files.append(gf.google_font_dir() / "@fontsource/x@1.0.0/files" / name)
        files[-1].parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(glyphs.matplotlib_font_dir() / name, files[-1])
    monkeypatch.setattr(gf, "installed_faces", lambda *a, **k: files)
    unit = fonts.prototypes_unit(font_source="google")
    system = fonts.prototypes_unit([glyphs.matplotlib_font_dir()])
    assert unit.key != system.key and unit.name == system.name
    assert [f for f, _ in unit.config["files"]] == [
        f"@fontsource/x@1.0.0/files/{n}" for n in names
    ]  # the key does not depend on where the data folder is
    assert unit.config["selection"] == "original"
    assert unit.config["n_fonts"] == fonts.GOOGLE_FONTS
    every = fonts.prototypes(unit)
    assert [Path(m.path).name for m in every.manifest] == [names[0], names[2]]
    assert every.counts["missing_glyphs"] == 1
    monkeypatch.setenv("ADVMANIFOLD_DATA", str(tmp_path / "elsewhere"))
    moved = [
        gf.google_font_dir() / f.relative_to(tmp_path / "data/fonts/google")
        for f in files
    ]
    for old, new in zip(files, moved):
        new.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(old, new)
    monkeypatch.setattr(gf, "installed_faces", lambda *a, **k: moved)
    assert fonts.prototypes_unit(font_source="google").key == unit.key
    monkeypatch.setattr(gf, "installed_faces", lambda *a, **k: [])
    with pytest.raises(ValueError, match="make fonts"):
        fonts.prototypes_unit(font_source="google")


def test_installed_google_fonts_render_in_the_lock_order():
    if not gf.is_installed():
        pytest.skip(
            f"Google fonts not installed in {gf.google_font_dir()} (make fonts)"
        )
    files = gf.installed_faces()
    assert len(files) == gf.match_counts()["n_faces"]
    faces = glyphs.discover_faces(files[:40])
    result = glyphs.select_in_order(faces, 40)
    assert len(result) == 40 and result.counts["unreadable"] == 0
    unit = fonts.prototypes_unit(font_source="google")
    assert len(unit.config["files"]) == len(files) >= fonts.GOOGLE_FONTS
