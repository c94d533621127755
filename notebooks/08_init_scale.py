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
# # Initialisation scale and weight decay on PMNIST
#
# Melamed, Yehudai and Vardi {cite}`melamed2023adversarial` study two-layer ReLU
# networks trained by gradient methods on data that lie in a low-dimensional linear
# subspace S of the input space. They prove that training leaves the network's
# gradient with a large component orthogonal to S, so that small perturbations
# orthogonal to the data, which carry no information about the class, change the
# prediction; and that a smaller initialisation scale, or L2 regularisation, shrinks
# that component and makes the network more robust to such perturbations. PMNIST
# {cite}`geyer2023relationship` is exactly such data: every image lies in the
# 28-dimensional PCA subspace of the PMNIST chapter. This chapter asks three questions
# of two networks trained on it, a two-layer network (the setting of the theory) and
# the book's deeper MLP (beyond it):
#
# 1. Does a smaller initialisation scale lower the share of the input gradient that
#    is orthogonal to S, and raise robustness to perturbations orthogonal to S?
# 2. Does weight decay do the same?
# 3. Does robustness to perturbations *within* S stay where it was? The theory
#    explains the off-subspace vulnerability only; nothing in it removes the
#    adversarial examples that live in the data subspace itself.
#
# Every setting below is ours unless it is attributed.

# %% tags=["remove-cell"]
import sys, subprocess
if "google.colab" in sys.modules:  # on Colab: install the companion package
    subprocess.run([sys.executable, "-m", "pip", "install", "-q",
                    "git+https://github.com/adversarial-manifolds/companion.git"],
                   check=True)

# %% tags=["parameters"]
profile = "quick"
seed = 0
device = "cpu"   # units train where ADVMANIFOLD_DEVICE says; the rest here is light
data_dir = None
n_seeds = None   # training seeds seed, seed + 1, …; None: from the profile
n_train = None   # training images (first n of MNIST's); None: from the profile
epochs = None    # training epochs of every model
n_eval = None    # test images attacked per model and threat model
hidden = None    # width H of the two-layer network 784 → H → 10
threads = 1      # CPU threads for torch (small nets gain little from more); None: all

# %% tags=["hide-input"]
import math
import time

import pandas as pd
import torch
from IPython.display import Markdown, display
from myst_nb import glue

from advmanifold.book import figures
from advmanifold.book.results import Results, read_results
from advmanifold.chapters import claims, init_scale, pmnist
from advmanifold.chapters import init_scale_plots as plots

params = dict(seed=seed, data_dir=data_dir, n_seeds=n_seeds, n_train=n_train,
              epochs=epochs, n_eval=n_eval, hidden=hidden)
S = init_scale.settings.from_params(profile, params)
SEEDS = pmnist.seeds(S.n_seeds, seed)
if threads is not None:
    torch.set_num_threads(int(threads))
torch.manual_seed(seed)
res = Results(init_scale.STEM, profile=profile, seed=seed)
res.add("n_seeds", len(SEEDS))
res.add("torch_threads", torch.get_num_threads())
PER_SEED = []  # (metric, seed, value) of every number recorded over seeds
COLORS = plots.style()
started, cpu_started = time.perf_counter(), time.process_time()


def listed(values):
    return ", ".join(f"{v:g}" for v in values)


glue("init_scales", listed(S.init_scales), display=False)
glue("weight_decays", listed(S.weight_decays), display=False)
glue("eps_grid", listed(S.eps_grid), display=False)
for key in ("hidden", "lr", "momentum", "batch_size", "epochs", "clip", "n_align",
            "n_eval", "pgd_steps"):
    res.add(f"setting_{key}", getattr(S, key))
res.add("n_train", S.n_train or pmnist.N_MNIST_TRAIN)
res.add("k", init_scale.PCA["k"])
res.add("seed_first", SEEDS[0])
res.add("seed_last", SEEDS[-1])
res.add("small_init_scale", min(S.init_scales))
_ = res.add("large_weight_decay", max(S.weight_decays))

# %% tags=["hide-cell"]
pd.Series(vars(S), name="this run's settings").to_frame()

