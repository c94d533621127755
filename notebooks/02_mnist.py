# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # MNIST: an approximated manifold
#
# On FONTS the data manifold is known exactly. On MNIST it is not, so Stutz et al.
# {cite}`stutz2019disentangling` approximate it twice, in two different ways:
#
# - to *generate* on-manifold adversarial examples they train one VAE-GAN
#   {cite}`larsen2016autoencoding` per digit and attack the classifier through the
#   decoder of the true class, in its 10-dimensional latent space;
# - to *measure* how far an image lies from the manifold they span a local linear
#   subspace with the 50 nearest training images and take the distance to it.
#
# The claim to check: on-manifold adversarial examples lie about as far from this
# approximate manifold as ordinary test images, while regular L∞ adversarial examples
# {cite}`madry2018towards` lie clearly farther away and leave it almost orthogonally.

# %% tags=["remove-cell"]
import sys, subprocess
if "google.colab" in sys.modules:  # on Colab: install the companion package
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "git+https://github.com/adversarial-manifolds/companion.git"], check=True)

# %% tags=["parameters"]
profile = "quick"
seed = 0
device = "cpu"
data_dir = None
n_test = None             # test images to attack and measure
classifier_epochs = None  # ConvNet epochs
vaegan_epochs = None      # VAE-GAN epochs
restarts = None           # attack restarts

# %%
import time

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
import torch
from myst_nb import glue

from advmanifold import attacks, cache, models, paths, profiles, training
from advmanifold.data import load_mnist
from advmanifold.generative import cached_vaegans, decode_by_class, encode_by_class, onmanifold_attack, sample
from advmanifold.manifolds.knn import anchored_projection, knn_projection, nearest_neighbours
from advmanifold.results import Results

SETTINGS = {
    # smoke: only checks the code path on tiny subsets
    "smoke": dict(n_train=2000, classifier_epochs=1, vaegan_per_class=24, vaegan_batch=8, vaegan_epochs=1,
                  n_test=40, restarts=1, steps=10, k=50, n_recon=200),
    # quick: full MNIST for the classifier and the k-NN search; the VAE-GANs see the first
    # 400 images of each digit, in batches of 32 (our choices, to fit a 2-core CPU budget)
    "quick": dict(n_train=60000, classifier_epochs=2, vaegan_per_class=400, vaegan_batch=32, vaegan_epochs=10,
                  n_test=1000, restarts=2, steps=40, k=50, n_recon=2000),
    # paper: the original settings (VAE-GAN batch 64 is the original code's default)
    "paper": dict(n_train=60000, classifier_epochs=20, vaegan_per_class=None, vaegan_batch=64, vaegan_epochs=30,
                  n_test=1000, restarts=5, steps=40, k=50, n_recon=2000),
}
S = profiles.select(profile, SETTINGS, n_test=n_test, classifier_epochs=classifier_epochs,
                    vaegan_epochs=vaegan_epochs, restarts=restarts)
torch.manual_seed(seed)
res = Results("02_mnist", profile=profile, seed=seed)
FIG = paths.figures_dir()
dev = torch.device(device)
EPS, ETA, Z_BOUND = 0.3, 0.3, 2.0   # image-space ε, latent η, validity bound on ‖z̃‖∞ (the paper's values)
print(S)


def save(fig, name):
    fig.savefig(FIG / f"02_mnist_{name}.png", dpi=150, bbox_inches="tight")
    glue(name, fig, display=False)
    plt.close(fig)


# %% [markdown]
# ## Data and classifier
#
# The classifier is the same convolutional network as in the FONTS chapter: three
# convolutions (kernel 4, stride 2, 16 → 32 → 64 channels, batch norm, ReLU) and two
# linear layers, trained with Adam {cite}`kingma2015adam` (lr 0.01, ×0.95 per epoch,
# weight decay 10⁻⁴, batch 100) on MNIST {cite}`lecun1998gradient`.

# %%
x_train, y_train = load_mnist(True, data_dir=data_dir, limit=S.n_train)
x_test, y_test = load_mnist(False, data_dir=data_dir)
x_train, y_train, x_test, y_test = (t.to(dev) for t in (x_train, y_train, x_test, y_test))

