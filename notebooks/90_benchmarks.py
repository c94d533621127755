# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Benchmarks
#
# How fast is the companion package compared with what a researcher would otherwise use?
# This page times each piece against its natural replacement, in one run, on the same
# data and machine, with a fixed number of threads:
#
# - **PGD** ({cite}`madry2018towards`; L∞ ε = 0.1, step 0.01, 40 steps, random start,
#   on the 784-1568-1568-10 MLP of {cite}`geyer2023relationship` trained for one epoch
#   on MNIST): `advmanifold.science.attacks.pgd`, which stops per example at the first
#   label change (the setting of {cite}`stutz2019disentangling`), against
#   `torchattacks.PGD`, which runs every step for every example; and the attack's
#   arithmetic throughput (FLOPs of a forward and an input-backward pass per example and
#   step, divided by time) against a plain `torch.mm` of similar shape measured in the
#   same rounds.
# - **k-NN subspace distance** (k = 50 nearest of the 60,000 MNIST training images, as
#   in {cite}`stutz2019disentangling`): our exact batched search and batched SVD
#   projection against the original pipeline, IncrementalPCA with 40 components, a
#   kd-tree in that space and a per-example QR in NumPy.
# - **FONTS decoder projection**: examples per second of the latent search
#   (Adam on θ from the true θ and random restarts).
# - **Training steps**: a step with the alignment loss of {cite}`geyer2023relationship`
#   (double backpropagation) and a PGD-10 adversarial-training step, each over a plain
#   cross-entropy step, on the MLP at batch 128.
# - **The FONTS ConvNet against the machine**, the workload the generalization chapter
#   repeats hundreds of times: the machine's peak, the ConvNet's training,
#   attack and adversarial-training steps as fractions of it, the levers that make an
#   attack step faster (one at a time), processes against threads, and one OnAdvTrain
#   unit of the paper profile before and after this package's attack views.
# - **Denormal floats at two threads**: Adam in a fresh process without a flush, with
#   the flush on the calling thread only, and with
#   `advmanifold.science.compute.flush_denormals` (every OpenMP thread).
# - **The whole book**: execution time per profile and chapter, read from the runner's
#   log.
#
# Candidates run *interleaved*: after a warm-up round, every round times each candidate
# once, and a ratio is computed per round, so load from other processes hits both sides
# of a ratio alike. We report the median over rounds with its min and max. The targets
# are this book's own choices, not the papers'. The same functions run at full size with
# `make benchmarks` (`python3 benchmarks/run.py`), which writes
# `_build/results/benchmarks.json`; this page runs them with profile-dependent sizes
# (in `quick`, smaller pieces whose comparisons run on one thread, runs cut short and
# scaled, and no cold `torch.compile`, so that the page takes a minute or two; the
# time of each piece is in the table at the end).

# %% tags=["remove-cell"]
import sys, subprocess
if "google.colab" in sys.modules:  # on Colab: install the package and torchattacks
    subprocess.run([sys.executable, "-m", "pip", "install", "-q",
                    "git+https://github.com/adversarial-manifolds/companion.git"],
                   check=True)
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps",
                    "torchattacks>=3.5"], check=True)

# %% tags=["parameters"]
profile = "quick"
seed = 0
device = "cpu"
data_dir = None
threads = None   # threads of the comparisons; None: the profile's (quick 1, else all)
repeats = None   # timed rounds per comparison; None: from the profile

# %% tags=["hide-input"]
import json
import textwrap

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
import torch
from IPython.display import Markdown, display
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter
from myst_nb import glue

from advmanifold.chapters import benchmarks as benchmarking
from advmanifold.book import figures, paths, profiles
from advmanifold.book.results import Results

if device != "cpu":
    raise ValueError(f"device must be 'cpu' (the benchmarks compare CPU "
                     f"implementations), got {device!r}")
S = benchmarking.settings.from_params(profile, dict(threads=threads, repeats=repeats))
torch.manual_seed(seed)
res = Results("90_benchmarks", profile=profile, seed=seed)
settings = {k: v for k, v in vars(S).items() if k in benchmarking.FULL}
pieces = {}  # the settings, one line per piece
for key, value in settings.items():
    piece, _, name = key.partition("_")
    pieces.setdefault(piece, []).append(f"{name or piece} = {value}")
with pd.option_context("display.max_colwidth", None):
    display(pd.Series({p: ", ".join(v) for p, v in pieces.items()}, name="settings")
            .rename_axis("piece").to_frame())

# %%
run = benchmarking.run_benchmarks(settings, threads=S.threads, data_dir=data_dir,
                                  seed=seed)

# %% tags=["hide-input"]
metrics = run["metrics"]
for name, value in metrics.items():
    if (isinstance(value, (int, float)) and not isinstance(value, bool)
            and np.isfinite(value)):
        res.add(name, value)
res.add_table("timings", run["timings"])
res.add_table("targets", pd.DataFrame(run["targets"]))
res.add_table("book_chapters", run["chapters"])
for note in run["notes"]:
    print(textwrap.fill(f"note: {note}", 88, subsequent_indent="  "))


