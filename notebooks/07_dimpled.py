# ---
# jupyter:
#   jupytext:
#     cell_metadata_filter: -papermill,-execution,-ExecuteTime
#     formats: ipynb,py:percent
#     notebook_metadata_filter: -papermill,-widgets,-varInspector
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.7
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # The dimpled manifold on FONTS
#
# Shamir, Melamed and BenShmuel {cite}`shamir2021dimpled` propose a picture of why
# adversarial examples exist. Training proceeds in two phases: in the first, fast
# phase the decision boundary *clings* to the data manifold, so that the manifold lies
# almost inside it; in the second, slow phase the boundary bends into shallow
# *dimples* around the training points, just deep enough to put each on the right
# side. Adversarial perturbations then point along the boundary's normal, which is
# nearly normal to the manifold, and are small because the dimples are shallow. Their
# evidence rests on an autoencoder's approximation of the manifold of natural images.
#
# On FONTS the manifold is known exactly: at every image x = dec(font, letter, θ) the
# tangent space T is the span of the six columns of ∂dec/∂θ, computed exactly (see
# the generalization chapter). Three predictions of the model can therefore be tested
# without an approximation:
#
# 1. **Perturbations are nearly normal.** The tangent share
#    $s(v) = \|P_T v\|_2 / \|v\|_2$ of an adversarial perturbation is small. "Small"
#    needs a yardstick: a random direction in $\mathbb R^d$ keeps a share of about
#    $\sqrt{k/d}$ in a $k$-dimensional subspace {cite}`bordt2023manifold`, here
#    $\sqrt{6/784}$ = {glue:text}`sqrt_k_over_d:.3f`. We sample that baseline
#    against the same tangent spaces.
# 2. **Clinging comes first.** Early in training the boundary's normal, the input
#    gradient, turns away from the manifold: its tangent share falls.
# 3. **The boundary is near along the normal.** From a test image, the boundary is
#    closer along the normal part of the gradient than along its tangent part.
#
# We train the FONTS chapter's ConvNet on the FONTS chapter's data with its optimiser,
# keep copies of the weights during training, and measure every copy on the same test
# images; then we measure two of the generalization chapter's models that treat the
# manifold specially, on-manifold adversarial training and tangent alignment. All
# settings except the data and the optimiser are ours.

# %% tags=["remove-cell"]
import sys, subprocess
if "google.colab" in sys.modules:  # on Colab: install the companion package
    subprocess.run([sys.executable, "-m", "pip", "install", "-q",
                    "git+https://github.com/adversarial-manifolds/companion.git"],
                   check=True)

# %% tags=["parameters"]
profile = "quick"
seed = 0
device = "cpu"
font_dirs = None     # folders of font files (None: the FONTS chapter's source)
font_source = None   # "google", "system" or None (the FONTS chapter's default)
n_fonts = None       # fonts of the training data (None: the profile's)
epochs = None        # training epochs (None: the profile's)
n_eval = None        # test images measured at every checkpoint
gen_n = None         # training size of the generalization chapter's models
threads = None       # CPU threads for torch; None: torch's default (one per core)

# %% tags=["hide-input"]
import pandas as pd
from IPython.display import Markdown, display
from myst_nb import glue

from advmanifold.book import figures
from advmanifold.book.results import Results
from advmanifold.chapters import claims
from advmanifold.chapters import dimpled as DM
from advmanifold.chapters import dimpled_plots as plots
from advmanifold.science import compute

if threads is not None:
    compute.set_threads(int(threads))
params = dict(seed=seed, device=device, font_dirs=font_dirs, font_source=font_source,
              n_fonts=n_fonts, epochs=epochs, n_eval=n_eval, gen_n=gen_n)
S = DM.settings.from_params(profile, params)
units = DM.grid(profile, params)
res = Results(DM.STEM, profile=profile, seed=seed)
figures.style()


def add_all(found):
    """Record every finite number of ``found``; glue the others as NaN (the prose
    then shows nan rather than failing)."""
    for key, value in found.items():
        res.add_if_finite(key, value)