clf_config = {"model": "ConvNet", "epochs": S.classifier_epochs, "lr": 0.01, "lr_decay": 0.95,
              "weight_decay": 1e-4, "batch_size": 100, "seed": seed,
              "data": cache.fingerprint(x_train, y_train)}


def train_classifier():
    model = models.ConvNet().to(dev)
    training.train(model, x_train, y_train, training.cross_entropy(), epochs=S.classifier_epochs,
                   batch_size=100, lr=0.01, weight_decay=1e-4, lr_decay=0.95, seed=seed, desc="ConvNet on MNIST")
    return model.state_dict()


classifier = models.ConvNet().to(dev)
classifier.load_state_dict(cache.cached("convnet-mnist", clf_config, train_classifier))
classifier.eval()
for p in classifier.parameters():
    p.requires_grad_(False)
res.add("n_train", len(x_train))
res.add("classifier_epochs", S.classifier_epochs)
acc = res.add("classifier_test_accuracy", models.accuracy(classifier, x_test, y_test))
print(f"test accuracy {acc:.4f}")

# %% [markdown]
# After {glue:text}`classifier_epochs:d` epoch(s) on {glue:text}`n_train:d` training images the
# classifier reaches a test accuracy of {glue:text}`classifier_test_accuracy:.2%`.
#
# ## Ten class-specific VAE-GANs
#
# Each digit gets its own VAE-GAN with a 10-dimensional latent space: a convolutional
# encoder (64 → 128 → 256 channels) predicting μ and log σ², a decoder of transposed
# convolutions ending in a sigmoid, and a discriminator built from the classifier's
# convolution stack. The loss is the KL divergence, an L1 reconstruction term weighted by
# β (2.25; 5 for the ones, 3 for the sevens) and the GAN loss with weight 1; Adam with
# betas (0.5, 0.9), lr 0.005 decayed by 0.9 per epoch. The package keeps the ten models in
# one network of grouped layers that never exchange information; on a GPU it trains them
# as that one network, on the CPU it steps ten separate networks per batch, which we
# measured to be faster there than grouped convolutions.

# %%
if S.vaegan_per_class is None:
    vg_idx = torch.arange(len(y_train), device=dev)
else:  # the first vaegan_per_class training images of every digit
    order = torch.argsort(y_train, stable=True)
    counts = torch.bincount(y_train, minlength=10)
    starts = torch.cumsum(counts, 0) - counts
    rank = torch.arange(len(order), device=dev) - starts[y_train[order]]
    vg_idx = order[rank < S.vaegan_per_class].sort().values
t0 = time.perf_counter()
vaegans, vg_history = cached_vaegans(x_train[vg_idx], y_train[vg_idx], epochs=S.vaegan_epochs,
                                     batch_size=S.vaegan_batch, seed=seed)
res.add("vaegan_seconds_incl_cache", time.perf_counter() - t0)
res.add("vaegan_train_images", len(vg_idx))
res.add("vaegan_epochs", S.vaegan_epochs)
res.add("vaegan_final_l1_per_pixel", vg_history[-1]["l1"] / 784)

n_recon = res.add("n_recon", S.n_recon)
mu_test = encode_by_class(vaegans, x_test[:n_recon], y_test[:n_recon])
rec_test = decode_by_class(vaegans, mu_test, y_test[:n_recon])
res.add("vaegan_test_l1_per_pixel", (rec_test - x_test[:n_recon]).abs().mean())
res.add("vaegan_reconstruction_accuracy", (models.predict(classifier, rec_test) == y_test[:n_recon]).float().mean())
res.add("latent_mean_linf_above_bound", (mu_test.abs().amax(1) > Z_BOUND).float().mean())
pd.DataFrame(vg_history)

# %%
n_show = 3
first = torch.stack([(y_test[:n_recon] == c).nonzero()[0, 0] for c in range(10)])
samples = sample(vaegans, n_show, seed=seed).cpu()
fig, axes = plt.subplots(2 + n_show, 10, figsize=(10, 1.05 * (2 + n_show)))
rows = [x_test[first, 0].cpu(), rec_test[first, 0].cpu()] + [samples[r] for r in range(n_show)]
names = ["test image", "reconstruction"] + [f"sample {r + 1}" for r in range(n_show)]
for r, (row, name) in enumerate(zip(rows, names)):
    for c in range(10):
        ax = axes[r, c]
        ax.imshow(row[c], cmap="gray", vmin=0, vmax=1)
        ax.set_xticks([]), ax.set_yticks([])
        if c == 0:
            ax.set_ylabel(name, rotation=0, ha="right", va="center", fontsize=8)
        if r == 0:
            ax.set_title(f"digit {c}", fontsize=9)
