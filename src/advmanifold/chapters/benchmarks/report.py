"""What the benchmarks report: the machine they ran on (:func:`machine_metrics`),
whole-book times from the runner's logs (:func:`book_times`,
:func:`book_chapter_times`), the targets (:data:`TARGETS`, :func:`targets`) and
``benchmarks.json`` (:func:`write_json`)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any, Mapping

from ...book import paths
from .sizes import PIECES


def machine_metrics() -> dict[str, Any]:
    """What the numbers were measured on, as the benchmarks' metrics: the CPU, the
    cores this process may use, torch's threads now, and the versions
    (:func:`advmanifold.book.results.machine` and ``versions``)."""
    import platform

    import numpy
    import torch

    from ...book.results import machine

    found = machine()
    return {
        "cpu_model": found["cpu"],
        "cores_available": found["cores_available"],
        "threads": found["torch_threads"],
        "torch_version": torch.__version__,
        "numpy_version": numpy.__version__,
        "python_version": platform.python_version(),
        "platform": found["os"],
    }


# ---------------------------------------- whole book


def book_times(directory: str | os.PathLike | None = None) -> dict[str, dict[str, Any]]:
    """The runner's logs found in the results folder
    (:func:`advmanifold.book.results.read_book_run`): profile → log."""
    from ...book.profiles import PROFILES
    from ...book.results import book_run_path, read_book_run

    return {
        profile: read_book_run(profile, directory)
        for profile in PROFILES
        if book_run_path(profile, directory).is_file()
    }


def book_chapters(root: str | os.PathLike | None = None) -> list[str]:
    """Stems of the notebook chapters in the book's ``_toc.yml`` (empty if none)."""
    from ...book.toc import chapters

    try:
        return [c.stem for c in chapters(Path(root) if root else paths.book_root())]
    except SystemExit:  # BookError: no _toc.yml here
        return []


def book_chapter_times(
    metrics: dict[str, Any], notes: list[str]
) -> list[dict[str, Any]]:
    """The book piece: the rows of per-chapter times of each profile's run log; the
    chapters logged and, for a complete log, the whole book's minutes go into
    ``metrics``, what is missing into ``notes``."""
    chapters: list[dict[str, Any]] = []
    expected = book_chapters()
    for profile, log_entry in book_times().items():
        ran = set(log_entry["chapters_s"])
        missing = [c for c in expected if c not in ran]
        chapters += [
            {"profile": profile, "chapter": c, "seconds": s}
            for c, s in log_entry["chapters_s"].items()
        ]
        metrics[f"book_{profile}_chapters_logged"] = len(ran)
        # a partial log (`--only`) is no whole-book time: report it, judge nothing
        if missing:
            metrics[f"book_{profile}_partial_minutes"] = log_entry["total_s"] / 60
            notes.append(
                f"book run log of profile {profile} lacks {len(missing)} "
                f"of {len(expected)} chapters "
                f"({', '.join(missing)}): no whole-book time for it"
            )
        else:  # the fan-out, then the chapters (which may overlap it)
            whole = log_entry.get("units_s", 0.0) + log_entry["total_s"]
            metrics[f"book_{profile}_minutes"] = whole / 60
    if not chapters:
        notes.append(
            "no book run log (_build/results/book_run_<profile>.json) "
            "yet: "
            "run `make book` first"
        )
    return chapters


# ---------------------------------------- targets