def spread(name, fmt=".2f"):
    """'median (min–max)' of a metric, or a note that it was not measured."""
    if name not in metrics:
        return "not measured"
    return (f"{metrics[name]:{fmt}} (min {metrics[name + '_min']:{fmt}}, "
            f"max {metrics[name + '_max']:{fmt}})")


# %% [markdown]
# ## The machine

# %% tags=["remove-input"]
display(Markdown(
    f"Measured on **{metrics['cpu_model']}** ({metrics['cores_available']} cores "
    f"available to this process), with **{metrics['threads']}** thread(s) for torch "
    f"and NumPy's BLAS, torch {metrics['torch_version']}, NumPy "
    f"{metrics['numpy_version']}, Python {metrics['python_version']} "
    f"({metrics['platform']}); profile `{profile}`. Timings on a machine shared with "
    "other processes are noisy: the ratios below, measured in the same interleaved "
    "rounds, are what counts."))

# %% [markdown]
# ## PGD: early stopping against a full-length attack
#
# Our attack needed {glue:text}`pgd_ours_s:.2f` s (median) for
# {glue:text}`pgd_examples:.0f` images: {glue:text}`pgd_ours_mean_steps:.1f` steps per
# example on average instead of {glue:text}`pgd_steps:.0f`, fooling a fraction
# {glue:text}`pgd_ours_success_rate:.3f` of them. Its arithmetic ran at
# {glue:text}`pgd_ours_gflops:.1f` GFLOP/s, a fraction
# {glue:text}`pgd_fraction_of_peak:.2f` of the machine's peak at the same thread count
# (measured below), and {glue:text}`pgd_over_same_shape_matmul:.2f` × the rate
# of a plain matrix product of the MLP's shape at this batch size. Early stopping
# shrinks the batch as examples are fooled, so the last steps run on small batches;
# the comparison with torchattacks follows.

# %% tags=["remove-input"]
if "pgd_torchattacks_s" in metrics:
    same = "identical" if metrics["pgd_identical_fooled_set"] else "different"
    display(Markdown(
        f"`torchattacks.PGD` needed {metrics['pgd_torchattacks_s']:.2f} s: ours was "
        f"**{spread('pgd_speedup_vs_torchattacks')}× faster**. The sets of fooled "
        f"examples are {same} ({metrics['pgd_fooled_only_by_ours']} fooled only by "
        f"ours, {metrics['pgd_fooled_only_by_torchattacks']} only by torchattacks; "
        f"robust accuracy {metrics['pgd_ours_robust_accuracy']:.3f} ours, "
        f"{metrics['pgd_torchattacks_robust_accuracy']:.3f} torchattacks). "
        "torchattacks itself ran at "
        f"{spread('pgd_torchattacks_over_same_shape_matmul')} × the same-shape "
        "matrix product: per step it cannot be beaten by much, the gain comes from "
        "not attacking examples that are already fooled."))
else:
    display(Markdown("**torchattacks is not installed**, so the PGD comparison did "
                     "not run (`python -m pip install --no-deps torchattacks`)."))

# %% [markdown]
# ## k-NN subspace distance: exact search against the original pipeline
#
# For {glue:text}`knn_examples:.0f` perturbed test images (our PGD examples above)
# against {glue:text}`knn_train:.0f` training images, our exact batched search and
# projection took {glue:text}`knn_ours_s:.2f` s and the original pipeline
# {glue:text}`knn_original_s:.2f` s: a speed-up of
# {glue:text}`knn_speedup_vs_original:.1f`× end to end. Most of the original's time is
# the IncrementalPCA fit ({glue:text}`knn_original_pca_fit_s:.1f` s); counting only its
# kd-tree queries and QR loop, the speed-up is
# {glue:text}`knn_speedup_vs_original_without_fit:.2f`×. The kd-tree in a
# 40-dimensional PCA space does not find the exact neighbours: on average it returns a
# fraction {glue:text}`knn_neighbour_overlap:.3f` of them (ours:
# {glue:text}`knn_ours_neighbour_overlap:.3f` of a float64 brute-force search). The
# distance changes little: median absolute difference
# {glue:text}`knn_distance_abs_diff_median:.4f` (median distance
# {glue:text}`knn_distance_ours_median:.3f`), at most
# {glue:text}`knn_distance_abs_diff_max:.3f`.

# %% [markdown]
# ## FONTS decoder projection and training steps

# %% tags=["remove-input"]
if "decoder_examples_per_s" in metrics:
    display(Markdown(
        f"The FONTS decoder projection (Adam on θ, {metrics['decoder_steps']:.0f} "
        f"steps from the true θ and {metrics['decoder_restarts']:.0f} random "
        f"restart(s), {metrics['decoder_fonts']:.0f} fonts) handled "
        f"**{spread('decoder_examples_per_s', '.0f')} examples per second** for "
        f"{metrics['decoder_examples']:.0f} examples."))