fig.tight_layout()
save(fig, "vaegan_grid")

# %% [markdown]
# ```{glue:figure} vaegan_grid
# :name: fig-mnist-vaegan
# One test image per digit, its reconstruction μ ↦ dec(μ) by the VAE-GAN of its class,
# and samples dec(z), z ~ N(0, I), from each class's model. Reconstructions keep the
# test image's style; samples look like plausible digits of their class.
# ```
#
# On the first {glue:text}`n_recon:d` test images the reconstructions differ from the images by
# {glue:text}`vaegan_test_l1_per_pixel:.3f` per pixel (mean absolute error) and the classifier
# labels {glue:text}`vaegan_reconstruction_accuracy:.1%` of them correctly. Note for later:
# the encoder mean already has ‖μ‖∞ > 2 for {glue:text}`latent_mean_linf_above_bound:.1%` of
# these images, which matters for the validity rule of the on-manifold attack.
#
# ## Regular and on-manifold adversarial examples
#
# We attack the first {glue:text}`n_test:d` test images, keeping those that the classifier
# labels correctly *and* whose reconstruction dec(μ) it labels correctly (otherwise an
# on-manifold attack would "succeed" without moving; this filter is our choice). Both
# attacks use the package's one PGD implementation: 40 sign steps of size 2.5 ε / 40
# (fewer in `smoke`), a random start, the first iterate that changes the label is kept (early stop), and
# restarts for the examples not fooled yet. (The original code stepped with Adam on δ;
# we use sign-PGD {cite}`madry2018towards`.)
#
# - **regular**: on the image, ‖δ‖∞ ≤ 0.3, pixels kept in [0, 1];
# - **on-manifold**: on the latent code z of the true class's VAE-GAN, forward pass
#   classifier ∘ dec_y, ‖z − μ(x)‖∞ ≤ 0.3 with no box; an example counts only if
#   ‖z̃‖∞ ≤ 2 (the paper's rule).

# %%
n = res.add("n_test", min(S.n_test, len(x_test)))
x0, y0 = x_test[:n], y_test[:n]
mu0 = encode_by_class(vaegans, x0, y0)
keep = (models.predict(classifier, x0) == y0) & (models.predict(classifier, decode_by_class(vaegans, mu0, y0)) == y0)
xa, ya = x0[keep], y0[keep]
res.add("n_attacked", len(xa))
res.add("attacked_fraction", keep.float().mean())

t0 = time.perf_counter()
regular = attacks.pgd(classifier, xa, ya, eps=EPS, steps=S.steps, lower=0.0, upper=1.0,
                      restarts=S.restarts, mode="first", seed=seed)
res.add("regular_attack_seconds", time.perf_counter() - t0)
t0 = time.perf_counter()
onman = onmanifold_attack(classifier, vaegans, xa, ya, eta=ETA, bound=Z_BOUND, steps=S.steps,
                          restarts=S.restarts, seed=seed)
res.add("onmanifold_attack_seconds", time.perf_counter() - t0)

res.add("regular_success_rate", regular.success.float().mean())
res.add("regular_linf_max", (regular.adversarial - xa).abs().amax())
res.add("onmanifold_fooled_rate", onman.fooled.float().mean())
res.add("onmanifold_valid_rate", onman.valid.float().mean())
res.add("onmanifold_success_rate", onman.success.float().mean())
res.add("onmanifold_invalid_rate", (~onman.valid).float().mean())
# P(‖z‖∞ > 2) for z ~ N(0, I₁₀): how strict the validity rule is even for prior samples
res.add("prior_linf_above_bound", 1 - torch.erf(torch.tensor(Z_BOUND / 2 ** 0.5, dtype=torch.float64)) ** 10)
res.add("onmanifold_latent_linf_step_max", (onman.z - onman.z0).abs().amax())
pred_reg = models.predict(classifier, regular.adversarial)
pred_on = models.predict(classifier, onman.images)

