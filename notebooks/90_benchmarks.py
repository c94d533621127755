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
# This page times each piece against its natural replacement, in one run, on the same data
# and machine, with a fixed number of threads:
#
# - **PGD** ({cite}`madry2018towards`; L∞ ε = 0.1, step 0.01, 40 steps, random start, on the
#   784-1568-1568-10 MLP of {cite}`geyer2023relationship` trained for one epoch on MNIST):
#   `advmanifold.attacks.pgd`, which stops per example at the first label change
#   (the setting of {cite}`stutz2019disentangling`), against `torchattacks.PGD`, which runs
#   every step for every example; and the attack's arithmetic throughput (FLOPs of a forward
#   and an input-backward pass per example and step, divided by time) against a plain
#   `torch.mm` of similar shape measured in the same rounds.
# - **k-NN subspace distance** (k = 50 nearest of the 60,000 MNIST training images, as in
#   {cite}`stutz2019disentangling`): our exact batched search and batched SVD projection
#   against the original pipeline, IncrementalPCA with 40 components, a kd-tree in that
#   space and a per-example QR in NumPy.
# - **FONTS decoder projection**: examples per second of the latent search
#   (Adam on θ from the true θ and random restarts).
# - **Training steps**: a step with the alignment loss of {cite}`geyer2023relationship`
#   (double backpropagation) and a PGD-10 adversarial-training step, each over a plain
#   cross-entropy step, on the MLP at batch 128.
# - **The whole book**: execution time per profile and chapter, read from the runner's log.
#
# Candidates run *interleaved*: after a warm-up round, every round times each candidate
# once, and a ratio is computed per round, so load from other processes hits both sides of
# a ratio alike. We report the median over rounds with its min and max. The targets are
# this book's own choices, not the papers'. The same functions run at full size with
# `make benchmarks` (`python3 benchmarks/run.py`), which writes
# `_build/results/benchmarks.json`; this page runs them with profile-dependent sizes.

# %% tags=["remove-cell"]
import sys, subprocess
if "google.colab" in sys.modules:  # on Colab: install the companion package (and torchattacks, the PGD reference)
    subprocess.run([sys.executable, "-m", "pip", "install", "-q",
                    "git+https://github.com/adversarial-manifolds/companion.git"], check=True)
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "torchattacks>=3.5"], check=True)

# %% tags=["parameters"]
profile = "quick"
seed = 0
device = "cpu"
data_dir = None
threads = None   # torch/BLAS threads; None: every core available
repeats = None   # timed rounds per comparison; None: from the profile

# %%
import json

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter
import pandas as pd
import seaborn as sns
import torch
from IPython.display import Markdown, display
from myst_nb import glue

from advmanifold import benchmarking, paths, profiles
from advmanifold.results import Results

if device != "cpu":
    raise ValueError(f"device must be 'cpu' (the benchmarks compare CPU implementations), got {device!r}")

# sizes per profile (our choice); quick and paper use the issue's sizes, smoke only checks the code path
FULL = benchmarking.FULL
SETTINGS = {
    "smoke": {"pgd_examples": 32, "pgd_steps": 10, "pgd_repeats": 1, "knn_examples": 16, "knn_train": 1000,
              "knn_repeats": 1, "decoder_examples": 16, "decoder_restarts": 1, "decoder_steps": 5, "decoder_fonts": 4,
              "decoder_repeats": 1, "decoder_bundled_fonts": True, "step_batch_size": 32, "step_inner": 1,
              "step_repeats": 1, "mlp_train": 2000, "warmup": 0, "threads": None},
    "quick": {**FULL, "pgd_repeats": 2, "knn_repeats": 1, "knn_warmup": 0, "decoder_repeats": 1,
              "decoder_warmup": 0, "step_inner": 3, "step_repeats": 3, "threads": None},
    "paper": {**FULL, "pgd_repeats": 5, "knn_repeats": 3, "decoder_repeats": 3, "step_repeats": 5, "threads": None},
}
S = profiles.select(profile, SETTINGS, threads=threads)
if repeats is not None:
    for piece in ("pgd", "knn", "decoder", "step"):
        setattr(S, f"{piece}_repeats", int(repeats))
