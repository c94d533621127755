"""What the FONTS chapter (``notebooks/01_fonts``) records and says: the fonts used,
their source and the fallback warning, the filter table, and the distances' medians."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Mapping

from ..science import glyphs, google_fonts
from ..book.units import Unit
from .fonts import fonts_wanted, n_used


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