# %% [markdown]
# Out of {glue:text}`n_test:d` test images, {glue:text}`n_attacked:d` pass the filter. The regular
# attack fools the classifier on {glue:text}`regular_success_rate:.1%` of them (largest
# perturbation ‖δ‖∞ = {glue:text}`regular_linf_max:.3f`). In latent space the classifier is fooled
# on {glue:text}`onmanifold_fooled_rate:.1%`, but only {glue:text}`onmanifold_valid_rate:.1%` of the
# final codes satisfy ‖z̃‖∞ ≤ 2, so the counted on-manifold success rate is
# {glue:text}`onmanifold_success_rate:.1%`. The validity rule is strict for a 10-dimensional
# code: even for z ~ N(0, I) the largest of ten coordinates exceeds 2 in magnitude with
# probability {glue:text}`prior_linf_above_bound:.1%`.

# %%
both = (regular.success & onman.success).nonzero().squeeze(1)
if len(both) == 0:  # nothing to show for both attacks (e.g. in smoke): show the first examples
    both = torch.arange(min(8, len(xa)), device=dev)
by_class = both[torch.argsort(ya[both], stable=True)]
new_class = torch.ones(len(by_class), dtype=torch.bool, device=dev)
new_class[1:] = ya[by_class][1:] != ya[by_class][:-1]
show = by_class[new_class][:8]   # one example per digit where possible
fig, axes = plt.subplots(3, len(show), figsize=(1.3 * len(show), 4.4), squeeze=False)
rows = [(xa, models.predict(classifier, xa), "clean"), (regular.adversarial, pred_reg, "regular"),
        (onman.images, pred_on, "on-manifold")]
for r, (imgs, pred, name) in enumerate(rows):
    for c, i in enumerate(show.tolist()):
        ax = axes[r, c]
        ax.imshow(imgs[i, 0].cpu(), cmap="gray", vmin=0, vmax=1)
        ax.set_xticks([]), ax.set_yticks([])
        ax.set_title(f"pred {pred[i].item()}", fontsize=8, color="black" if pred[i] == ya[i] else "crimson")
        if c == 0:
            ax.set_ylabel(name, fontsize=9)
fig.tight_layout()
save(fig, "adversarial_grid")

# %% [markdown]
# ```{glue:figure} adversarial_grid
# :name: fig-mnist-adversarial
# Test images (top), regular L∞ adversarial examples with ε = 0.3 (middle) and
# on-manifold adversarial examples from the class's VAE-GAN (bottom), with the
# classifier's prediction above each image (red: wrong). Regular perturbations look like
# noise; on-manifold ones change the shape of the digit.
# ```
#
# ## Distance to the k-NN manifold
#
# Around a test image x, the manifold is approximated by the affine subspace
# x + span{x₁ − x, …, x₅₀ − x} spanned by its 50 nearest training images (exact search
# over all training images). An adversarial example x̃ = x + δ is projected onto it by
# least squares; its distance is the norm of the residual and the angle between δ and
# the subspace is arcsin(distance / ‖δ‖₂), so 90° means δ is orthogonal to it.
#
# For a *test image* the article does not say what δ is; x itself lies in its own
# subspace, so we anchor the subspace at the test image's nearest training image x_a
# (spanned by x_a's own 50 nearest training images) and measure x = x_a + δ. This
# treats a test image like an adversarial example: a point reached from a nearby
# on-manifold image (our choice).

# %%
def nonempty(mask, what):
    """The examples to measure; with tiny models (smoke) an attack may fool nothing, and then
    the final iterates of all attacked examples are measured instead, so the code path runs."""
    if mask.any():
        return mask
    print(f"note: no {what}; measuring the final iterates of all attacked examples instead")
    return torch.ones_like(mask)


reg_ok = nonempty(regular.success, "successful regular attack")
on_ok = nonempty(onman.success, "successful on-manifold attack")
t0 = time.perf_counter()
neighbours, _ = nearest_neighbours(xa, x_train, S.k)                 # neighbours of the clean x
proj_reg = knn_projection(regular.adversarial[reg_ok], xa[reg_ok], x_train, S.k, neighbours=neighbours[reg_ok])
proj_on = knn_projection(onman.images[on_ok], xa[on_ok], x_train, S.k, neighbours=neighbours[on_ok])
knn_seconds = time.perf_counter() - t0
proj_test = anchored_projection(xa, x_train, S.k)
res.add("knn_k", S.k)
res.add("n_onmanifold_measured", int(on_ok.sum()))
res.add("knn_examples", len(xa))
res.add("knn_projection_seconds", knn_seconds)
res.add("knn_projection_seconds_per_1000", knn_seconds / len(xa) * 1000)