else:
    display(Markdown("The FONTS decoder projection was not measured (no fonts found; "
                     "see the notes above)."))

# %% [markdown]
# On the MLP at batch {glue:text}`step_batch_size:.0f`, a training step with the
# alignment loss as the PMNIST chapter trains it (cross-entropy plus the penalty from
# one forward pass, double backprop) cost
# {glue:text}`alignment_step_over_plain:.2f`× a plain step (min
# {glue:text}`alignment_step_over_plain_min:.2f`, max
# {glue:text}`alignment_step_over_plain_max:.2f`); the same loss composed of two
# objectives, each with its own forward pass, cost
# {glue:text}`alignment_composed_step_over_plain:.2f`×. A
# PGD-{glue:text}`step_pgd_steps:.0f` adversarial-training step cost
# {glue:text}`adversarial_step_over_plain:.2f`× a plain step (min
# {glue:text}`adversarial_step_over_plain_min:.2f`, max
# {glue:text}`adversarial_step_over_plain_max:.2f`).
#
# ## The FONTS ConvNet against the machine
#
# The generalization chapter trains this ConvNet hundreds of times, and in its
# adversarial methods most of the time goes to attack steps: ∇ₓ of the cross-entropy
# for half of each batch of 100, forty times per batch. How close does that work come
# to what the machine can do, and what made it faster?

# %% tags=["hide-input"]
cores = int(metrics.get("cores_available", 1))
glue("cores", cores, display=False)
for name in ("peak_gflops", "peak_square_gflops", "peak_shapes_gflops", "load",
             "attack_step_fraction_of_peak", "train_step_fraction_of_peak",
             "adv_train_step_fraction_of_peak"):
    if f"{name}_{cores}t" in metrics:
        metrics[f"{name}_all"] = metrics[f"{name}_{cores}t"]
        glue(f"{name}_all", metrics[f"{name}_all"], display=False)

# %% [markdown]
# **The peak.** On one thread the best `torch.mm` rate over large square matrices was
# {glue:text}`peak_square_gflops_1t:.0f` GFLOP/s and the best over the GEMMs that the
# ConvNet's own steps run, each timed alone, {glue:text}`peak_shapes_gflops_1t:.0f`
# GFLOP/s; the peak, the best rate measured at one thread, was
# {glue:text}`peak_gflops_1t:.0f` GFLOP/s (1-minute load average
# {glue:text}`load_1t:.1f`). On {glue:text}`cores:.0f` threads the same three numbers
# were {glue:text}`peak_square_gflops_all:.0f`, {glue:text}`peak_shapes_gflops_all:.0f`
# and {glue:text}`peak_gflops_all:.0f` GFLOP/s (load {glue:text}`load_all:.1f`). A step
# spends at least Σᵢ fᵢ / rᵢ seconds on GEMMs of fᵢ FLOPs whose best rate is rᵢ, so
# its rate cannot exceed the fastest of its GEMMs; as timings on busy cores can break
# that bound, the steps' own rates belong to the peak set too. Every fraction below
# divides by the peak of the same thread count, so it is at most 1 by construction,
# with nothing capped; a step that set a peak would be named in the notes above.
# FLOPs are those of convolutions and matrix products counted by
# `torch.utils.flop_counter` (element-wise work is not counted), so the fractions are
# lower bounds.

# %% tags=["hide-input"]
frame = run["timings"]
convnet = frame[frame.piece == "convnet"] if len(frame) else frame
step_names = {"train_step": "training step (Adam, batch 100)",
              "attack_step": "attack step (∇ₓ of 50, attack view)",
              "adv_train_step": f"adversarial-training step (PGD-{S.convnet_pgd_steps} "
                                "on 50, then the training step)"}
if len(convnet):
    steps = (convnet.assign(ms=1e3 * convnet.seconds,
                            threads=convnet.threads.astype(int))
             .pivot_table(index="candidate", columns="threads",
                          values=["ms", "gflops", "fraction_of_peak"])
             .reindex(list(step_names)).rename(index=step_names))
    steps = steps[["ms", "gflops", "fraction_of_peak"]]
    steps.columns = [f"{v} ({t} thr.)" for v, t in steps.columns]
    res.add_table("convnet_steps", steps.reset_index())
    display(steps.style.format("{:.3g}"))

# %% [markdown]
# Each step's time (ms), rate (GFLOP/s) and fraction of the peak, at one thread and at
# every core. On one thread the attack step reached a fraction
# {glue:text}`attack_step_fraction_of_peak_1t:.2f` of the peak, the training step
# {glue:text}`train_step_fraction_of_peak_1t:.2f` and the adversarial-training step
# {glue:text}`adv_train_step_fraction_of_peak_1t:.2f`; on
# {glue:text}`cores:.0f` threads {glue:text}`attack_step_fraction_of_peak_all:.3f`,
# {glue:text}`train_step_fraction_of_peak_all:.3f` and
# {glue:text}`adv_train_step_fraction_of_peak_all:.3f`, compared with the peak
# measured at that thread count while the same load ran. This process's OpenMP
# threads spin while they wait (the default); where the two-thread fractions are far
# below the one-thread ones, waiting for a descheduled thread on shared cores cost
# more than the second core gained (threads against processes, below).
#
# **Levers, one at a time.** An attack step here is ∇ₓ of the cross-entropy for 50
# images; the speed-up is over the plain network (eval mode, weights requiring
# gradients, batch norm as trained) at one thread. The last two columns say whether
# the package keeps the lever and why, from this run's numbers.