# %% [markdown]
# ## Why the initialisation survives training
#
# Write the first layer as $h = W_1 x + b_1$ and let $P$ be the orthogonal projector
# onto S. For any loss, the gradient with respect to $W_1$ is
# $\sum_i u_i x_i^\top$ with $u_i$ the signal back-propagated to $h$; every $x_i$ lies
# in S, so $(\partial L/\partial W_1)(I - P) = 0$. Gradient steps never move the
# off-subspace part $W_1(I - P)$ of the first layer: it keeps its initial value, and
# only weight decay changes it. With SGD, momentum $\beta$, learning rate $\eta$ and
# L2 weight decay $\lambda$ (the step follows $\nabla L + \lambda\theta$), each
# off-subspace weight obeys the linear recursion
# $v_t = \beta v_{t-1} + \lambda w_{t-1}$, $w_t = w_{t-1} - \eta v_t$, so after
# $T$ steps
#
# $$W_1^{(T)}(I - P) = \rho_T \, W_1^{(0)}(I - P), \qquad \rho_T = 1 \text{ for }
# \lambda = 0 .$$
#
# The input gradient of any output is $\nabla_x f = W_1^\top u$; its off-subspace part
# $(I - P)\nabla_x f = (W_1(I - P))^\top u$ is therefore proportional to the initial
# scale and to $\rho_T$, and a perturbation $\delta \perp S$ reaches the network only
# through $W_1\delta = W_1(I - P)\delta$. Multiplying the initialisation by $c$ scales
# this route by $c$; weight decay by $\rho_T$. This is the mechanism behind the
# theorems {cite}`melamed2023adversarial`, exact for any depth, since only the first
# layer sees $x$. It needs an optimiser whose update is a linear function of past
# gradients: Adam divides each coordinate by its own running scale, which moves the
# update out of S (the PMNIST chapter's Baseline, trained with Adam, is the example).
# So every model here is trained with SGD.
#
# **Setup.** PMNIST with the PMNIST chapter's default projector (one global PCA
# subspace, k = {glue:text}`k`, not centred; the same cached PCA unit). Two
# architectures, both ReLU: a two-layer network 784 → {glue:text}`setting_hidden` → 10
# and the MLP 784 → 1568 → 1568 → 10 of the PMNIST chapter. Each starts from PyTorch's
# default initialisation with every weight and bias multiplied by $c$. SGD with
# momentum {glue:text}`setting_momentum`, learning rate {glue:text}`setting_lr`, batch
# {glue:text}`setting_batch_size`, {glue:text}`setting_epochs` epochs on the first
# {glue:text}`n_train` training images, cross-entropy, the loss gradient's norm
# clipped at {glue:text}`setting_clip` (clipping rescales the whole gradient, so its
# rows stay in S; it acts only at large $c$, where the logits scale like
# $c^{\text{depth}}$), weight decay on every parameter. The grid is one factor at a
# time: the scales $c$ = {glue:text}`init_scales` at $\lambda = 0$, and the decays
# $\lambda$ = {glue:text}`weight_decays` at $c = 1$; each point is trained with
# {glue:text}`n_seeds` seeds ({glue:text}`seed_first` to {glue:text}`seed_last`: the
# seed fixes the initial weights, the batch order and the attacks' random starts).
# Every model is a cached unit, and so is its evaluation.

# %%
EVALS = init_scale.evaluations(S, SEEDS, data_dir)  # {(arch, c, λ, seed): payload}

# %% tags=["hide-input"]
table = init_scale.model_table(EVALS, S)
res.add_table("models", table)
init_scale.record_points(res, PER_SEED, table, S)
res.add("w_off_max_deviation",
        (table.w_off_ratio - table.w_off_predicted).abs().max())
decayed = table[table.weight_decay == S.weight_decays[-1]]
res.add("w_off_ratio_large_wd", decayed.w_off_ratio.mean())
res.add("w_off_predicted_large_wd", decayed.w_off_predicted.mean())
res.add("sgd_steps", int(table.sgd_steps.iloc[0]))
mechanism = table.groupby(["arch", "init_scale", "weight_decay"], sort=False)[
    ["w_off_ratio", "w_off_predicted"]].mean()
mechanism.rename_axis(["arch", "c", "λ"]).rename(columns={
    "w_off_ratio": "‖W₁(I−P)‖ trained / initial",
    "w_off_predicted": "ρ_T predicted"}).round(4)