frames = [proj_test.to_frame(kind="test"), proj_on.to_frame(kind="on-manifold adversarial"),
          proj_reg.to_frame(kind="regular adversarial")]
dist = pd.concat(frames, ignore_index=True)
res.add_table("distances", dist)
for key, p in (("test", proj_test), ("onmanifold", proj_on), ("regular", proj_reg)):
    res.add(f"knn_distance_{key}_median", p.distance.median())
    res.add(f"delta_l2_{key}_median", p.delta_norm.median())
    res.add(f"{key}_angle_deg_median", p.angle_deg.nanmedian())
    res.add(f"{key}_distance_over_l2_median", (p.distance / p.delta_norm).nanmedian())
res.add("knn_distance_onmanifold_over_test", res.metrics["knn_distance_onmanifold_median"]
        / res.metrics["knn_distance_test_median"])
res.add("knn_distance_regular_over_test", res.metrics["knn_distance_regular_median"]
        / res.metrics["knn_distance_test_median"])
res.add("regular_angle_deg_min", proj_reg.angle_deg.min())
# all latent codes that fool the classifier, valid or not (more examples, same construction)
fooled = nonempty(onman.fooled, "fooling latent code")
proj_fooled = knn_projection(onman.images[fooled], xa[fooled], x_train, S.k, neighbours=neighbours[fooled])
res.add("knn_distance_onmanifold_fooled_median", proj_fooled.distance.median())
# baseline: a random corner of the L∞ ball (δ = ±ε per pixel, kept in [0, 1]) around the same x
g = torch.Generator().manual_seed(seed)
corner = (xa + EPS * (2 * torch.randint(0, 2, xa.shape, generator=g).to(xa) - 1)).clamp(0, 1)
proj_rand = knn_projection(corner, xa, x_train, S.k, neighbours=neighbours)
res.add("random_angle_deg_median", proj_rand.angle_deg.nanmedian())
res.add("random_distance_over_l2_median", (proj_rand.distance / proj_rand.delta_norm).nanmedian())
# a direction drawn uniformly at random would keep a fraction k/784 of its squared norm in the span
res.add("isotropic_angle_deg", np.degrees(np.arcsin(np.sqrt(1 - S.k / 784))))
dist.groupby("kind")[["distance", "delta_l2", "angle_deg"]].median()

# %% [markdown]
# Finding the 50 neighbours of {glue:text}`knn_examples:d` images among {glue:text}`n_train:d`
# training images and projecting both kinds of adversarial examples took
# {glue:text}`knn_projection_seconds:.1f` s ({glue:text}`knn_projection_seconds_per_1000:.1f` s per
# 1,000 examples).

# %%
palette = {"test": "tab:green", "on-manifold adversarial": "tab:blue", "regular adversarial": "tab:red"}
fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
sns.histplot(dist, x="distance", hue="kind", palette=palette, stat="density", common_norm=False,
             bins=40, element="step", ax=axes[0])
axes[0].set_xlabel("distance to the k-NN subspace ‖x̃ − π(x̃)‖₂")
axes[0].set_ylabel("density")
sns.histplot(dist, x="angle_deg", hue="kind", palette=palette, stat="density", common_norm=False,
             bins=np.linspace(0, 90, 37), element="step", ax=axes[1])
axes[1].set_xlabel("angle between δ and the subspace (degrees)")
axes[1].set_ylabel("density")
fig.tight_layout()
save(fig, "distance_histograms")

# %% [markdown]
# ```{glue:figure} distance_histograms
# :name: fig-mnist-distances
# Left: distance to the local k-NN subspace for test images, on-manifold adversarial
# examples and regular adversarial examples (densities; each kind integrates to one).
# Right: angle between the perturbation δ and the subspace. The article's claim is that
# the test and on-manifold histograms nearly coincide while regular adversarial examples
# lie farther away, nearly orthogonally; the medians below say how far this run agrees.
# ```

# %%
fig, ax = plt.subplots(figsize=(5.2, 4.6))
sns.scatterplot(dist, x="delta_l2", y="distance", hue="kind", palette=palette, s=10, alpha=0.6,
                linewidth=0, ax=ax)