torch.manual_seed(seed)
res = Results("90_benchmarks", profile=profile, seed=seed)
settings = {k: v for k, v in vars(S).items() if k in FULL}
settings

# %%
run = benchmarking.run_benchmarks(settings, threads=S.threads, data_dir=data_dir, seed=seed)
metrics = run["metrics"]
for name, value in metrics.items():
    if isinstance(value, (int, float)) and not isinstance(value, bool) and np.isfinite(value):
        res.add(name, value)
res.add_table("timings", run["timings"])
res.add_table("targets", pd.DataFrame(run["targets"]))
res.add_table("book_chapters", run["chapters"])
for note in run["notes"]:
    print("note:", note)

# %% [markdown]
# ## The machine

# %%
display(Markdown(
    f"Measured on **{metrics['cpu_model']}** ({metrics['cores_available']} cores available to this process), "
    f"with **{metrics['threads']}** thread(s) for torch and NumPy's BLAS, torch {metrics['torch_version']}, "
    f"NumPy {metrics['numpy_version']}, Python {metrics['python_version']} ({metrics['platform']}); "
    f"profile `{profile}`. Timings on a machine shared with other processes are noisy: "
    f"the ratios below, measured in the same interleaved rounds, are what counts."))

# %% [markdown]
# ## PGD: early stopping against a full-length attack
#
# Our attack needed {glue:text}`pgd_ours_s:.2f` s (median) for {glue:text}`pgd_examples:.0f`
# images: {glue:text}`pgd_ours_mean_steps:.1f` steps per example on average instead of
# {glue:text}`pgd_steps:.0f`, fooling a fraction {glue:text}`pgd_ours_success_rate:.3f` of them.
# Its arithmetic ran at {glue:text}`pgd_ours_gflops:.1f` GFLOP/s against
# {glue:text}`matmul_gflops:.1f` GFLOP/s for a plain matrix product: a fraction
# {glue:text}`pgd_fraction_of_matmul_peak:.2f` of the machine's matrix-multiply rate (min
# {glue:text}`pgd_fraction_of_matmul_peak_min:.2f`, max {glue:text}`pgd_fraction_of_matmul_peak_max:.2f`
# over rounds). Early stopping shrinks the batch as examples are fooled, so the last steps run
# on small batches; the comparison with torchattacks follows.

# %%
def spread(name, fmt=".2f"):
    """'median (min–max)' of a metric, or a note that it was not measured."""
    if name not in metrics:
        return "not measured"
    return f"{metrics[name]:{fmt}} (min {metrics[name + '_min']:{fmt}}, max {metrics[name + '_max']:{fmt}})"


if "pgd_torchattacks_s" in metrics:
    same = "identical" if metrics["pgd_identical_fooled_set"] else "different"
    display(Markdown(
        f"`torchattacks.PGD` needed {metrics['pgd_torchattacks_s']:.2f} s: ours was "
        f"**{spread('pgd_speedup_vs_torchattacks')}× faster**. The sets of fooled examples are {same} "
        f"({metrics['pgd_fooled_only_by_ours']} fooled only by ours, "
        f"{metrics['pgd_fooled_only_by_torchattacks']} only by torchattacks; robust accuracy "
        f"{metrics['pgd_ours_robust_accuracy']:.3f} ours, {metrics['pgd_torchattacks_robust_accuracy']:.3f} torchattacks). "
        f"torchattacks itself ran at a fraction {spread('pgd_torchattacks_fraction_of_matmul_peak')} of the "
        f"matrix-multiply rate: per step it cannot be beaten by much, the gain comes from not "
        f"attacking examples that are already fooled."))
else:
    display(Markdown("**torchattacks is not installed**, so the PGD comparison did not run "
                     "(`python -m pip install --no-deps torchattacks`)."))