# %% tags=["hide-input"]
levers = frame[frame.piece == "levers"] if len(frame) else frame
if len(levers):
    shown = (levers.assign(ms=1e3 * levers.seconds,
                           threads=levers.threads.astype(int))
             [["candidate", "threads", "ms", "speedup", "kept", "reason"]]
             .rename(columns={"candidate": "lever", "ms": "ms per 50 images",
                              "speedup": "× plain"}))
    res.add_table("levers", shown)
    with pd.option_context("display.max_colwidth", None):
        display(shown.style.format({"ms per 50 images": "{:.3g}", "× plain": "{:.2f}"},
                                   na_rep="").hide(axis="index"))
for note in [n for n in run["notes"] if "torch.compile" in n]:
    display(Markdown(f"*{note}.*"))
if S.convnet_compile_s is None:
    display(Markdown(f"*`torch.compile` of the attack view was not timed in profile "
                     f"`{profile}` (`convnet_compile_s` is None): with torch's caches "
                     "empty, as on a fresh machine, its cold compile alone takes tens "
                     "of seconds, more than this profile's budget; the `paper` "
                     "profile and `make benchmarks` time it.*"))

# %% tags=["remove-input"]
parts = []
if "processes_over_threads" in metrics:
    parts.append(
        "**Threads against processes.** One process with two threads ran "
        f"{metrics['attack_steps_per_s_1proc_2threads']:.0f} attack steps per second "
        "with OpenMP's default wait policy (idle threads spin) and "
        f"{metrics['attack_steps_per_s_1proc_2threads_passive']:.0f} with "
        "`OMP_WAIT_POLICY=PASSIVE` (idle threads sleep), each in a fresh process "
        "before it trained the unit below; two single-threaded processes at the "
        "same time ran "
        f"{metrics['attack_steps_per_s_2procs_1thread']:.0f} together "
        f"({metrics['processes_over_threads']:.2f} × and "
        f"{metrics['processes_over_threads_passive']:.2f} × the one process). The "
        "steps are small, so a team of threads meets at a barrier many times per "
        "step: on cores that other processes also use, a descheduled member holds "
        "up the team, and spinning members take time from it.")
if "unit_before_s" in metrics:
    epochs = int(metrics["unit_epochs"])
    whole = "the whole unit" if epochs == 20 else (
        f"{epochs} of its 20 epochs ({metrics['unit_batches']:.0f} batch(es) of 100); "
        "the full-unit times are 20 × the epoch's, as the epochs cost alike")
    scaled = []
    for key, label in (("before", "before"), ("after_1t", "after, one thread"),
                       ("all", f"{cores} threads, spinning"),
                       ("passive", f"{cores} threads, passive")):
        timed = int(metrics.get(f"unit_{key}_batches_timed", metrics["unit_batches"]))
        if timed < metrics["unit_batches"]:
            scaled.append(f"{timed} batch(es) ({label})")
    note = ""
    if scaled:
        note = (f" Runs were stopped after {', '.join(scaled)} and scaled to the "
                "epoch")
        note += ("." if metrics["unit_all_finished"] else
                 f"; the spinning run at {cores} threads did not finish its first "
                 "batch before it was stopped, so its time is a lower bound.")
    parts.append(
        f"**The unit.** OnAdvTrain at N = {metrics['unit_n']:,.0f} with the paper's "
        f"settings (PGD-{metrics['unit_pgd_steps']:.0f} on θ through the decoder in "
        f"every batch), timed for "
        f"{whole}: {metrics['unit_before_s']:.3g} s before (attack views off, one "
        f"thread, as main built its units) and {metrics['unit_after_1t_s']:.3g} s "
        f"after at one thread: **{metrics['unit_speedup_1t']:.2f} ×**. At {cores} "
        f"threads, in a fresh process, it took {metrics['unit_after_all_s']:.3g} s "
        f"with spinning threads ({metrics['unit_speedup_all']:.2f} × over before) "
        f"and {metrics['unit_after_all_passive_s']:.3g} s with passive ones "
        f"({metrics['unit_speedup_all_passive']:.2f} ×). The full unit: "
        f"{metrics['unit_full_before_s'] / 60:.3g} min before, "
        f"{metrics['unit_full_after_1t_s'] / 60:.3g} min after at one thread "
        f"(load average {metrics['unit_load']:.1f}).{note} The issue's target, "
        "2 × at equal threads, is "
        f"{'met' if metrics['unit_speedup_1t'] >= 2 else 'not met'}.")