top = float(dist[["delta_l2", "distance"]].max().max()) * 1.05
ax.plot([0, top], [0, top], color="gray", lw=1, ls="--", label="distance = ‖δ‖₂")
ax.set_xlim(0, top), ax.set_ylim(0, top)
ax.set_xlabel("‖δ‖₂ (perturbation norm)")
ax.set_ylabel("distance to the k-NN subspace")
ax.legend(fontsize=8)
fig.tight_layout()
save(fig, "distance_vs_l2")

# %% [markdown]
# ```{glue:figure} distance_vs_l2
# :name: fig-mnist-distance-l2
# Distance to the k-NN subspace against the norm of the perturbation. Points on the
# dashed diagonal leave the subspace orthogonally; the closer a cloud lies to it, the
# more of its perturbation points away from the subspace.
# ```
#
# The medians, in pixel units (images in [0, 1], 784 pixels):
#
# | | distance | ‖δ‖₂ | distance / ‖δ‖₂ | angle |
# |---|---|---|---|---|
# | test | {glue:text}`knn_distance_test_median:.2f` | {glue:text}`delta_l2_test_median:.2f` | {glue:text}`test_distance_over_l2_median:.2f` | {glue:text}`test_angle_deg_median:.1f`° |
# | on-manifold adversarial | {glue:text}`knn_distance_onmanifold_median:.2f` | {glue:text}`delta_l2_onmanifold_median:.2f` | {glue:text}`onmanifold_distance_over_l2_median:.2f` | {glue:text}`onmanifold_angle_deg_median:.1f`° |
# | regular adversarial | {glue:text}`knn_distance_regular_median:.2f` | {glue:text}`delta_l2_regular_median:.2f` | {glue:text}`regular_distance_over_l2_median:.2f` | {glue:text}`regular_angle_deg_median:.1f`° |
#
# On-manifold adversarial examples lie at {glue:text}`knn_distance_onmanifold_over_test:.2f` times
# the median test distance, regular ones at {glue:text}`knn_distance_regular_over_test:.2f` times.
# The distance of regular adversarial examples is {glue:text}`regular_distance_over_l2_median:.2f`
# of ‖δ‖₂ (median angle {glue:text}`regular_angle_deg_median:.1f`°, smallest
# {glue:text}`regular_angle_deg_min:.1f`°). Two yardsticks put the angle in context. A random
# corner of the same L∞ ball (δ = ±0.3 per pixel, clipped to [0, 1]) leaves the subspace at a
# median {glue:text}`random_angle_deg_median:.1f`° (distance / ‖δ‖₂ =
# {glue:text}`random_distance_over_l2_median:.2f`), and a direction drawn uniformly at random
# in 784 dimensions keeps only 50/784 of its squared norm inside a 50-dimensional span,
# an angle of {glue:text}`isotropic_angle_deg:.1f`°. In a 784-dimensional space almost every
# direction is "nearly orthogonal" to a 50-dimensional subspace, so the angle says that the
# adversarial perturbation is not aligned with the k-NN tangent directions, not that it was
# pushed away from them.
#
# Counting every latent code that fools the classifier, valid or not, the on-manifold
# median distance is {glue:text}`knn_distance_onmanifold_fooled_median:.2f`.
#
# ### Whose neighbours?
#
# The article spans the subspace with the neighbours of the clean image x; the original
# code searched the neighbours of x̃ (in a 40-dimensional PCA space). How much does the
# choice matter for regular adversarial examples, with exact search in pixel space?

# %%
alt = knn_projection(regular.adversarial[reg_ok], xa[reg_ok], x_train, S.k, neighbours_of="perturbed")
overlap = (alt.neighbours.unsqueeze(2) == proj_reg.neighbours.unsqueeze(1)).any(2).float().mean(1)
res.add("regular_neighbour_overlap_median", overlap.median())
_ = res.add("knn_distance_regular_median_perturbed_neighbours", alt.distance.median())