# %% [markdown]
# ## k-NN subspace distance: exact search against the original pipeline
#
# For {glue:text}`knn_examples:.0f` perturbed test images (our PGD examples above) against
# {glue:text}`knn_train:.0f` training images, our exact batched search and projection took
# {glue:text}`knn_ours_s:.2f` s and the original pipeline {glue:text}`knn_original_s:.2f` s:
# a speed-up of {glue:text}`knn_speedup_vs_original:.1f`× end to end. Most of the original's
# time is the IncrementalPCA fit ({glue:text}`knn_original_pca_fit_s:.1f` s); counting only
# its kd-tree queries and QR loop, the speed-up is {glue:text}`knn_speedup_vs_original_without_fit:.2f`×.
# The kd-tree in a 40-dimensional PCA space does not find the exact neighbours: on average
# it returns a fraction {glue:text}`knn_neighbour_overlap:.3f` of them (ours:
# {glue:text}`knn_ours_neighbour_overlap:.3f` of a float64 brute-force search). The distance
# changes little: median absolute difference {glue:text}`knn_distance_abs_diff_median:.4f`
# (median distance {glue:text}`knn_distance_ours_median:.3f`), at most
# {glue:text}`knn_distance_abs_diff_max:.3f`.

# %% [markdown]
# ## FONTS decoder projection and training steps

# %%
if "decoder_examples_per_s" in metrics:
    display(Markdown(
        f"The FONTS decoder projection (Adam on θ, {metrics['decoder_steps']:.0f} steps from the true θ and "
        f"{metrics['decoder_restarts']:.0f} random restart(s), {metrics['decoder_fonts']:.0f} fonts) handled "
        f"**{spread('decoder_examples_per_s', '.0f')} examples per second** for {metrics['decoder_examples']:.0f} "
        f"examples."))
else:
    display(Markdown("The FONTS decoder projection was not measured (no fonts found; see the notes above)."))

# %% [markdown]
# On the MLP at batch {glue:text}`step_batch_size:.0f`, a training step with the alignment
# loss as the PMNIST chapter trains it (cross-entropy plus the penalty from one forward
# pass, double backprop) cost {glue:text}`alignment_step_over_plain:.2f`× a plain step
# (min {glue:text}`alignment_step_over_plain_min:.2f`, max {glue:text}`alignment_step_over_plain_max:.2f`);
# the same loss composed of two objectives, each with its own forward pass, cost
# {glue:text}`alignment_composed_step_over_plain:.2f`×. A PGD-{glue:text}`step_pgd_steps:.0f`
# adversarial-training step cost {glue:text}`adversarial_step_over_plain:.2f`× a plain step
# (min {glue:text}`adversarial_step_over_plain_min:.2f`, max {glue:text}`adversarial_step_over_plain_max:.2f`).

# %% [markdown]
# ## All numbers and targets

# %%
rows = []
for label, name, unit in [
    ("PGD: torchattacks time / ours", "pgd_speedup_vs_torchattacks", "×"),
    ("PGD: ours GFLOP/s / torch.mm GFLOP/s", "pgd_fraction_of_matmul_peak", ""),
    ("PGD: torchattacks GFLOP/s / torch.mm GFLOP/s", "pgd_torchattacks_fraction_of_matmul_peak", ""),
    ("PGD: ours, seconds", "pgd_ours_s", "s"),
    ("PGD: torchattacks, seconds", "pgd_torchattacks_s", "s"),
    ("torch.mm GFLOP/s", "matmul_gflops", "GFLOP/s"),
    ("k-NN: original time / ours (end to end)", "knn_speedup_vs_original", "×"),
    ("k-NN: original queries + QR / ours", "knn_speedup_vs_original_without_fit", "×"),
    ("k-NN: ours, seconds", "knn_ours_s", "s"),
    ("k-NN: original, seconds", "knn_original_s", "s"),
    ("FONTS projection, examples per second", "decoder_examples_per_s", "1/s"),
    ("alignment step / plain step", "alignment_step_over_plain", "×"),
    ("alignment step, two forward passes / plain step", "alignment_composed_step_over_plain", "×"),
    ("adversarial (PGD-10) step / plain step", "adversarial_step_over_plain", "×"),
    ("plain step, seconds", "plain_step_s", "s"),
]:
    if name in metrics:
        rows.append({"quantity": label, "median": metrics[name], "min": metrics[name + "_min"],
                     "max": metrics[name + "_max"], "unit": unit})