# %% [markdown]
# The table checks the mechanism on every trained model (means over seeds): the
# measured ratio of the first layer's off-subspace weights after and before training
# against $\rho_T$ computed from the optimiser's settings and the
# {glue:text}`sgd_steps` steps taken. They differ by at most
# {glue:text}`w_off_max_deviation:.1e` (float rounding: the projected images lie in S
# only up to it). With the largest weight decay the off-subspace weights keep a
# fraction {glue:text}`w_off_ratio_large_wd:.3f` of their initial norm
# ($\rho_T$ = {glue:text}`w_off_predicted_large_wd:.3f`); without, all of it.
#
# ## How much of the input gradient leaves the subspace
#
# For the first {glue:text}`setting_n_align` test images we take the input gradient
# $g = \nabla_x m$ of the logit margin $m = z_y - \max_{j \ne y} z_j$ and report the
# median of $\|(I - P)g\| / \|g\|$ (0: the gradient lies in S; a random direction
# gives about $\sqrt{1 - k/784}$). The margin, not the cross-entropy: the
# cross-entropy's gradient vanishes where the softmax saturates, which happens at
# large $c$ (logits scale like $c^{\text{depth}}$), and its direction is a mixture over
# classes weighted by probabilities that depend on that scale. The cross-entropy
# version is in the table of results as `orth_share_ce`.

# %% tags=["hide-input"]
reference = plots.random_share(init_scale.PCA["k"], 784)
res.add("random_orth_share", reference)
res.add("zero_ce_gradients_max", table.zero_ce_gradients.max())
figures.save(plots.shares(table, COLORS, reference), init_scale.STEM, "share")

# %% [markdown]
# ```{glue:figure} fig_share
# :name: fig-initscale-share
# Median share of the input gradient orthogonal to the data subspace, against the
# initialisation scale (left, no weight decay) and the weight decay (right, c = 1),
# for both networks: small dots are single seeds, diamonds the mean over seeds, bars
# ± one standard deviation. The dashed line is a random direction
# ({glue:text}`random_orth_share:.3f`).
# ```
#
# At the default scale the orthogonal share is
# {glue:text}`orth_share_two_layer_base:.3f` ±
# {glue:text}`orth_share_two_layer_base_std:.3f` for the two-layer network and
# {glue:text}`orth_share_mlp_base:.3f` ± {glue:text}`orth_share_mlp_base_std:.3f` for
# the MLP (mean ± standard deviation over seeds). With $c$ =
# {glue:text}`small_init_scale:g` it falls to
# {glue:text}`orth_share_two_layer_small_init:.3f` ±
# {glue:text}`orth_share_two_layer_small_init_std:.3f` and
# {glue:text}`orth_share_mlp_small_init:.3f` ±
# {glue:text}`orth_share_mlp_small_init_std:.3f`; with $\lambda$ =
# {glue:text}`large_weight_decay:g` to
# {glue:text}`orth_share_two_layer_large_wd:.3f` ±
# {glue:text}`orth_share_two_layer_large_wd_std:.3f` and
# {glue:text}`orth_share_mlp_large_wd:.3f` ±
# {glue:text}`orth_share_mlp_large_wd_std:.3f`. Larger scales push the gradient
# towards a random direction's share. In the worst model a fraction
# {glue:text}`zero_ce_gradients_max:.3f` of the cross-entropy gradients is exactly
# zero (saturated softmax), which is why the margin is the measured quantity.
#
# ## Robustness off and within the subspace
#
# Three threat models, one attack: L2 PGD on the logit margin (it does not saturate
# either) with perturbations restricted to S⟂ (orthogonal to the data), to S (within
# it), or unrestricted, each over the L2 budgets ε = {glue:text}`eps_grid` on the
# first {glue:text}`setting_n_eval` test images. Each of
# {glue:text}`setting_pgd_steps` steps moves along the restricted, normalised gradient
# $Qg/\|Qg\|$ by $2.5\,\varepsilon/\text{steps}$, then projects onto the subspace
# ($Q = I - P$, $P$ or $I$) and onto the ε-ball; it starts from a random point of
# the restricted ball, and an image counts as broken at the first iterate that is
# misclassified. Why L2: the projection onto a subspace and onto an L2 ball around 0
# commute (the ball's projection only rescales), so every iterate lies exactly in the
# restricted ball; an L∞ ball and a subspace do not commute, since clipping
# coordinates leaves the subspace. As in the PMNIST chapter there is no [0, 1] box:
# projected images leave [0, 1] themselves, and a box would pull the perturbation out
# of its subspace as well.