if "lever_grid_speedup" in metrics:
    parts.append(
        "**The decoder's grid.** The on-manifold attack also differentiates the "
        "decoder. With attack views on, its sampling grid is computed in closed form, "
        "A·(p, 1) for all pixels in one matrix product, instead of by "
        "`F.affine_grid`'s batched `bmm`: the warp of 50 images and its θ-gradient "
        f"took {metrics['lever_grid_closed_form_ms']:.2f} ms against "
        f"{metrics['lever_grid_affine_ms']:.2f} ms "
        f"({metrics['lever_grid_speedup']:.2f} ×; kept, and used in the training "
        "attack only, so that the evaluation attacks stay bit for bit as they "
        "were). Tried during development and dropped, not timed on this page: the "
        "input gradients of the second and third convolutions by matrix product and "
        "`fold` (or by stride-1 convolutions and `pixel_shuffle`, or as transposed "
        "convolutions: bit for bit the same gradient, no faster), their forward "
        "passes by im2col and GEMM, and channels-last weights inside the attack "
        "view; each was slower than oneDNN's kernels at a batch of 50 here, as the "
        "copies into and out of the GEMM's layout cost more than the GEMM saved. A "
        "warp fused with its θ-gradient in closed form (one autograd node instead "
        "of the graph of A(θ)) took as long as the closed-form grid, as "
        "`grid_sample`'s own kernels are most of the warp's time: dropped. Batching "
        "restarts does not apply: the training attack has one random start (the "
        "five attempts are the evaluation protocol's).")
if "ceiling_speedup" in metrics:
    bf16 = ""
    if "lever_bf16_speedup" in metrics:
        bf16 = (
            " The one lever left changes the arithmetic: the classifier in bfloat16 "
            f"(this CPU's oneDNN kernels) took {metrics['lever_bf16_ms']:.2f} ms per "
            f"step against {metrics['lever_bf16_f32_ms']:.2f} ms in float32 "
            f"({metrics['lever_bf16_speedup']:.2f} ×), and the signs of the input "
            "gradients agreed on "
            f"{100 * metrics['lever_bf16_sign_agreement']:.1f} % of the pixels. "
            "Dropped whatever its speed: the attack would no longer follow the "
            "float32 gradient, and the trained models would depend on the CPU's "
            "instruction set.")
    parts.append(
        "**The ceiling.** The same attack alone, on one batch's 50 examples: "
        f"{metrics['ceiling_attack_off_ms']:.0f} ms with attack views off, "
        f"{metrics['ceiling_attack_on_ms']:.0f} ms with them on "
        f"({metrics['ceiling_attack_speedup']:.2f} ×). Both ways found the same "
        "θ̃ (within 10⁻⁴) for "
        f"{100 * metrics['ceiling_same_theta_share']:.0f} % of the examples, at a "
        f"mean loss of {metrics['ceiling_loss_off']:.4f} and "
        f"{metrics['ceiling_loss_on']:.4f} (a stand-in network with the trained "
        "one's shape). The classifier's own 40 "
        "forward and input-gradient steps, with the decoder and the engine taken "
        f"away, took {metrics['ceiling_classifier_ms']:.0f} ms in the same rounds. "
        "No change to the decoder or the engine can go below that floor, so the "
        f"attack's speed-up is at most **{metrics['ceiling_speedup']:.2f} ×** "
        f"(the views leave {metrics['ceiling_overhead_ms']:.0f} ms above the "
        "floor), and the unit's, which also trains, less. The 2 × target at equal "
        f"threads {'fits under' if metrics['ceiling_speedup'] >= 2 else 'is above'} "
        "this ceiling; the classifier's steps already run on oneDNN's kernels, "
        "which the variants above did not beat." + bf16)
if metrics.get("cuda_available") and "unit_after_cuda_s" in metrics:
    parts.append(
        f"**GPU.** On the GPU the unit took {metrics['unit_after_cuda_s']:.3g} s "
        f"({metrics['unit_speedup_cuda']:.2f} × over before).")
else:
    parts.append(
        "**GPU.** No GPU was available to this build (`torch.cuda.is_available()` "
        "is False), so no `device=cuda` timing was made; where one is, "
        "`benchmarking.unit_time` also trains the unit on it.")
display(Markdown("\n\n".join(parts)))

# %% tags=["hide-input"]
sns.set_theme(style="whitegrid", font_scale=1.1)
fig, axes = plt.subplots(1, 2, figsize=(11, 4.2),
                         gridspec_kw={"width_ratios": [1.3, 1]})
if len(convnet):
    short = {"train_step": "training", "attack_step": "attack",
             "adv_train_step": "adversarial\ntraining"}
    data = convnet.assign(step=convnet.candidate.map(short),
                          threads=convnet.threads.astype(int).astype(str) + " thr.")
    sns.barplot(data=data, x="step", y="gflops", hue="threads", ax=axes[0])
    for i, t in enumerate(sorted(convnet.threads.astype(int).unique())):
        axes[0].axhline(metrics[f"peak_gflops_{t}t"], ls="--", lw=1.5,
                        color=sns.color_palette()[i], label=f"peak, {t} thr.")
    axes[0].legend(frameon=False, fontsize=9)