for single, name in [("k-NN: fraction of exact neighbours the original returns", "knn_neighbour_overlap"),
                     ("k-NN: fraction of exact neighbours ours returns", "knn_ours_neighbour_overlap"),
                     ("k-NN: median |distance difference|", "knn_distance_abs_diff_median")]:
    if name in metrics:
        rows.append({"quantity": single, "median": metrics[name], "min": np.nan, "max": np.nan, "unit": ""})
for p in profiles.PROFILES:
    if f"book_{p}_minutes" in metrics:
        rows.append({"quantity": f"whole book, profile {p} (last runner log)", "median": metrics[f"book_{p}_minutes"],
                     "min": np.nan, "max": np.nan, "unit": "min"})
    elif f"book_{p}_partial_minutes" in metrics:
        rows.append({"quantity": f"book, profile {p}: only {metrics[f'book_{p}_chapters_logged']} chapter(s) logged",
                     "median": metrics[f"book_{p}_partial_minutes"], "min": np.nan, "max": np.nan, "unit": "min"})
table = pd.DataFrame(rows)
res.add_table("summary", table)
display(table.style.format({"median": "{:.3g}", "min": "{:.3g}", "max": "{:.3g}"}, na_rep="").hide(axis="index"))

# %%
targets = pd.DataFrame(run["targets"], columns=["metric", "value", "target", "met", "meaning"])
display(targets.style.format({"value": "{:.3g}"}).hide(axis="index"))

# %% [markdown]
# Each comparison in one figure: the per-round ratios (dots, with their range), their median
# (diamond) and the target (red dashes); the last panel shows the whole-book times from the
# runner's logs.

# %%
sns.set_theme(style="whitegrid")
panels = [
    ("speed-up over the reference (×)", [("PGD vs torchattacks", "pgd_speedup_vs_torchattacks", 2.5),
                                          ("k-NN vs original", "knn_speedup_vs_original", 10.0),
                                          ("k-NN vs original\n(queries + QR only)", "knn_speedup_vs_original_without_fit", None)]),
    ("cost relative to a plain step (×)", [("alignment step", "alignment_step_over_plain", 2.5),
                                           ("alignment step,\ntwo forward passes", "alignment_composed_step_over_plain", None),
                                           ("PGD-10 adversarial step", "adversarial_step_over_plain", None)]),
]
timings = run["timings"]


def per_round(name):
    """Per-round values of a ratio metric, recomputed from the raw timings."""
    t = {c: g.sort_values("round")["seconds"].to_numpy() for (piece, c), g in timings.groupby(["piece", "candidate"])}
    pairs = {"pgd_speedup_vs_torchattacks": ("torchattacks", "ours", "pgd"),
             "knn_speedup_vs_original": ("original", "ours", "knn"),
             "alignment_step_over_plain": ("alignment", "plain", "training_step"),
             "alignment_composed_step_over_plain": ("alignment_composed", "plain", "training_step"),
             "adversarial_step_over_plain": ("adversarial", "plain", "training_step")}
    if name not in pairs:
        return np.array([metrics[name]]) if name in metrics else np.array([])
    num, den, piece = pairs[name]
    sub = timings[timings.piece == piece]
    a = sub[sub.candidate == num].sort_values("round")["seconds"].to_numpy()
    b = sub[sub.candidate == den].sort_values("round")["seconds"].to_numpy()
    return a / b if len(a) and len(b) else np.array([])