# %% tags=["hide-input"]
curve = init_scale.curve_table(EVALS, S.eps_grid)
res.add_table("robustness", curve)
for sweep in ("init", "wd"):
    fig = plots.curves(curve, sweep)
    figures.save(fig, init_scale.STEM, f"robustness_{sweep}")

# %% [markdown]
# ```{glue:figure} fig_robustness_init
# :name: fig-initscale-robustness-init
# Robust accuracy under L2 PGD against the budget ε for each initialisation scale c
# (no weight decay): perturbations orthogonal to the data subspace (left), within it
# (middle) and unrestricted (right); two-layer network (top) and MLP (bottom). Lines
# are means over seeds, bands ± one standard deviation; ε = 0 is the clean accuracy.
# ```
#
# ```{glue:figure} fig_robustness_wd
# :name: fig-initscale-robustness-wd
# The same for each weight decay λ at c = 1.
# ```
#
# The claims compare robustness, not accuracy: a model that classifies fewer images
# correctly has fewer to lose. The survival rate is the share of the correctly
# classified attacked images that the attack does not flip, averaged over the ε grid
# (a discrete area under the curve, divided by the clean accuracy). The table gives
# it per grid point (mean ± standard deviation over seeds).

# %% tags=["hide-input"]
init_scale.summary_table(table)

# %% [markdown]
# Off the subspace, the two-layer network survives
# {glue:text}`survival_orthogonal_two_layer_base:.3f` ±
# {glue:text}`survival_orthogonal_two_layer_base_std:.3f` at the default scale,
# {glue:text}`survival_orthogonal_two_layer_small_init:.3f` ±
# {glue:text}`survival_orthogonal_two_layer_small_init_std:.3f` with the smallest
# scale and {glue:text}`survival_orthogonal_two_layer_large_wd:.3f` ±
# {glue:text}`survival_orthogonal_two_layer_large_wd_std:.3f` with the largest weight
# decay; the MLP {glue:text}`survival_orthogonal_mlp_base:.3f` ±
# {glue:text}`survival_orthogonal_mlp_base_std:.3f`,
# {glue:text}`survival_orthogonal_mlp_small_init:.3f` ±
# {glue:text}`survival_orthogonal_mlp_small_init_std:.3f` and
# {glue:text}`survival_orthogonal_mlp_large_wd:.3f` ±
# {glue:text}`survival_orthogonal_mlp_large_wd_std:.3f`. Within the subspace the same
# three models of the two-layer network survive
# {glue:text}`survival_subspace_two_layer_base:.3f`,
# {glue:text}`survival_subspace_two_layer_small_init:.3f` and
# {glue:text}`survival_subspace_two_layer_large_wd:.3f`; those of the MLP
# {glue:text}`survival_subspace_mlp_base:.3f`,
# {glue:text}`survival_subspace_mlp_small_init:.3f` and
# {glue:text}`survival_subspace_mlp_large_wd:.3f`. Unrestricted attacks find what
# the weaker of the two routes allows: {glue:text}`survival_full_two_layer_base:.3f`,
# {glue:text}`survival_full_two_layer_small_init:.3f` and
# {glue:text}`survival_full_two_layer_large_wd:.3f` (two-layer),
# {glue:text}`survival_full_mlp_base:.3f`,
# {glue:text}`survival_full_mlp_small_init:.3f` and
# {glue:text}`survival_full_mlp_large_wd:.3f` (MLP). Clean accuracies (all 10,000
# test images) are in the table of results: {glue:text}`accuracy_two_layer_base:.3f`
# and {glue:text}`accuracy_mlp_base:.3f` at the default scale,
# {glue:text}`accuracy_two_layer_small_init:.3f` and
# {glue:text}`accuracy_mlp_small_init:.3f` with the smallest,
# {glue:text}`accuracy_two_layer_large_wd:.3f` and
# {glue:text}`accuracy_mlp_large_wd:.3f` with the largest weight decay.
#
# ## What holds
#
# Each claim is judged on both networks by the claims ledger's rules; a compound
# claim holds as far as its weakest part. A difference *holds* when it exceeds twice
# the standard error of the difference of two seed means, √(s₁² + s₂²)/√n over the
# {glue:text}`n_seeds` seeds, and *holds only in sign* when it merely has the claimed
# sign. Claims 1 and 2 need, per network, a lower orthogonal share and a higher
# survival off the subspace than at the default (c = 1, λ = 0); claim 3 holds when
# the survival within the subspace of the smallest c and of the largest λ does not
# exceed the default's by more than twice that standard error.

