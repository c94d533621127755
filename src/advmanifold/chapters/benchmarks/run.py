"""Everything at once: :func:`run_benchmarks` runs the chosen pieces in order on a
fixed number of threads and gathers their metrics, raw timings, notes and targets
(``benchmarks/run.py`` at full size, the appendix notebook at its profile's sizes)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import torch
from torch import Tensor

from ...science import compute
from .convnet import convnet_piece, fractions_of_peak
from .denormals import denormal_comparison
from .pieces import (
    decoder_benchmark,
    knn_benchmark,
    pgd_benchmark,
    training_step_benchmark,
)
from .references import MissingDependency, require_torchattacks
from .report import book_chapter_times, machine_metrics, targets
from .sizes import FULL, PGD_SETTING, PIECES
from .workloads import decoder_and_source, trained_mlp


@dataclass
class _Run:
    """What the pieces of one :func:`run_benchmarks` call share: settings, the
    metrics, rows and notes gathered so far, the MNIST arrays and PGD's examples."""

    cfg: dict[str, Any]
    threads: int
    seed: int
    data_dir: Any
    log: Callable[[str], None]
    metrics: dict[str, Any] = field(default_factory=dict)
    rows: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    mnist: tuple[Tensor, Tensor, Tensor, Tensor] | None = None
    adversarial: Tensor | None = None
    open_piece: list[tuple[str, float]] = field(default_factory=list)

    def add(self, metrics: Mapping[str, Any], rows: list[dict[str, Any]]) -> None:
        """Keep a piece's metrics and timing rows."""
        self.metrics.update(metrics)
        self.rows += rows

    def note(self, text: str) -> None:
        """Keep a note and log it."""
        self.notes.append(text)
        self.log(f"note: {text}")

    def lap(self, name: str | None = None) -> None:
        """Close the running piece (metric ``<piece>_wall_s``), open ``name``."""
        now = time.perf_counter()
        if self.open_piece:
            piece, start = self.open_piece.pop()
            self.metrics[f"{piece}_wall_s"] = now - start
        if name:
            self.open_piece.append((name, now))


def _benchmark_settings(
    settings: Mapping[str, Any] | None, pieces: tuple[str, ...]
) -> dict[str, Any]:
    """Check ``pieces`` and ``settings``; :data:`FULL` overridden by ``settings``,
    each piece's warm-up defaulting to ``warmup``."""
    unknown = [p for p in pieces if p not in PIECES]
    if unknown:
        raise ValueError(f"pieces must be among {PIECES}, got {unknown}")
    unknown = sorted(set(settings or {}) - set(FULL))
    if unknown:
        raise ValueError(
            f"unknown benchmark setting(s) {unknown}; valid: {sorted(FULL)}"
        )
    cfg = {**FULL, **(settings or {})}
    for piece in ("pgd", "knn", "decoder", "step"):
        if cfg[f"{piece}_warmup"] is None:
            cfg[f"{piece}_warmup"] = cfg["warmup"]
    return cfg


def _run_pgd(run: _Run) -> None:
    """The PGD piece: our attack against torchattacks on the trained MLP."""
    cfg, seed = run.cfg, run.seed
    _, _, x_test, y_test = run.mnist
    n_train = cfg["mlp_train"]
    run.log(f"training (or loading) the MLP on {n_train} images ...")
    model = trained_mlp(n_train, data_dir=run.data_dir, seed=seed)
    x, y = x_test[: cfg["pgd_examples"]], y_test[: cfg["pgd_examples"]]
    run.log(f"PGD on {len(x)} images ...")
    try:
        require_torchattacks()
        reference = True
    except MissingDependency as err:
        run.note(str(err))
        reference = False
    found: dict[str, Any] = {}
    run.add(
        *pgd_benchmark(
            model,
            x,
            y,
            **{**PGD_SETTING, "steps": cfg["pgd_steps"]},
            repeats=cfg["pgd_repeats"],
            warmup=cfg["pgd_warmup"],
            seed=seed,
            reference=reference,
            out=found,
        )
    )
    run.adversarial = found["ours"].adversarial


def _run_knn(run: _Run) -> None:
    """The k-NN piece, on PGD's examples (or random L∞ sign noise without them)."""
    cfg = run.cfg
    x_train, _, x_test, _ = run.mnist
    n = cfg["knn_examples"]
    x = x_test[:n]
    adversarial = run.adversarial
    if adversarial is None or len(adversarial) < n:  # random L∞ sign noise
        g = torch.Generator().manual_seed(run.seed)
        sign = torch.randint(0, 2, x.shape, generator=g) * 2 - 1
        perturbed = (x + PGD_SETTING["eps"] * sign).clamp(0, 1)
        run.notes.append(
            "k-NN: perturbed examples are random L∞ sign noise (PGD piece not run)"
        )
    else:
        perturbed = adversarial[:n]
    run.log(
        f"k-NN distance of {n} examples against {cfg['knn_train']} training images ..."
    )
    run.add(
        *knn_benchmark(
            perturbed,
            x,
            x_train[: cfg["knn_train"]],
            repeats=cfg["knn_repeats"],
            warmup=cfg["knn_warmup"],
        )
    )