fig, axes = plt.subplots(1, 3, figsize=(14, 3.8), gridspec_kw={"width_ratios": [1, 1, 1.1]})
for ax, (title, items) in zip(axes, panels):
    for i, (label, name, target) in enumerate(items):
        values = per_round(name)
        if len(values):
            ax.hlines(i, values.min(), values.max(), color="0.4", lw=1.5)
            ax.plot(values, np.full(len(values), i), "k.", ms=6)
            ax.plot(metrics[name], i, "D", color=sns.color_palette()[i], ms=9)
        else:
            ax.text(0.02, i, "not measured", va="center", transform=ax.get_yaxis_transform())
        if target is not None:
            ax.plot([target, target], [i - 0.4, i + 0.4], "r--", lw=1.5)
    ax.axvline(1.0, color="0.6", lw=1)
    ax.set_yticks(range(len(items)), [label for label, _, _ in items])
    ax.set_ylim(len(items) - 0.5, -0.5)
    ax.set_xlabel(title)
    ax.set_xscale("log")
    shown = np.concatenate([per_round(name) for _, name, _ in items] + [[1.0], [t for _, _, t in items if t]])
    ax.set_xlim(shown.min() / 1.4, shown.max() * 1.4)
    ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())
book = run["chapters"]
ax = axes[2]
if len(book):
    sns.barplot(data=book.assign(minutes=book.seconds / 60), y="chapter", x="minutes", hue="profile", ax=ax)
    ax.set_xlabel("execution time per chapter (minutes)")
    ax.set_ylabel("")
    partial = [p for p in profiles.PROFILES if f"book_{p}_partial_minutes" in metrics]
    if partial:
        ax.set_title(f"partial log(s): {', '.join(partial)}", fontsize=9)
else:
    ax.text(0.5, 0.5, "no book run log yet\n(run `make book`)", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel("execution time per chapter (minutes)")
    ax.set_yticks([])
fig.suptitle(f"{metrics['cpu_model']}, {metrics['threads']} thread(s), torch {metrics['torch_version']}", fontsize=10)
fig.tight_layout()
fig.savefig(paths.figures_dir() / "90_benchmarks_ratios.png", dpi=150)
glue("fig_benchmarks", fig, display=False)
plt.close(fig)

# %% [markdown]
# ```{glue:figure} fig_benchmarks
# :name: fig-benchmarks
# Left: how many times faster our PGD and k-NN distance are than torchattacks and the original
# pipeline (diamonds: medians; dots: rounds; red dashes: targets; grey line: parity; log scale). Middle: the cost of an
# alignment-loss step and of an adversarial-training step relative to a plain step. Right: the
# whole-book execution time per chapter and profile from the runner's last logs.
# ```

# %%
full_path = paths.results_dir() / "benchmarks.json"
if full_path.is_file():
    full = json.loads(full_path.read_text())
    shown = [r for r in full.get("targets", [])]
    display(Markdown(f"A full-size run (`make benchmarks`, finished {full.get('finished', '?')}, "
                     f"{full.get('cpu_model', '?')}, {full.get('threads', '?')} thread(s)) wrote `benchmarks.json`:"))
    display(pd.DataFrame(shown, columns=["metric", "value", "target", "met"]).style.format({"value": "{:.3g}"})
            .hide(axis="index"))
else:
    display(Markdown("No full-size run yet: `make benchmarks` writes `_build/results/benchmarks.json`."))

# %% [markdown]
# ## What reproduced and what did not
#
# The verdicts below are computed from this run's numbers and the targets of the table above.

# %%
lines = []
for row in run["targets"]:
    name = row["metric"]
    verdict = "**met**" if row["met"] else "**missed**"
    detail = spread(name, ".3g") if name + "_min" in metrics else f"{row['value']:.3g}"
    lines.append(f"- {row['meaning']}: {verdict} ({name} = {detail}; target {row['target']}).")
missing = [meaning for name, _, _, meaning in benchmarking.TARGETS if name not in metrics]
lines += [f"- {meaning}: not measured in this run." for meaning in missing]
display(Markdown("\n".join(lines)))
res.write()
