"""FONTS: prototype rendering and checks, the affine decoder, the θ attack and the
latent search."""

import hashlib
import math
import shutil

from pathlib import Path

import numpy as np
import pytest
import torch

from advmanifold.science import attacks, decoders, glyphs, models
from advmanifold.science.manifolds import decoder as decoder_manifold


def random_prototypes(n_fonts=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    protos = torch.zeros(n_fonts, 10, 28, 28)
    protos[..., 6:22, 6:22] = torch.rand(
        n_fonts, 10, 16, 16, generator=g
    )  # ink away from the border
    return protos


# ---------------------------------------------------------------- decoder


def test_identity_theta_reproduces_the_prototype_exactly():
    protos = random_prototypes()
    dec = decoders.FontDecoder(protos)
    font, letter = torch.tensor([0, 1, 2]), torch.tensor([3, 0, 9])
    out = dec(font, letter, decoders.IDENTITY.expand(3, 6))
    assert out.shape == (3, 1, 28, 28)
    torch.testing.assert_close(out[:, 0], protos[font, letter], atol=1e-5, rtol=0)
    torch.testing.assert_close(
        decoders.affine_matrices(decoders.IDENTITY[None])[0],
        torch.tensor([[1.0, 0, 0], [0, 1.0, 0]]),
    )


def test_translation_by_one_pixel_shifts_left_and_rotation_by_quarter_turn_is_rot90():
    protos = random_prototypes(1)
    dec = decoders.FontDecoder(protos)
    zero = torch.zeros(1, dtype=torch.long)
    theta = decoders.IDENTITY.clone()[None]
    theta[0, 0] = 2 / 27  # one pixel in normalised coordinates (align_corners=True)
    shifted = dec(zero, zero, theta)[0, 0]
    torch.testing.assert_close(shifted[:, :-1], protos[0, 0][:, 1:], atol=1e-5, rtol=0)
    theta = decoders.IDENTITY.clone()[None]
    theta[0, 5] = math.pi / 2
    rotated = dec(zero, zero, theta)[0, 0]
    torch.testing.assert_close(
        rotated, torch.rot90(protos[0, 0], 1, (0, 1)), atol=1e-4, rtol=0
    )


def test_scale_above_one_shrinks_the_glyph():
    dec = decoders.FontDecoder(random_prototypes(1))
    zero = torch.zeros(3, dtype=torch.long)
    theta = decoders.IDENTITY.repeat(3, 1)
    theta[:, 4] = torch.tensor([0.75, 1.0, 1.15])
    ink = dec(zero, zero, theta).sum((1, 2, 3))
    assert ink[0] > ink[1] > ink[2]
    assert ink[2] / ink[1] == pytest.approx(1 / 1.15**2, rel=0.1)  # area scales as 1/s²


def test_sample_theta_respects_the_ranges_and_bad_names_are_rejected():
    for name in decoders.THETA_RANGES:
        lower, upper = decoders.theta_box(name)
        theta = decoders.sample_theta(2000, name, torch.Generator().manual_seed(1))
        assert ((theta >= lower) & (theta <= upper)).all()
        assert (
            theta.amax(0) - theta.amin(0) > 0.9 * (upper - lower)
        ).all()  # spans the range
    with pytest.raises(ValueError, match="ranges"):
        decoders.theta_box("extreme")
    with pytest.raises(ValueError, match="theta"):
        decoders.affine_matrices(torch.zeros(3, 5))


def test_dataset_split_has_every_font_in_both_parts_and_is_deterministic():
    dec = decoders.FontDecoder(random_prototypes(4))
    a = decoders.make_dataset(dec, 5, test_per_prototype=2, seed=3)
    b = decoders.make_dataset(dec, 5, test_per_prototype=2, seed=3)
    assert a["x"].shape == (4 * 10 * 5, 1, 28, 28) and a["test_x"].shape == (
        4 * 10 * 2,
        1,
        28,
        28,
    )
    assert set(a["font"].tolist()) == set(a["test_font"].tolist()) == {0, 1, 2, 3}
    assert torch.equal(a["x"], b["x"]) and torch.equal(a["test_theta"], b["test_theta"])
    torch.testing.assert_close(
        a["x"][:7], dec(a["font"][:7], a["y"][:7], a["theta"][:7])
    )
    assert torch.bincount(a["y"]).tolist() == [20] * 10
    with pytest.raises(ValueError, match="per_prototype"):
        decoders.make_dataset(dec, -1)


def test_tangents_give_the_first_order_change_of_the_image():
    smooth = (
        glyphs.blur(random_prototypes(2), sigma=2.0) * 0.9
    )  # smooth, below the clamp
    dec = decoders.FontDecoder(smooth)
    font, letter = torch.tensor([0, 1]), torch.tensor([2, 5])
    theta = decoders.sample_theta(2, "easy", torch.Generator().manual_seed(0))
    jac = dec.tangents(font, letter, theta)
    assert jac.shape == (2, 784, 6)
    step = 0.01 * torch.tensor([0.3, -0.2, 0.1, 0.4, -0.1, 0.2])
    change = (dec(font, letter, theta + step) - dec(font, letter, theta)).flatten(1)
    error = (jac @ step - change).norm(dim=1) / change.norm(dim=1)
    assert (error < 0.1).all()


# -------------------------------------------------------- latent search and angle


def test_tangent_residual_of_in_span_orthogonal_and_rank_deficient_cases():
    g = torch.Generator().manual_seed(0)
    basis = torch.linalg.qr(torch.randn(50, 3, generator=g))[0]
    tangents = torch.cat([basis, basis[:, :1] * 2], 1)[None].repeat(
        3, 1, 1
    )  # rank 3 of 4 columns
    inside = basis @ torch.tensor([1.0, -2.0, 0.5])
    outside = torch.randn(50, generator=g)
    outside = outside - basis @ (basis.T @ outside)
    residual = decoder_manifold.tangent_residual(
        tangents, torch.stack([inside, outside, inside + outside])
    )
    torch.testing.assert_close(
        residual,
        torch.stack([torch.tensor(0.0), outside.norm(), outside.norm()]),
        atol=1e-4,
        rtol=1e-4,
    )


def test_search_finds_on_manifold_points_and_never_exceeds_the_perturbation():
    first = glyphs.matplotlib_font_files()[0]
    protos = torch.from_numpy(glyphs.render_font(first)[:10])[None]
    dec = decoders.FontDecoder(protos)
    n = 6
    font, letter = torch.zeros(n, dtype=torch.long), torch.arange(n)
    theta = decoders.sample_theta(n, "easy", torch.Generator().manual_seed(0))
    moved = (theta + 0.05 * torch.tensor([1.0, -1, 1, -1, 1, -1])).clamp(
        *decoders.theta_box("hard")
    )
    on = dec(font, letter, moved)  # on the manifold, near θ
    noise = 0.3 * torch.sign(
        torch.randn(n, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    )
    off = (dec(font, letter, theta) + noise).clamp(0, 1)  # regular-looking perturbation
    clean = dec(font, letter, theta)
    p_clean, _ = decoder_manifold.project(dec, font, letter, clean, theta, steps=5)
    assert p_clean.distance.max() < 1e-5
    p_on, theta_on = decoder_manifold.project(dec, font, letter, on, theta, steps=60)
    assert (
        p_on.distance < 0.25 * p_on.delta_norm
    ).all()  # the search finds the moved θ
    p_off, _ = decoder_manifold.project(
        dec, font, letter, off, theta, steps=30, restarts=1
    )
    assert (p_off.distance <= p_off.delta_norm + 1e-4).all()  # the true θ is a start
    assert (
        p_off.distance > 0.8 * p_off.delta_norm
    ).all()  # noise cannot be explained by θ
    assert (p_off.angle_deg > 75).all() and (p_off.angle_deg <= 90).all()
    lower, upper = decoders.theta_box("hard")
    assert ((theta_on >= lower - 1e-6) & (theta_on <= upper + 1e-6)).all()
    with pytest.raises(ValueError, match="steps"):
        decoder_manifold.project(dec, font, letter, on, theta, steps=-1)


def test_theta_attack_stays_in_the_ball_and_the_box_and_returns_decoded_images():
    dec = decoders.FontDecoder(random_prototypes(3))
    torch.manual_seed(0)
    model = models.ConvNet().eval()
    for p in model.parameters():
        p.requires_grad_(False)
    n = 12
    font, letter = torch.arange(n) % 3, torch.arange(n) % 10
    theta = decoders.sample_theta(n, "hard", torch.Generator().manual_seed(2))
    result, images = attacks.attack_theta(
        model, dec, font, letter, theta, eps=0.3, steps=5, restarts=2
    )
    lower, upper = decoders.theta_box("hard")
    assert result.adversarial.shape == (n, 6)
    assert ((result.adversarial - theta).abs() <= 0.3 + 1e-6).all()
    assert (
        (result.adversarial >= lower - 1e-6) & (result.adversarial <= upper + 1e-6)
    ).all()
    torch.testing.assert_close(images, dec(font, letter, result.adversarial))
    predicted = models.predict(model, images)
    assert torch.equal(result.success, predicted != letter)


# ------------------------------------------------------- rendering and legibility


@pytest.fixture(scope="module")
def bundled():
    """Prototypes of matplotlib's bundled fonts (available wherever matplotlib is)."""
    files = glyphs.matplotlib_font_files()
    rendered = [r for r in (glyphs.render_font(f) for f in files) if r is not None]
    return torch.from_numpy(__import__("numpy").stack(rendered))


def test_rendering_is_bright_on_dark_and_centred(bundled):
    names = [f.name for f in glyphs.matplotlib_font_files()]
    protos = bundled[names.index("DejaVuSans.ttf"), :10]
    assert protos.shape == (10, 28, 28) and protos.min() >= 0 and protos.max() <= 1
    assert (protos.amax((1, 2)) > 0.99).all()  # ink ≈ 1
    border = torch.cat(
        [protos[:, 0], protos[:, -1], protos[:, :, 0], protos[:, :, -1]], 1
    )
    assert border.max() < 0.5  # dark background, glyph inside
    mass = protos.sum((1, 2))
    rows = (protos.sum(2) * torch.arange(28.0)).sum(1) / mass
    cols = (protos.sum(1) * torch.arange(28.0)).sum(1) / mass
    assert (rows - 13.5).abs().max() < 3 and (cols - 13.5).abs().max() < 3


def test_legibility_keeps_text_fonts_and_rejects_symbols_swaps_and_missing_glyphs(
    bundled,
):
    names = [f.name for f in glyphs.matplotlib_font_files()]
    protos, missing = bundled[:, :10].clone(), bundled[:, 10].clone()
    keep = dict(zip(names, glyphs.legible(protos, missing).tolist()))
    assert all(
        keep[n]
        for n in (
            "DejaVuSans.ttf",
            "DejaVuSansMono.ttf",
            "DejaVuSerif.ttf",
            "cmr10.ttf",
        )
    )
    assert not any(
        keep[n] for n in ("cmex10.ttf", "STIXSizOneSymReg.ttf", "STIXSizFourSymBol.ttf")
    )
    sans, serif = names.index("DejaVuSans.ttf"), names.index("DejaVuSerif.ttf")
    swapped = protos[sans][[1, 0, 2, 3, 4, 5, 6, 7, 8, 9]]  # B drawn where A belongs
    empty = missing[serif].expand(10, 28, 28)  # every letter is the missing box
    keep2 = glyphs.legible(
        torch.cat([protos, swapped[None], empty[None]]),
        torch.cat([missing, missing[sans][None], missing[serif][None]]),
    )
    assert not keep2[-1] and not keep2[-2] and keep2[sans]
    with pytest.raises(ValueError, match="prototypes"):
        glyphs.legible(protos[0], missing)


def test_render_prototypes_is_deterministic_and_checks_n_fonts():
    files = glyphs.matplotlib_font_files()
    a = glyphs.render_prototypes(files, n_fonts=3, seed=1)
    b = glyphs.render_prototypes(files, n_fonts=3, seed=1)
    assert (
        a.names == b.names
        and torch.equal(a.images, b.images)
        and a.images.shape == (3, 10, 28, 28)
    )
    assert len(set(a.names)) == 3
    with pytest.raises(ValueError, match="n_fonts"):
        glyphs.render_prototypes(files, n_fonts=0)


# ------------------------------------------ discovery, collections, manifest, filters


def make_collection(path, names=("DejaVuSans.ttf", "DejaVuSerif-Bold.ttf")):
    """A .ttc collection of two of matplotlib's fonts (fontTools ships with
    matplotlib)."""
    ttlib = pytest.importorskip("fontTools.ttLib")
    from fontTools.ttLib.ttCollection import TTCollection

    collection = TTCollection()
    collection.fonts = [ttlib.TTFont(glyphs.matplotlib_font_dir() / n) for n in names]
    collection.save(str(path))
    return path


def test_collections_contribute_every_face_with_its_index(tmp_path):
    folder = tmp_path / "fonts"
    (folder / "sub").mkdir(parents=True)
    ttc = make_collection(folder / "sub" / "pair.ttc")
    mono = glyphs.matplotlib_font_dir() / "DejaVuSansMono.ttf"
    shutil.copy(mono, folder / "Mono.TTF")
    (folder / "notes.txt").write_text("not a font")
    files = glyphs.find_font_files([folder])
    assert [f.name for f in files] == ["Mono.TTF", "pair.ttc"]
    faces = glyphs.discover_faces(font_dirs=[folder])
    assert [(Path(f.path).name, f.index) for f in faces] == [
        ("Mono.TTF", 0),
        ("pair.ttc", 0),
        ("pair.ttc", 1),
    ]
    assert [(f.family, f.style) for f in faces[1:]] == [
        ("DejaVu Sans", "Book"),
        ("DejaVu Serif", "Bold"),
    ]
    assert (
        faces[1].sha256
        == faces[2].sha256
        == hashlib.sha256(ttc.read_bytes()).hexdigest()
    )
    # face 1 of the collection renders exactly like the font file it came from
    second = glyphs.render_font(ttc, index=1)
    serif_bold = glyphs.matplotlib_font_dir() / "DejaVuSerif-Bold.ttf"
    assert np.array_equal(second, glyphs.render_font(serif_bold))
    assert not np.array_equal(second, glyphs.render_font(ttc, index=0))
    assert glyphs.render_font(ttc, index=2) is None
    with pytest.raises(ValueError, match="font_dirs"):
        glyphs.find_font_files([tmp_path / "absent"])
    with pytest.raises(ValueError, match="font_dirs"):
        glyphs.find_font_files(str(folder))


def test_near_duplicates_are_dropped_greedily_in_order():
    protos = random_prototypes(4, seed=3)
    close = (protos[0] + 0.01).clamp(0, 1)  # RMS difference about 0.01
    stack = torch.stack([protos[0], protos[1], close, protos[0], protos[2]])
    drop = glyphs.near_duplicates(stack, threshold=0.05)
    assert drop.tolist() == [False, False, True, True, False]
    assert not glyphs.near_duplicates(stack, threshold=0.0).any()
    # a face is compared only with faces kept before it: a chain a ~ b ~ c keeps c
    # when a and c are far
    a = torch.zeros(1, 10, 28, 28)
    chain = torch.cat([a, a + 0.04, a + 0.08])
    found = glyphs.near_duplicates(chain, threshold=0.05)
    assert found.tolist() == [False, True, False]
    with pytest.raises(ValueError, match="threshold"):
        glyphs.near_duplicates(stack, threshold=-1)


def test_prototypes_carry_a_manifest_and_counts_that_add_up(tmp_path, monkeypatch):
    folder = tmp_path / "fonts"
    shutil.copytree(
        glyphs.matplotlib_font_dir(), folder
    )  # the k-NN vote needs a few dozen faces
    shutil.copy(
        glyphs.matplotlib_font_dir() / "DejaVuSans.ttf", folder / "copy-of-sans.ttf"
    )
    (folder / "broken.ttf").write_bytes(b"not a font")
    make_collection(folder / "pair.ttc")  # two more faces, copies of matplotlib's
    n_files = len(glyphs.matplotlib_font_files()) + 3
    monkeypatch.setenv("ADVMANIFOLD_CACHE", str(tmp_path / "cache"))
    result = glyphs.load_prototypes(font_dirs=[folder])
    counts = result.counts
    assert counts["files"] == n_files and counts["faces"] == n_files + 1
    assert counts["unreadable"] == 1  # broken.ttf
    assert counts["near_duplicate"] >= 2  # at least the two extra DejaVu Sans
    assert counts["faces"] == sum(counts[n] for n in glyphs.FILTERS) + counts["kept"]
    names = [(m.family, m.style) for m in result.manifest]
    assert names.count(("DejaVu Sans", "Book")) == 1 and len(set(names)) == len(names)
    assert len(result) == counts["kept"] == result.images.shape[0]
    frame = result.manifest_frame()
    assert list(frame.columns) == ["path", "index", "family", "style", "sha256"]
    assert {("DejaVu Sans", "Book"), ("DejaVu Serif", "Book")} <= set(names)
    for row in frame.itertuples():
        assert row.sha256 == hashlib.sha256(Path(row.path).read_bytes()).hexdigest()
        images = glyphs.render_font(row.path, index=row.index)[
            :10
        ]  # manifest row i ↔ images[i]
        assert np.array_equal(images, result.images[row.Index].numpy())
    # the book's unit of the same folder: built once, then read from the cache
    from advmanifold.chapters import fonts

    unit = fonts.prototypes_unit([folder])
    assert not unit.is_cached()
    built = glyphs.prototypes_from_payload(unit.get())
    assert unit.is_cached() and torch.equal(built.images, result.images)
    again = glyphs.prototypes_from_payload(unit.get())
    assert (
        again.manifest == result.manifest
        and again.counts == counts
        and torch.equal(again.images, result.images)
    )


def test_deny_list_and_debian_package_list():
    assert (
        glyphs.denied("Foo Dingbats")
        and glyphs.denied("Weaver BRK")
        and not glyphs.denied("DejaVu Sans")
    )
    faces = glyphs.discover_faces(glyphs.matplotlib_font_files()[:4])
    with pytest.raises(RuntimeError, match="no usable font"):
        glyphs.render_prototypes(faces, deny=tuple({f.family.lower() for f in faces}))
    packages = glyphs.debian_font_packages()
    assert len(packages) > 50 and len(set(packages)) == len(packages)
    assert all(
        p.startswith("fonts-") and "#" not in p and " " not in p for p in packages
    )
    assert "fonts-urw-base35" in packages and "fonts-dejavu-core" not in packages


def test_prototypes_payload_from_its_config_alone_matches_load_prototypes(
    tmp_path, monkeypatch
):
    """The config lists files sorted as strings; the build must filter the faces in
    find_font_files' (Path) order, or one cache key could hold two payloads."""
    for sub, name in [
        ("a", "DejaVuSans.ttf"),
        ("a-b", "DejaVuSerif.ttf"),
        ("a", "DejaVuSansMono.ttf"),
    ]:
        (tmp_path / "fonts" / sub).mkdir(parents=True, exist_ok=True)
        source = glyphs.matplotlib_font_dir() / name
        shutil.copy(source, tmp_path / "fonts" / sub / name)
    files = glyphs.find_font_files([tmp_path / "fonts"])
    config = glyphs.prototypes_config(files)
    assert [p for p, _ in config["files"]] != [str(f) for f in files]  # orders differ
    monkeypatch.setenv("ADVMANIFOLD_CACHE", str(tmp_path / "cache"))
    loaded = glyphs.load_prototypes(font_dirs=[tmp_path / "fonts"])
    payload = glyphs.prototypes_payload(config)
    assert torch.equal(payload["images"], loaded.images)
    assert glyphs.prototypes_from_payload(payload).manifest == loaded.manifest