axes[0].set(xlabel="", ylabel="GFLOP/s")
unit = frame[frame.piece == "unit"] if len(frame) else frame
if len(unit):
    full = unit.assign(minutes=unit.seconds * 20 / unit.epochs / 60)
    sns.barplot(data=full, y="candidate", x="minutes", ax=axes[1],
                color=sns.color_palette()[2])
axes[1].set(ylabel="", xlabel="OnAdvTrain unit, minutes (20 epochs)", xscale="log")
fig.tight_layout()
figures.save(fig, benchmarking.STEM, "convnet")

# %% [markdown]
# ```{glue:figure} fig_convnet
# :name: fig-benchmarks-convnet
# Left: the ConvNet's steps in GFLOP/s at one thread and at every core; each bar
# should stay below the dashed peak of its thread count. Right: one OnAdvTrain unit of
# the paper profile (N = 2,500) before the attack views (one thread) and after them,
# at one thread and at every core (log scale); in the `quick` profile each run was cut
# short after a few seconds, scaled to one epoch and multiplied by 20.
# ```
#
# ## Denormal floats at two threads
#
# Adam keeps running averages of each gradient and of its square. When part of a
# network stops receiving gradient, they decay towards zero through the *denormal*
# range of float32 (below 1.2 × 10⁻³⁸), which x86 cores may process slowly.
# `torch.set_flush_denormal(True)` sets the flag of the calling thread only: the
# OpenMP threads that already exist keep theirs. Here the PMNIST MLP
# ({glue:text}`denormal_parameters:,.0f` parameters, so its Adam update is split over
# the threads) gets a tiny gradient once and none after it, for
# {glue:text}`denormal_steps:.0f` steps, at two threads in one fresh process whose
# OpenMP team exists before any flush (idle threads sleeping,
# `OMP_WAIT_POLICY=PASSIVE`), three times one after the other, each with a new network
# and optimiser: without a flush, then with the flag set on the calling thread only,
# then with `compute.flush_denormals`, which sets it on every thread of the team (each
# setting adds flags to the one before, none is cleared). At most
# {glue:text}`denormal_no_flush_max_count:,.0f`,
# {glue:text}`denormal_main_thread_only_max_count:,.0f` and
# {glue:text}`denormal_every_thread_max_count:,.0f` denormals were held in the weights
# and Adam's state. In the second half of its run, the network without a flush made
# {glue:text}`denormal_no_flush_over_every_thread_late:.2f` × the steps per second of
# the one with every thread flushing; the runs came one after the other, so other
# load can differ between them.

# %% tags=["hide-input"]
rates = frame[frame["piece"] == "denormals"] if len(frame) else frame
fig, axes = plt.subplots(2, 1, figsize=(8, 5.6), sharex=True)
if len(rates):
    data = rates.rename(columns={"candidate": "setting"})
    sns.lineplot(data=data, x="step", y="steps_per_s", hue="setting", marker="o",
                 ax=axes[0])
    sns.lineplot(data=data.assign(denormals=data["denormals"].clip(lower=0.8)),
                 x="step", y="denormals", hue="setting", marker="o", ax=axes[1],
                 legend=False)
    axes[1].set_yscale("log")
axes[0].set(ylabel="Adam steps per second", ylim=(0, None))
axes[0].legend(title="flush", frameon=False)
axes[1].set(xlabel="Adam steps", ylabel="denormals held")
fig.tight_layout()
figures.save(fig, benchmarking.STEM, "denormals")

# %% [markdown]
# ```{glue:figure} fig_denormals
# :name: fig-benchmarks-denormals
# Adam at two threads on a network whose gradient vanished, one setting after the
# other in a fresh process: steps per second (top) and denormals in its weights and Adam's state
# (bottom, log scale; zero drawn at the bottom). The flush on every thread should hold
# none; the flag on the calling thread alone leaves the worker thread's share. Whether
# the rate drops with denormals depends on the processor.
# ```
#
# ## All numbers and targets