# %% [markdown]
# The two neighbour sets share a median fraction of
# {glue:text}`regular_neighbour_overlap_median:.2f` of their members, and with the neighbours of x̃
# the median distance of regular adversarial examples is
# {glue:text}`knn_distance_regular_median_perturbed_neighbours:.2f` (against
# {glue:text}`knn_distance_regular_median:.2f` with those of x).
#
# ## Independent attack check
#
# The regular success rate above comes from our PGD. The same classifier is attacked again
# on the first {glue:text}`verify_n:d` test images with a stronger run of ours
# ({glue:text}`verify_strong_steps:d` steps, {glue:text}`verify_restarts:d` restarts) and with
# torchattacks' FGSM, PGD and APGD-CE {cite}`kim2020torchattacks,croce2020reliable`, code this
# project did not write; an image counts as robust only if it survives all of them.

# %%
from advmanifold import verification

VERIFY = {"smoke": dict(n=32, steps=5, strong=10, restarts=1), "quick": dict(n=300, steps=40, strong=100, restarts=2),
          "paper": dict(n=1000, steps=40, strong=200, restarts=5)}[profile]
res.add("verify_n", VERIFY["n"])
res.add("verify_strong_steps", VERIFY["strong"])
res.add("verify_restarts", VERIFY["restarts"])
check = verification.verify(classifier, x_test[:VERIFY["n"]], y_test[:VERIFY["n"]], EPS, box=(0.0, 1.0),
                            steps=VERIFY["steps"], strong_steps=VERIFY["strong"], restarts=VERIFY["restarts"],
                            seed=seed)
accuracies = pd.Series(check.accuracies(), name=f"accuracy at ε = {EPS}")
res.add("worst_case_robust_accuracy", accuracies["worst case"])
res.add("verify_clean_accuracy", check.clean.float().mean())
res.add_table("verification", accuracies.rename_axis("attack").reset_index())
accuracies.round(3).to_frame()

# %% [markdown]
# Clean accuracy on these images is {glue:text}`verify_clean_accuracy:.3f`; under the
# strongest combination of attacks it is {glue:text}`worst_case_robust_accuracy:.3f`. The
# regular adversarial examples above are therefore not an artefact of one attack
# implementation.
#
# ## What reproduced and what did not
#
# The article's three statements, with this run's numbers (the claims ledger grades them
# with fixed thresholds):
#
# - *On-manifold adversarial examples are about as far from the k-NN manifold as test
#   images.* Median distances {glue:text}`knn_distance_onmanifold_median:.2f` against
#   {glue:text}`knn_distance_test_median:.2f`, a ratio of
#   {glue:text}`knn_distance_onmanifold_over_test:.2f`. The test distance depends on how δ is
#   defined for a test image (our choice above); the on-manifold median rests on
#   {glue:text}`n_onmanifold_measured:d` examples.
# - *Regular adversarial examples lie clearly farther away.* Median
#   {glue:text}`knn_distance_regular_median:.2f`, {glue:text}`knn_distance_regular_over_test:.2f`
#   times the test distance.
# - *They leave the manifold nearly orthogonally.* Distance / ‖δ‖₂ =
#   {glue:text}`regular_distance_over_l2_median:.2f`, median angle
#   {glue:text}`regular_angle_deg_median:.1f`°; for comparison a random corner of the same
#   L∞ ball gives {glue:text}`random_angle_deg_median:.1f`° and an isotropic random direction
#   {glue:text}`isotropic_angle_deg:.1f`°, so "nearly orthogonal" is the default in 784
#   dimensions rather than a property singling out adversarial perturbations.
# - *Success rates.* {glue:text}`regular_success_rate:.1%` for regular adversarial examples;
#   {glue:text}`onmanifold_success_rate:.1%` for on-manifold ones. In latent space the
#   classifier is fooled on {glue:text}`onmanifold_fooled_rate:.1%` of the examples, and the
#   ‖z̃‖∞ ≤ 2 rule discards {glue:text}`onmanifold_invalid_rate:.1%` of the final codes, fooled
#   or not, because our encoders place {glue:text}`latent_mean_linf_above_bound:.1%` of the test
#   images' means outside that box to begin with.
# - *Our departures.* Exact neighbour search in pixel space instead of a kd-tree in a
#   40-dimensional PCA space; sign-PGD instead of Adam steps; the test-image δ defined
#   above; MNIST instead of EMNIST digits; in the `quick` profile two classifier epochs and
#   VAE-GANs trained on {glue:text}`vaegan_train_images:d` images for
#   {glue:text}`vaegan_epochs:d` epochs.

# %%
res.write()
