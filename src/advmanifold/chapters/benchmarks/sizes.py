"""The appendix's settings: the full sizes of the benchmarks (:data:`FULL`), the
pieces (:data:`PIECES`), the sizes of each profile (:data:`PROFILE_SETTINGS`) and
:func:`settings`, which picks them for a profile."""

from __future__ import annotations

from ...book.profiles import (
    Setting,
    Settings,
    flag,
    integer,
    integers,
    number,
    optional,
)

#: the appendix notebook's stem (its units are listed under it)
STEM = "90_benchmarks"

#: the PGD setting of the issue: L∞ ε, step size, steps
PGD_SETTING = {"eps": 0.1, "step_size": 0.01, "steps": 40}

#: The sizes of the issue ("full size"); the notebook scales them per profile.
FULL = {
    "pgd_examples": 1000,
    "pgd_steps": 40,
    "pgd_repeats": 5,
    "knn_examples": 1000,
    "knn_train": 60000,
    "knn_repeats": 3,
    "decoder_examples": 1000,
    "decoder_restarts": 3,
    "decoder_steps": 100,
    "decoder_fonts": 100,
    "decoder_repeats": 3,
    "step_batch_size": 128,
    "step_inner": 5,
    "step_repeats": 5,
    "mlp_train": 60000,
    "warmup": 1,
    # per-piece warm-up rounds (None: ``warmup``); a full-size k-NN or decoder round
    # takes tens of seconds, so short runs may skip their warm-up
    "pgd_warmup": None,
    "knn_warmup": None,
    "decoder_warmup": None,
    "step_warmup": None,
    "decoder_bundled_fonts": False,
    # the FONTS ConvNet against the machine (convnet, levers and unit modules):
    # square SGEMM sizes of the peak, timed rounds, the limit of a cold torch.compile
    # (None: not run), seconds of processes against threads, the OnAdvTrain unit
    # (epochs of its 20; each run stops after the budget and is scaled, None: never)
    "convnet_peak_sizes": (1024, 2048, 3072),
    "convnet_repeats": 5,
    "convnet_compile_s": 60.0,
    "convnet_parallel_s": 8.0,
    "convnet_unit_n": 2500,
    "convnet_unit_epochs": 20,
    "convnet_unit_budget_s": None,
    "convnet_pgd_steps": 40,  # of the adversarial steps and the unit's attacks
    # Adam at two threads with and without flushed denormals, one process each
    "denormal_steps": 200,
    "denormal_window": 20,
}
PIECES = ("pgd", "knn", "decoder", "steps", "convnet", "denormals", "book")

#: sizes of the appendix notebook per profile (our choice): paper uses the full sizes;
#: quick is bounded by time (issue 27: every measurement but the cold torch.compile,
#: which the page says it skipped, in about a minute: smaller PGD, k-NN, decoder and
#: step pieces at one thread, single rounds, runs of the unit cut after seconds and
#: scaled to one epoch, a short denormal run); smoke only checks the code path
PROFILE_SETTINGS = {
    "smoke": {
        "pgd_examples": 32,
        "pgd_steps": 10,
        "pgd_repeats": 1,
        "knn_examples": 16,
        "knn_train": 1000,
        "knn_repeats": 1,
        "decoder_examples": 16,
        "decoder_restarts": 1,
        "decoder_steps": 5,
        "decoder_fonts": 4,
        "decoder_repeats": 1,
        "decoder_bundled_fonts": True,
        "step_batch_size": 32,
        "step_inner": 1,
        "step_repeats": 1,
        "mlp_train": 2000,
        "warmup": 0,
        "convnet_peak_sizes": (256, 512),
        "convnet_repeats": 1,
        "convnet_compile_s": None,
        "convnet_parallel_s": None,
        "convnet_unit_n": 100,
        "convnet_unit_epochs": 1,
        "convnet_unit_budget_s": 2.0,
        "convnet_pgd_steps": 2,
        "denormal_steps": 20,
        "denormal_window": 10,
        "threads": None,
    },
    "quick": {
        **FULL,
        # bounded by time (issue 27): every measurement of paper (but the cold
        # compile, below), with the fewest rounds and the shortest runs that still
        # give each one
        "pgd_examples": 100,
        "pgd_repeats": 2,
        "knn_examples": 100,
        "knn_train": 10000,  # the original's PCA fit and tree grow with it
        "knn_repeats": 1,
        "knn_warmup": 0,
        "decoder_examples": 200,
        "decoder_restarts": 1,
        "decoder_repeats": 1,
        "decoder_warmup": 0,
        "step_inner": 2,
        "step_repeats": 2,
        "mlp_train": 10000,  # part of the benchmark MLP's cache key: keep
        "convnet_peak_sizes": (1024,),
        "convnet_repeats": 1,
        # not timed: a cold torch.compile of the attack view takes tens of seconds
        # with torch's caches empty (a cold machine), a third of quick's minute;
        # paper times it, and the page says that quick did not
        "convnet_compile_s": None,
        "convnet_parallel_s": 0.5,
        "convnet_unit_epochs": 1,
        "convnet_unit_budget_s": 1.5,  # every run, scaled to the epoch
        "denormal_steps": 20,
        "denormal_window": 5,
        # the comparisons at one thread: a team of two threads on a shared machine
        # waits at every barrier for its descheduled member (see processes against
        # threads in the appendix)
        "threads": 1,
    },
    "paper": {
        **FULL,
        "pgd_repeats": 5,
        "knn_repeats": 3,
        "decoder_repeats": 3,
        "step_repeats": 5,
        "threads": None,
    },
}


#: settings that count something (examples, steps, rounds, images): integers >= 1
_COUNTS = (
    *("pgd_examples", "pgd_steps", "pgd_repeats"),
    *("knn_examples", "knn_train", "knn_repeats"),
    *("decoder_examples", "decoder_restarts", "decoder_steps", "decoder_fonts"),
    *("decoder_repeats", "step_batch_size", "step_inner", "step_repeats"),
    *("mlp_train", "convnet_repeats", "convnet_unit_n", "convnet_pgd_steps"),
    *("denormal_steps", "denormal_window"),
)
_WARMED = ("pgd", "knn", "decoder", "step")  # pieces with their own warm-up rounds

#: The appendix's settings (:class:`advmanifold.book.profiles.Settings`):
#: ``settings(profile, **overrides)``, ``settings.from_params(profile, params)``;
#: ``repeats`` sets the timed rounds of every piece at once.
settings = Settings(
    PROFILE_SETTINGS,
    *(Setting(name, integer(1)) for name in _COUNTS),
    Setting("warmup", integer(0)),
    *(Setting(f"{p}_warmup", optional(integer(0))) for p in _WARMED),
    Setting("decoder_bundled_fonts", flag()),
    Setting("convnet_peak_sizes", integers(1, as_tuple=True)),
    Setting("convnet_compile_s", optional(number(gt=0))),
    Setting("convnet_parallel_s", optional(number(gt=0))),
    Setting("convnet_unit_epochs", integer(1, 20)),  # of the unit's 20
    Setting("convnet_unit_budget_s", optional(number(gt=0))),
    Setting("threads", optional(integer(1)), overridable=True),
    Setting(
        "repeats",
        optional(integer(1)),
        overridable=True,
        sets=("pgd_repeats", "knn_repeats", "decoder_repeats", "step_repeats"),
    ),
)