# %% tags=["hide-cell"]
pd.Series(vars(S), name="this run's settings").to_frame()

# %% [markdown]
# ## Checkpoints and measures
#
# The network is the FONTS chapter's ConvNet, trained exactly as there (same rendered
# data, initial weights, batches, Adam with its schedule): the weights are copied at
# step 0, at log-spaced steps through the first epoch and at the end of every epoch.
# Each copy is measured on {glue:text}`n_eval:d` fixed test images (new θ, the
# generalization chapter's test stream). Per image:
#
# - the tangent share of the input gradient $g = \nabla_x \mathrm{CE}$, of an L2 PGD
#   perturbation (ε = {glue:text}`l2_eps:.1f`) and of an L∞ PGD perturbation
#   (ε = {glue:text}`linf_eps:.1f`), each δ = x̃ − x at the first iterate that changes
#   the label ({glue:text}`attack_steps:d` steps at most, no random start, which would
#   add an isotropic part to δ; box [0, 1]); a misclassified image has no
#   perturbation, so the attack shares average over correctly classified images.
#   The cross-entropy is evaluated in float64 from the network's logits: in float32,
#   $1 - p_y$ rounds to 0 on a confidently classified image and the gradient loses
#   its true-class term, which would turn its direction;
# - the distance to the decision boundary along the unit tangent part
#   $u_T = P_T g / \|P_T g\|$ and the unit normal part
#   $u_N = (g - P_T g)/\|g - P_T g\|$ of the gradient: the first change of the
#   predicted class on the ray x + t u, found on a geometric grid of radii up to
#   t = {glue:text}`t_max:.0f` (the diagonal of the unit cube) and refined by
#   bisection. The ray is not clipped to [0, 1]: the question is about the
#   classifier's geometry in $\mathbb R^{784}$. A ray without a change up to
#   t = {glue:text}`t_max:.0f` counts as infinitely far; medians count it at
#   {glue:text}`t_max:.0f`.

# %%
_ = units["training"].get()                # the checkpoints (trained if not cached)
checkpoints = units["checkpoints"].get()   # their measures
rows = DM.frame(checkpoints)
baseline = DM.random_baseline(checkpoints["random"])

# %% tags=["hide-input"]
steps = checkpoints["step"].tolist()
data_fonts = len(DM.fonts_used(units["prototypes"], S))
n_train = data_fonts * 10 * S.train_per_prototype
_, per_epoch, early_step = DM.schedule(n_train, S)
final_step = steps[-1]
for key in ("n_eval", "l2_eps", "linf_eps", "attack_steps", "n_random", "t_max",
            "epochs", "early_fraction"):
    res.add(key, getattr(S, key))
res.add("n_train", n_train)
res.add("n_fonts", data_fonts)
res.add("k", DM.K)
res.add("d", DM.D)
res.add("n_checkpoints", len(steps))
res.add("steps_per_epoch", per_epoch)
res.add("early_step", early_step)
res.add("final_step", final_step)
for key, value in baseline.items():
    res.add(key, value)
res.add("random_share_expected_over_sqrt", baseline["random_share_expected"]
        / baseline["sqrt_k_over_d"])
res.add_table("checkpoints", rows)

by_step = {t: DM.summary(rows[rows.step == t], S.t_max) for t in steps}
for label, t in (("step0", 0), ("early", early_step), ("epoch1", per_epoch),
                 ("final", final_step)):
    add_all(DM.summary(rows[rows.step == t], S.t_max, f"_{label}"))
for key in DM.SHARES:
    for label in ("step0", "final"):
        add_all({f"{key}_over_random_{label}": by_step[0 if label == "step0" else
                 final_step][f"{key}_mean"] / baseline["random_share_mean"]})
peak = max(steps, key=lambda t: by_step[t]["grad_share_mean"])
res.add("grad_share_peak_step", peak)
res.add("grad_share_peak", by_step[peak]["grad_share_mean"])
res.add("grad_share_peak_over_random",
        by_step[peak]["grad_share_mean"] / baseline["random_share_mean"])