def _run_decoder(run: _Run) -> None:
    """The FONTS decoder piece (skipped with a note when no fonts load)."""
    cfg = run.cfg
    run.log(f"FONTS decoder projection of {cfg['decoder_examples']} examples ...")
    try:
        decoder, source = decoder_and_source(
            cfg["decoder_fonts"],
            bundled_only=cfg.get("decoder_bundled_fonts", False),
        )
    except Exception as err:  # noqa: BLE001 - no fonts: say so, run the rest
        run.note(f"FONTS decoder benchmark skipped: {type(err).__name__}: {err}")
        return
    run.notes.append(f"FONTS decoder on {decoder.n_fonts} {source} fonts")
    run.add(
        *decoder_benchmark(
            decoder,
            n_examples=cfg["decoder_examples"],
            restarts=cfg["decoder_restarts"],
            steps=cfg["decoder_steps"],
            repeats=cfg["decoder_repeats"],
            warmup=cfg["decoder_warmup"],
            seed=run.seed,
        )
    )


def _run_steps(run: _Run) -> None:
    """The training-step piece: plain, alignment and adversarial steps."""
    from ...science.manifolds.linear import LinearManifold

    cfg = run.cfg
    x_train, y_train, _, _ = run.mnist
    run.log("training steps: plain, alignment, adversarial ...")
    manifold = LinearManifold.fit(x_train[:10000], k=28)
    run.add(
        *training_step_benchmark(
            x_train,
            y_train,
            manifold,
            batch_size=cfg["step_batch_size"],
            inner=cfg["step_inner"],
            repeats=cfg["step_repeats"],
            warmup=cfg["step_warmup"],
            seed=run.seed,
        )
    )


def _run_convnet(run: _Run) -> None:
    """The ConvNet piece (:func:`convnet_piece`), with PGD's rate beside its own."""
    pgd = {}
    if "pgd_ours_gflops" in run.metrics:
        pgd = {run.threads: {"pgd": run.metrics["pgd_ours_gflops"]}}
    m, r, n = convnet_piece(run.cfg, run.log, run.seed, pgd)
    run.add(m, r)
    run.notes += n
    run.metrics["max_fraction_of_peak"] = max(fractions_of_peak(run.metrics).values())


def _run_denormals(run: _Run) -> None:
    """The denormal piece: Adam with and without flushing denormals."""
    run.log("Adam at two threads: no flush, main thread only, every thread ...")
    run.add(*denormal_comparison(run.cfg["denormal_steps"], run.cfg["denormal_window"]))


#: the timed pieces in the order they run: piece → (wall-time name, runner)
_PIECE_RUNNERS: dict[str, tuple[str, Callable[[_Run], None]]] = {
    "pgd": ("pgd", _run_pgd),
    "knn": ("knn", _run_knn),
    "decoder": ("decoder", _run_decoder),
    "steps": ("step", _run_steps),
    "convnet": ("convnet", _run_convnet),
    "denormals": ("denormal", _run_denormals),
}


def run_benchmarks(
    settings: Mapping[str, Any] | None = None,
    *,
    threads: int | None = None,
    pieces: tuple[str, ...] = PIECES,
    data_dir=None,
    seed: int = 0,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Run the benchmark ``pieces`` with ``settings`` (default :data:`FULL`) on
    ``threads`` threads (default: every core available). Returns ``{"metrics": {...},
    "timings": DataFrame of raw seconds, "targets": [...], "notes": [...], "chapters":
    DataFrame}``; a piece whose reference is not installed is skipped with a note."""
    import pandas as pd

    from ...science.data import load_mnist

    cfg = _benchmark_settings(settings, pieces)
    threads = compute.cores() if threads is None else threads
    run = _Run(cfg, threads, seed, data_dir, log)
    started = time.perf_counter()
    if "knn" in pieces:
        # loaded before the thread limit, which covers only the libraries loaded
        # when it is set (scipy brings its own OpenBLAS)
        from sklearn.decomposition import IncrementalPCA  # noqa: F401
        from sklearn.neighbors import KDTree  # noqa: F401
    with compute.threads(threads):
        run.metrics.update(machine_metrics())
        if any(p in pieces for p in ("pgd", "knn", "steps")):
            run.mnist = (*load_mnist(True, data_dir), *load_mnist(False, data_dir))
        for piece, (name, runner) in _PIECE_RUNNERS.items():
            if piece in pieces:
                run.lap(name)
                runner(run)
    run.lap()
    chapters = book_chapter_times(run.metrics, run.notes) if "book" in pieces else []
    run.metrics["benchmark_wall_s"] = time.perf_counter() - started
    return {
        "metrics": run.metrics,
        "timings": pd.DataFrame(run.rows),
        "targets": targets(run.metrics),
        "notes": run.notes,
        "chapters": pd.DataFrame(chapters, columns=["profile", "chapter", "seconds"]),
        "settings": {**cfg, "threads": threads, "seed": seed},
    }