# %% tags=["hide-input"]
rows = []
for label, name, unit in [
    ("PGD: torchattacks time / ours", "pgd_speedup_vs_torchattacks", "×"),
    ("PGD: ours GFLOP/s / same-shape torch.mm GFLOP/s",
     "pgd_over_same_shape_matmul", ""),
    ("PGD: torchattacks GFLOP/s / same-shape torch.mm GFLOP/s",
     "pgd_torchattacks_over_same_shape_matmul", ""),
    ("PGD: ours, seconds", "pgd_ours_s", "s"),
    ("PGD: torchattacks, seconds", "pgd_torchattacks_s", "s"),
    ("same-shape torch.mm GFLOP/s", "matmul_gflops", "GFLOP/s"),
    ("k-NN: original time / ours (end to end)", "knn_speedup_vs_original", "×"),
    ("k-NN: original queries + QR / ours", "knn_speedup_vs_original_without_fit", "×"),
    ("k-NN: ours, seconds", "knn_ours_s", "s"),
    ("k-NN: original, seconds", "knn_original_s", "s"),
    ("FONTS projection, examples per second", "decoder_examples_per_s", "1/s"),
    ("alignment step / plain step", "alignment_step_over_plain", "×"),
    ("alignment step, two forward passes / plain step",
     "alignment_composed_step_over_plain", "×"),
    ("adversarial (PGD-10) step / plain step", "adversarial_step_over_plain", "×"),
    ("plain step, seconds", "plain_step_s", "s"),
]:
    if name in metrics:
        rows.append({"quantity": label, "median": metrics[name],
                     "min": metrics[name + "_min"], "max": metrics[name + "_max"],
                     "unit": unit})
for single, name, unit in [
    ("k-NN: fraction of exact neighbours the original returns",
     "knn_neighbour_overlap", ""),
    ("k-NN: fraction of exact neighbours ours returns", "knn_ours_neighbour_overlap",
     ""),
    ("k-NN: median |distance difference|", "knn_distance_abs_diff_median", ""),
    ("peak, one thread", "peak_gflops_1t", "GFLOP/s"),
    ("peak, every core", "peak_gflops_all", "GFLOP/s"),
    ("PGD: fraction of the peak", "pgd_fraction_of_peak", ""),
    ("largest fraction of a peak", "max_fraction_of_peak", ""),
    ("attack view / plain network, one thread", "lever_attack_view_speedup", "×"),
    ("OnAdvTrain unit: before / after, one thread", "unit_speedup_1t", "×"),
    ("OnAdvTrain attack: ceiling (views off / classifier alone)", "ceiling_speedup",
     "×"),
    ("classifier step: float32 / bfloat16, one thread", "lever_bf16_speedup", "×"),
    ("OnAdvTrain unit: before (1 thread) / after (every core)", "unit_speedup_all",
     "×"),
    ("OnAdvTrain unit, full, before", "unit_full_before_s", "s"),
    ("OnAdvTrain unit, full, after (one thread)", "unit_full_after_1t_s", "s"),
    ("two processes / one process with two threads", "processes_over_threads", "×"),
    ("denormals held, flush on every thread", "denormal_every_thread_max_count", ""),
    ("denormals held, flag on the calling thread only",
     "denormal_main_thread_only_max_count", ""),
    ("denormals held, no flush", "denormal_no_flush_max_count", ""),
    *[(f"wall time of the {p} piece", f"{p}_wall_s", "s")
      for p in ("pgd", "knn", "decoder", "step", "convnet", "denormal")],
]:
    if name in metrics:
        rows.append({"quantity": single, "median": metrics[name], "min": np.nan,
                     "max": np.nan, "unit": unit})
for p in profiles.PROFILES:
    if f"book_{p}_minutes" in metrics:
        rows.append({"quantity": f"whole book, profile {p}: units and chapters "
                                 "(last runner log)",
                     "median": metrics[f"book_{p}_minutes"], "min": np.nan,
                     "max": np.nan, "unit": "min"})
    elif f"book_{p}_partial_minutes" in metrics:
        logged = metrics[f"book_{p}_chapters_logged"]
        rows.append({"quantity": f"book, profile {p}: only {logged} chapter(s) logged",
                     "median": metrics[f"book_{p}_partial_minutes"], "min": np.nan,
                     "max": np.nan, "unit": "min"})
table = pd.DataFrame(rows)
res.add_table("summary", table)
fmt = {"median": "{:.3g}", "min": "{:.3g}", "max": "{:.3g}"}
display(table.style.format(fmt, na_rep="").hide(axis="index"))

# %% tags=["hide-input"]
targets = pd.DataFrame(run["targets"],
                       columns=["metric", "value", "target", "met", "meaning"])
display(targets.style.format({"value": "{:.3g}"}).hide(axis="index"))

# %% [markdown]
# Each comparison in one figure: the per-round ratios (dots, with their range), their
# median (diamond) and the target (red dashes).

# %% tags=["hide-input"]
panels = [
    ("speed-up over the reference (×)", [
        ("PGD vs\ntorchattacks", "pgd_speedup_vs_torchattacks", 2.5),
        ("k-NN vs original", "knn_speedup_vs_original", 10.0),
        ("k-NN vs original\n(queries + QR)", "knn_speedup_vs_original_without_fit",
         None)]),
    ("cost relative to a plain step (×)", [
        ("alignment step", "alignment_step_over_plain", 2.5),
        ("alignment step,\ntwo forward\npasses", "alignment_composed_step_over_plain",
         None),
        ("PGD-10\nadversarial step", "adversarial_step_over_plain", None)]),
]
timings = run["timings"]
pairs = {"pgd_speedup_vs_torchattacks": ("torchattacks", "ours", "pgd"),
         "knn_speedup_vs_original": ("original", "ours", "knn"),
         "alignment_step_over_plain": ("alignment", "plain", "training_step"),
         "alignment_composed_step_over_plain": ("alignment_composed", "plain",
                                                "training_step"),
         "adversarial_step_over_plain": ("adversarial", "plain", "training_step")}