res.add("chance_fraction", 0.5)
fig = plots.plot_shares(rows, baseline, early_step, per_epoch)
figures.save(fig, DM.STEM, "shares")

# %% [markdown]
# ## Are perturbations normal to the manifold?
#
# A random direction keeps a mean share of {glue:text}`random_share_mean:.3f` of its
# norm in the tangent space (5–95 %: {glue:text}`random_share_q05:.3f` to
# {glue:text}`random_share_q95:.3f`, over {glue:text}`n_random:d` directions per
# image); the exact mean for a uniformly random direction is
# {glue:text}`random_share_expected:.4f`, a factor
# {glue:text}`random_share_expected_over_sqrt:.3f` below $\sqrt{k/d}$.
#
# ```{glue:figure} fig_shares
# :name: fig-dimpled-shares
# Left: tangent share (mean ± 2 SE over the test images) of the input gradient and of
# the L2 and L∞ PGD perturbations at every checkpoint, against the optimiser step
# (symmetric log axis: 0, then logarithmic); the grey band holds 90 % of the random
# directions' shares, the dotted line is √(k/d). Dashed lines: the end of the early
# phase (step {glue:text}`early_step:d`, purple) and of the first epoch (step
# {glue:text}`steps_per_epoch:d`, grey). Right: test error on the same images.
# ```
#
# At the end of training (step {glue:text}`final_step:d`, test error
# {glue:text}`test_error_final:.3f`) the mean tangent share is
# {glue:text}`grad_share_mean_final:.3f` for the gradient,
# {glue:text}`l2_share_mean_final:.3f` for L2 PGD perturbations and
# {glue:text}`linf_share_mean_final:.3f` for L∞ ones: respectively
# {glue:text}`grad_share_over_random_final:.2f`,
# {glue:text}`l2_share_over_random_final:.2f` and
# {glue:text}`linf_share_over_random_final:.2f` times the random baseline. The
# untrained network (step 0, test error {glue:text}`test_error_step0:.3f`) has a
# gradient share of {glue:text}`grad_share_mean_step0:.3f`
# ({glue:text}`grad_share_over_random_step0:.2f` × random).
#
# ## Does the boundary cling first?
#
# The clinging phase predicts a falling gradient share early in training. At the end
# of the early phase (step {glue:text}`early_step:d`, the first
# {glue:text}`early_fraction:.0%` of the first epoch) the gradient share is
# {glue:text}`grad_share_mean_early:.3f`, against
# {glue:text}`grad_share_mean_step0:.3f` at step 0; at the end of the first epoch it
# is {glue:text}`grad_share_mean_epoch1:.3f`. Over all checkpoints the largest mean
# gradient share, {glue:text}`grad_share_peak:.3f`
# ({glue:text}`grad_share_peak_over_random:.2f` × random), comes at step
# {glue:text}`grad_share_peak_step:d`.

# %% tags=["hide-input"]
figures.save(plots.plot_distances(rows, final_step, S.t_max), DM.STEM, "distances")

# %% [markdown]
# ## Is the boundary closer along the normal?
#
# ```{glue:figure} fig_distances
# :name: fig-dimpled-distances
# Left: distance from each test image to the decision boundary along the tangent part
# of its gradient against the distance along the normal part, at the final
# checkpoint (rays without a boundary up to t = {glue:text}`t_max:.0f` drawn there;
# black line: equal distances). Middle: median distances over training. Right: share
# of test images whose boundary is closer along the normal (dotted: one half).
# ```
#
# At the end of training the median distance is
# {glue:text}`d_normal_median_final:.2f` along the normal and
# {glue:text}`d_tangent_median_final:.2f` along the tangent direction; the boundary is
# closer along the normal for a share {glue:text}`normal_closer_fraction_final:.3f`
# of the test images. Along the tangent direction
# {glue:text}`d_tangent_none_final:.1%` of the rays meet no boundary up to
# t = {glue:text}`t_max:.0f`, along the normal {glue:text}`d_normal_none_final:.1%`.