#: (metric, comparison, threshold, what it means) — checked by :func:`targets`.
TARGETS = (
    (
        "pgd_speedup_vs_torchattacks",
        ">=",
        2.5,
        "PGD at least 2.5× faster than torchattacks",
    ),
    (
        "pgd_same_or_better_fooled_set",
        ">=",
        1,
        "PGD fools the same examples as torchattacks (or more)",
    ),
    (
        "knn_speedup_vs_original",
        ">=",
        10.0,
        "k-NN distance at least 10× faster than the original pipeline",
    ),
    ("knn_ours_neighbour_overlap", ">=", 1.0, "our k-NN neighbours are the exact ones"),
    (
        "alignment_step_over_plain",
        "<=",
        2.5,
        "alignment-loss step at most 2.5× a plain step",
    ),
    (
        "unit_speedup_1t",
        ">=",
        2.0,
        "OnAdvTrain unit (paper settings, N = 2,500) at least 2× faster than before, "
        "both at one thread",
    ),
    (
        "ceiling_speedup",
        ">=",
        2.0,
        "that 2× within reach of decoder and engine changes: the OnAdvTrain attack "
        "with views off over the classifier's 40 steps alone, one thread",
    ),
    (
        "max_fraction_of_peak",
        "<=",
        1.0,
        "every fraction of peak at most 1 (the peak covers the workloads' GEMMs)",
    ),
    (
        "denormal_every_thread_max_count",
        "<=",
        0,
        "no denormal in the weights or Adam's state with the flush on every thread",
    ),
    (
        "book_quick_minutes",
        "<=",
        15.0,
        "whole book, profile quick: units and chapters (units_s + total_s) within "
        "15 minutes",
    ),
    (
        "book_smoke_minutes",
        "<=",
        5.0,
        "whole book, profile smoke: units and chapters within 5 minutes",
    ),
)


def targets(metrics: Mapping[str, float]) -> list[dict[str, Any]]:
    """One row per target whose metric was measured: value, threshold, met (bool)."""
    rows = []
    for name, op, threshold, meaning in TARGETS:
        if name in metrics:
            value = metrics[name]
            met = value >= threshold if op == ">=" else value <= threshold
            rows.append(
                {
                    "metric": name,
                    "value": value,
                    "target": f"{op} {threshold:g}",
                    "met": bool(met),
                    "meaning": meaning,
                }
            )
    return rows


#: metric-name prefixes written by each piece (to replace a piece's numbers on a
#: partial re-run)
PIECE_PREFIXES = {
    "pgd": ("pgd_", "matmul_"),
    "knn": ("knn_",),
    "decoder": ("decoder_",),
    "steps": ("step_", "plain_step", "alignment_", "adversarial_step"),
    "convnet": (
        "peak_",
        "load_",
        "attack_step",
        "train_step",
        "adv_train_step",
        "convnet_",
        "lever_",
        "attack_steps_per_s",
        "processes_over",
        "unit_",
        "cuda_",
        "max_fraction",
    ),
    "denormals": ("denormal_",),
    "book": ("book_",),
}


def write_json(
    run: Mapping[str, Any],
    path: str | os.PathLike | None = None,
    *,
    pieces: tuple[str, ...] = PIECES,
) -> Path:
    """``benchmarks.json``: metrics (flat), settings, targets, notes, per-chapter book
    times.

    When only some ``pieces`` ran, the other pieces' metrics already in the file are
    kept
    (this run's pieces replace theirs) and the targets are recomputed from the merge."""
    from ...book.results import atomic_write_text, versions

    path = Path(path) if path else paths.results_dir() / "benchmarks.json"
    metrics = dict(run["metrics"])
    if set(pieces) != set(PIECES) and path.is_file():
        old = json.loads(path.read_text())
        prefixes = tuple(x for p in pieces for x in PIECE_PREFIXES[p])
        others = tuple(x for q in PIECES if q not in pieces for x in PIECE_PREFIXES[q])
        kept = {
            k: v
            for k, v in old.items()
            if isinstance(v, (int, float))
            and not isinstance(v, bool)
            and k.startswith(others)
            and not k.startswith(prefixes)
        }
        metrics = {**kept, **metrics}
    record = {
        **metrics,
        "settings": run["settings"],
        "pieces": list(pieces),
        "targets": targets(metrics),
        "notes": run["notes"],
        "book_chapters_s": run["chapters"].to_dict(orient="records"),
        **{f"version_{k}": v for k, v in versions().items()},
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    atomic_write_text(path, json.dumps(record, indent=1, default=float) + "\n")
    return path