def per_round(name):
    """Per-round values of a ratio metric, recomputed from the raw timings."""
    if name not in pairs:
        return np.array([metrics[name]]) if name in metrics else np.array([])
    num, den, piece = pairs[name]
    sub = timings[timings.piece == piece] if len(timings) else timings
    if not len(sub):
        return np.array([])
    a = sub[sub.candidate == num].sort_values("round")["seconds"].to_numpy()
    b = sub[sub.candidate == den].sort_values("round")["seconds"].to_numpy()
    return a / b if len(a) and len(b) else np.array([])


fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
for ax, (title, items) in zip(axes, panels):
    for i, (label, name, target) in enumerate(items):
        values = per_round(name)
        if len(values):
            ax.hlines(i, values.min(), values.max(), color="0.4", lw=1.5)
            ax.plot(values, np.full(len(values), i), "k.", ms=6)
            ax.plot(metrics[name], i, "D", color=sns.color_palette()[i], ms=9)
        else:
            ax.text(0.02, i, "not measured", va="center",
                    transform=ax.get_yaxis_transform())
        if target is not None:
            ax.plot([target, target], [i - 0.4, i + 0.4], "r--", lw=1.5)
    ax.axvline(1.0, color="0.6", lw=1)
    ax.set_yticks(range(len(items)), [label for label, _, _ in items])
    ax.set_ylim(len(items) - 0.5, -0.5)
    ax.set_xlabel(title)
    ax.set_xscale("log")
    shown = np.concatenate([per_round(name) for _, name, _ in items]
                           + [[1.0], [t for _, _, t in items if t]])
    ax.set_xlim(shown.min() / 1.4, shown.max() * 1.4)
    ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())
fig.tight_layout()
figures.save(fig, benchmarking.STEM, "ratios")

book = run["chapters"]
fig, ax = plt.subplots(figsize=(8, 0.45 * max(book["chapter"].nunique(), 2) + 1.4))
if len(book):
    sns.barplot(data=book.assign(minutes=book.seconds / 60), y="chapter", x="minutes",
                hue="profile", ax=ax)
    partial = [p for p in profiles.PROFILES if f"book_{p}_partial_minutes" in metrics]
    if partial:
        ax.set_title(f"partial log(s): {', '.join(partial)}")
else:
    ax.text(0.5, 0.5, "no book run log yet (run `make book`)", ha="center",
            va="center", transform=ax.transAxes)
    ax.set_yticks([])
ax.set(xlabel="execution time per chapter (minutes)", ylabel="")
fig.tight_layout()
figures.save(fig, benchmarking.STEM, "book")

# %% [markdown]
# ```{glue:figure} fig_ratios
# :name: fig-benchmarks
# Left: how many times faster our PGD and k-NN distance are than torchattacks and the
# original pipeline (diamonds: medians; dots: rounds; red dashes: targets; grey line:
# parity; log scale). Right: the cost of an alignment-loss step and of an
# adversarial-training step relative to a plain step.
# ```
#
# ```{glue:figure} fig_book
# :name: fig-benchmarks-book
# The whole-book execution time per chapter and profile, from the runner's last logs.
# ```

# %% tags=["remove-input"]
full_path = paths.results_dir() / "benchmarks.json"
if full_path.is_file():
    full = json.loads(full_path.read_text())
    display(Markdown(
        f"A full-size run (`make benchmarks`, finished {full.get('finished', '?')}, "
        f"{full.get('cpu_model', '?')}, {full.get('threads', '?')} thread(s)) wrote "
        "`benchmarks.json`:"))
    display(pd.DataFrame(full.get("targets", []),
                         columns=["metric", "value", "target", "met"])
            .style.format({"value": "{:.3g}"}).hide(axis="index"))
else:
    display(Markdown("No full-size run yet: `make benchmarks` writes "
                     "`_build/results/benchmarks.json`."))

# %% [markdown]
# ## What reproduced and what did not
#
# The verdicts below are computed from this run's numbers and the targets of the table
# above.

# %% tags=["remove-input"]
lines = []
for row in run["targets"]:
    name = row["metric"]
    verdict = "**met**" if row["met"] else "**missed**"
    detail = spread(name, ".3g") if name + "_min" in metrics else f"{row['value']:.3g}"
    lines.append(f"- {row['meaning']}: {verdict} ({name} = {detail}; "
                 f"target {row['target']}).")
missing = [meaning for name, _, _, meaning in benchmarking.TARGETS
           if name not in metrics]
lines += [f"- {meaning}: not measured in this run." for meaning in missing]
display(Markdown("\n".join(lines)))
res.write();