# %% tags=["hide-input"]
WORDS = {"reproduced": "**holds** (beyond 2 standard errors over seeds)",
         "partly": "**holds only in sign** (within 2 standard errors over seeds)",
         "not reproduced": "**does not hold**"}
verdicts = claims.verdicts(init_scale.STEM, res.metrics)
for key, verdict in verdicts.verdict.items():
    name = key.replace("-", "_")
    res.add(f"claim_{name}_holds", int(verdict == "reproduced"))
    res.add(f"claim_{name}_sign_holds", int(verdict != "not reproduced"))
    glue(f"verdict_{name}", Markdown(WORDS[verdict]), display=False)
verdicts[["claim", "verdict", "measured", "rule"]].style.hide(axis="index")

# %% [markdown]
# 1. *A smaller initialisation lowers the orthogonal share and raises off-subspace
#    robustness*: {glue:md}`verdict_initscale_small_init`.
# 2. *Weight decay does the same*: {glue:md}`verdict_initscale_weight_decay`.
# 3. *Within the subspace nothing improves alongside*:
#    {glue:md}`verdict_initscale_no_gain_in_subspace`.
#
# Side by side, the change of survival against the default model, computed from the
# numbers above:

# %% tags=["remove-input"]
display(Markdown(init_scale.gains_markdown(res.metrics)))

# %% [markdown]
# ## Two routes to the same end
#
# The PMNIST chapter trains a Manifold model whose loss adds α‖∇ₓ‖/‖P∇ₓ‖: an
# explicit pull of the input gradient onto the data subspace, paid for with double
# backpropagation. Here no term in the loss mentions the gradient, yet a small
# initialisation or weight decay reaches the same end implicitly: they shrink the
# only source of the gradient's off-subspace part, the first layer's off-subspace
# weights, which cross-entropy training never touches. Both routes close the door
# orthogonal to the data, and neither closes the one within it: once the first is
# closed, an unrestricted attack here is about as strong as one within the
# subspace, consistent with the PMNIST chapter's finding that aligned gradients buy
# little against unrestricted (there L∞) PGD. A model robust to all small
# perturbations needs to be robust within the data subspace itself, which neither
# route provides. The PMNIST chapter's numbers, where its results are available in
# this build:

# %% tags=["remove-input"]
try:
    pm_results = read_results(pmnist.STEM)
except FileNotFoundError:
    pm_results = None
if pm_results is None:
    text = "- The PMNIST chapter's results are not available in this build."
else:
    def off(cosine):  # orthogonal share from the cosine ‖Pg‖/‖g‖
        return math.sqrt(max(0.0, 1 - cosine ** 2))

    base = pm_results["alignment_cosine_median_baseline"]
    aligned = pm_results["alignment_cosine_median_manifold"]
    ours = table[(table.init_scale == 1) & (table.weight_decay == 0)
                 & (table.arch == "MLP")].orth_share_ce.mean()
    text = (
        f"- PMNIST chapter, cross-entropy gradients: the Adam-trained Baseline "
        f"keeps an orthogonal share of about {off(base):.3f}, the Manifold model "
        f"{off(aligned):.3f} (from their median cosines {base:.3f} and "
        f"{aligned:.3f}); the SGD-trained MLP here, at the default scale, "
        f"{ours:.3f}."
    )
display(Markdown(text))

# %% [markdown]
# ## Cost

# %% tags=["hide-input"]
res.add("paper_estimate_min", init_scale.estimate_seconds("paper") / 60)
res.add("chapter_time_s", time.perf_counter() - started)
_ = res.add("chapter_cpu_time_s", time.process_time() - cpu_started)

# %% [markdown]
# This run took {glue:text}`chapter_time_s:.0f` s ({glue:text}`chapter_cpu_time_s:.0f`
# s of CPU time on {glue:text}`torch_threads` torch threads), units included unless
# they were cached. From the per-image rates measured on the reference machine (a
# 2-core CPU with another job running), the `paper` profile (all training images,
# more epochs, scales, decays, attacked images and PGD steps; see the module
# `advmanifold.chapters.init_scale`) needs about
# {glue:text}`paper_estimate_min:.0f` minutes of units there;
# `python -m advmanifold.book --plan --profile paper` gives the estimate for your
# machine.

# %% tags=["hide-input"]
res.add_table("per_seed", pd.DataFrame(PER_SEED))
_ = res.write()
