"""Benchmarks: the package against what a researcher would otherwise use (the
appendix ``notebooks/90_benchmarks``, ``benchmarks/run.py``, ``make benchmarks``).

Every comparison runs its candidates *interleaved* on the same data in the same
process: after ``warmup`` untimed rounds, each of ``repeats`` rounds times every
candidate once (in a rotating order), and a ratio is computed per round,

    speed-up_r = t_reference,r / t_ours,r,

so load from other processes hits both sides of a ratio alike. We report the median
over rounds with min and max. The thread count is fixed with
``torch.set_num_threads`` (:func:`advmanifold.science.compute.threads`) and recorded
in the metrics (:func:`~.report.machine_metrics`).

Modules, in the order a run needs them:

- :mod:`.sizes`: :data:`STEM`, the full sizes :data:`FULL`, the :data:`PIECES` and
  the sizes per profile (:func:`settings`);
- :mod:`.harness`: the one timing harness (:data:`Timed`, the timing loops, fresh
  processes) and :mod:`.fresh`, the programs those processes run (``python -m``);
- :mod:`.workloads`: the benchmark MLP and font prototypes (the appendix's
  :func:`units`), the FONTS decoder, the ConvNet and its steps;
- :mod:`.references`: torchattacks and the original k-NN pipeline;
- :mod:`.pieces`: PGD, k-NN, decoder projection and training steps against those;
- :mod:`.convnet`, :mod:`.levers`, :mod:`.ceiling`, :mod:`.unit`,
  :mod:`.denormals`: the FONTS ConvNet against the machine's peak, the attack-step
  levers, the OnAdvTrain attack against its floor (and bfloat16), the OnAdvTrain unit
  before and after, denormals at two threads;
- :mod:`.report`: the machine, the book's times, the targets, ``benchmarks.json``;
- :mod:`.run`: :func:`run_benchmarks`, everything at once.
"""

from __future__ import annotations

from .convnet import (
    convnet_piece,
    convnet_rates,
    flops,
    fractions_of_peak,
    gemm_shapes,
    matmul_gflops,
)
from .denormals import DENORMAL_SETTINGS, denormal_comparison
from .harness import Timed, interleaved, ratios, summary, timing_rows
from .levers import attack_levers, lever_names
from .pieces import (
    decoder_benchmark,
    knn_benchmark,
    pgd_benchmark,
    training_step_benchmark,
)
from .references import (
    MissingDependency,
    knn_original,
    neighbour_overlap,
    require_torchattacks,
)
from .report import (
    PIECE_PREFIXES,
    TARGETS,
    book_chapters,
    book_times,
    machine_metrics,
    targets,
    write_json,
)
from .run import run_benchmarks
from .sizes import FULL, PGD_SETTING, PIECES, PROFILE_SETTINGS, STEM, settings
from .unit import unit_time
from .workloads import decoder_and_source, mlp_flops, mlp_unit, trained_mlp, units

#: The appendix times things: the runner gives it the machine to itself, after every
#: unit of the run is built (:func:`advmanifold.chapters.runs_alone`).
RUNS_ALONE = True

__all__ = [
    "DENORMAL_SETTINGS",
    "FULL",
    "MissingDependency",
    "PGD_SETTING",
    "PIECES",
    "PIECE_PREFIXES",
    "PROFILE_SETTINGS",
    "STEM",
    "TARGETS",
    "Timed",
    "attack_levers",
    "book_chapters",
    "book_times",
    "convnet_piece",
    "convnet_rates",
    "decoder_benchmark",
    "denormal_comparison",
    "flops",
    "fractions_of_peak",
    "gemm_shapes",
    "interleaved",
    "knn_benchmark",
    "knn_original",
    "lever_names",
    "decoder_and_source",
    "machine_metrics",
    "matmul_gflops",
    "mlp_flops",
    "mlp_unit",
    "neighbour_overlap",
    "pgd_benchmark",
    "ratios",
    "require_torchattacks",
    "run_benchmarks",
    "settings",
    "summary",
    "targets",
    "timing_rows",
    "training_step_benchmark",
    "trained_mlp",
    "unit_time",
    "units",
    "write_json",
]