# %% [markdown]
# ## Models that treat the manifold specially
#
# The generalization chapter trains models at a training size N with on-manifold
# adversarial training (`OnAdvTrain`) or with a penalty that aligns input gradients
# with the tangent space (`Aligned`); its `Normal` model at the same N is their
# like-for-like reference (our FONTS-data model above saw far more images). The same
# measures on the same test images, at the end of their training:

# %%
measured = {"Normal": None, "OnAdvTrain": None, "Aligned": None}
for method in measured:
    units[f"train_{method}"].get()  # the generalization chapter's model
    measured[method] = units[f"eval_{method}"].get()

# %% tags=["hide-input"]
res.add("gen_n", S.gen_n)
names = {m: f"{m}, N = {S.gen_n:,}" for m in measured}
fonts_label = f"Normal, FONTS data (N = {n_train:,})"
method_rows = pd.concat(
    [rows[rows.step == final_step].drop(columns="step").assign(model=fonts_label)]
    + [DM.frame(p, model=names[m]) for m, p in measured.items()],
    ignore_index=True)
res.add_table("methods", method_rows)
for method in measured:
    found = DM.summary(method_rows[method_rows.model == names[method]], S.t_max)
    add_all({f"{key}_{method}": found[key] for key in (
        "grad_share_mean", "l2_share_mean", "linf_share_mean", "test_error",
        "d_tangent_median", "d_normal_median", "normal_closer_fraction")})
    add_all({f"grad_share_over_random_{method}":
             found["grad_share_mean"] / baseline["random_share_mean"]})
fig = plots.plot_methods(method_rows, baseline, S.t_max)
figures.save(fig, DM.STEM, "methods")

# %% [markdown]
# ```{glue:figure} fig_methods
# :name: fig-dimpled-methods
# At the end of training: mean tangent shares (± 2 SE) of gradient and perturbations
# per model beside the random band (left), and the median distance to the boundary
# along the tangent and the normal part of the gradient (right).
# ```
#
# The aligned model's gradient keeps a share of
# {glue:text}`grad_share_mean_Aligned:.3f` in the tangent space
# ({glue:text}`grad_share_over_random_Aligned:.1f` × random; test error
# {glue:text}`test_error_Aligned:.3f`), on-manifold adversarial training
# {glue:text}`grad_share_mean_OnAdvTrain:.3f` (test error
# {glue:text}`test_error_OnAdvTrain:.3f`) and the Normal model at the same N
# {glue:text}`grad_share_mean_Normal:.3f` (test error
# {glue:text}`test_error_Normal:.3f`). Their boundaries are closer along the normal
# for shares {glue:text}`normal_closer_fraction_Aligned:.2f`,
# {glue:text}`normal_closer_fraction_OnAdvTrain:.2f` and
# {glue:text}`normal_closer_fraction_Normal:.2f` of the test images.
#
# ## Verdicts
#
# The ledger judges the three predictions on this run's numbers. A perturbation is
# "nearly normal" if its mean tangent share is at most twice the random baseline
# (partly: four times); the share "falls early" if the step-0 mean exceeds the
# early-phase mean by more than two standard errors of the difference (per-image
# spread, the two checkpoints treated as independent samples; partly: any decrease);
# the boundary is "closer along the normal for most images" if that share exceeds one
# half by more than two binomial standard errors (partly: any excess).

# %% tags=["hide-input"]
verdicts = claims.verdicts(DM.STEM, res.metrics)
for key, verdict in verdicts.verdict.items():
    glue(f"verdict_{key.replace('-', '_')}", verdict, display=False)
verdicts[["claim", "measured", "verdict", "rule"]].style.hide(axis="index")

# %% [markdown]
# ## What this adds
#
# The statements below are generated from this run's numbers.

# %% tags=["remove-input"]
display(Markdown(DM.conclusions(res.metrics)))

# %% tags=["hide-input"]
_ = res.write()
