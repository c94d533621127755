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
# # Using the package
#
# The chapters are built from the science wing of the companion package,
# `advmanifold.science`, which can be used on its own: this page is a worked example
# to copy. It puts a data set on a known manifold, trains a classifier, attacks it off
# and on the manifold, and measures how well its input gradients follow the manifold,
# importing nothing but `advmanifold.science` (every public name is listed in
# {doc}`../book/api`). The sizes are tiny and the same at every profile, so that the
# page runs in seconds on one CPU core; to study a model of your own, replace the
# classifier of step 2 by any `torch.nn.Module` that maps images to logits.

# %% tags=["remove-cell"]
import sys, subprocess
if "google.colab" in sys.modules:  # on Colab: install the companion package
    subprocess.run([sys.executable, "-m", "pip", "install", "-q",
                    "git+https://github.com/adversarial-manifolds/companion.git"],
                   check=True)

# %% tags=["parameters"]
profile = "quick"   # the sizes below are the same at every profile
seed = 0
device = "cpu"
data_dir = None     # a folder holding MNIST/raw/; None: $ADVMANIFOLD_DATA or the cache
n_train = 5000      # training images (the first n of MNIST's training set)
n_test = 200        # test images, attacked and measured
epochs = 3          # training epochs of each classifier
eps = 0.1           # L∞ radius of the attack in image space
eps_latent = 0.5    # L∞ radius of the attack on the manifold, in PCA coordinates
steps = 20          # PGD steps of each attack
threads = 1         # torch's CPU threads (None: one per core); 1 is fastest here

# %%
import pandas as pd
import torch

from advmanifold.science import alignment, attacks, models, training
from advmanifold.science.data import load_mnist
from advmanifold.science.manifolds.linear import LinearManifold

if threads is not None:
    torch.set_num_threads(int(threads))
_ = torch.manual_seed(seed)

# %% [markdown]
# ## 1. Data on a known manifold
#
# As in {cite}`geyer2023relationship`, a PCA with k = 28 components is fitted on
# MNIST's training images, and every image is replaced by its projection onto the
# span of the components ("PMNIST"). The data then lie *exactly* on a known linear
# manifold, whose tangent space is the same everywhere, with projector P = WᵀW.
# `LinearManifold` holds W and projects points (`project`) and directions
# (`project_vectors`); the alignment measures of step 5 need nothing more than the
# latter, so a curved manifold (for instance `TangentSpace` of the FONTS decoder) can
# take its place.

# %%
x_train, y_train = load_mnist(train=True, data_dir=data_dir, limit=n_train)
x_test, y_test = load_mnist(train=False, data_dir=data_dir, limit=n_test)
x_train, y_train = x_train.to(device), y_train.to(device)
x_test, y_test = x_test.to(device), y_test.to(device)

manifold = LinearManifold.fit(x_train, k=28)
x_train, x_test = manifold.project(x_train), manifold.project(x_test)
print(f"a {manifold.k}-dimensional subspace of R^{manifold.dim}; largest distance "
      f"of a projected test image to it: {manifold.distance(x_test).max():.1e}")

# %% [markdown]
# ## 2. A classifier
#
# Any differentiable map from a batch of images to logits can be attacked and
# measured. Here it is a small MLP trained with `training.train` (Adam on the
# cross-entropy, shuffled mini-batches, seeded). `models.freeze` then puts it in
# evaluation mode with no parameter requiring a gradient: the attacks and the
# alignment measure differentiate with respect to the input only.

# %%
def mlp():
    return models.MLP(sizes=(784, 256, 10)).to(device)


model = mlp()
history = training.train(model, x_train, y_train, epochs=epochs, seed=seed,
                         progress=False)
models.freeze(model)
print(f"training loss {history[-1]['loss']:.3f} after {epochs} epochs, "
      f"test accuracy {models.accuracy(model, x_test, y_test):.3f}")

# %% [markdown]
# ## 3. An attack in image space
#
# `attacks.pgd` runs projected gradient ascent on the cross-entropy
# {cite}`madry2018towards` of any `forward` map, keeping each iterate v in the L∞
# ball of radius ε around its start and in the box [`lower`, `upper`]. In image space
# the usual box is [0, 1], but projected images leave it, and clamping to it would
# push clean points off the manifold, so on PMNIST the ball is the only constraint
# (`lower=upper=None`). The perturbation δ = x̃ − x is then measured against the
# manifold: the distance of x̃ to it, and the angle between δ and the subspace (90°:
# δ leaves the manifold orthogonally).

# %%
def attack_off_manifold(model):
    """PGD on the image itself: δ anywhere in the ε-ball."""
    result = attacks.pgd(model, x_test, y_test, eps=eps, steps=steps,
                         lower=None, upper=None, seed=seed)
    delta = result.adversarial - x_test
    assert delta.abs().max() <= eps + 1e-6  # ‖δ‖∞ ≤ ε, up to float rounding
    return result, result.adversarial


def measure(result, x_adv):
    """How often the attack succeeds, and where its examples lie."""
    projection = manifold.projection(x_adv, x_test)  # x̃ against the reference x
    return {
        "success rate": result.success_rate,
        "mean ‖δ‖₂ (image)": projection.delta_norm.mean().item(),
        "mean distance to the manifold": projection.distance.mean().item(),
        "mean angle of δ to the manifold (°)": projection.angle_deg.nanmean().item(),
    }


off, x_off = attack_off_manifold(model)
print(f"largest |δ| of a pixel: {(x_off - x_test).abs().max():.4f} (ε = {eps})")
pd.Series(measure(off, x_off), name="off the manifold").to_frame().round(3)

# %% [markdown]
# ## 4. An attack on the manifold
#
# To stay on the manifold, the attack moves the image's coordinates z = x Wᵀ in the
# subspace instead of its pixels, and the classifier sees the decoded image z W, the
# setting of {cite}`stutz2019disentangling` with a linear decoder. The ε-ball is now
# one of coordinates; since W has orthonormal rows, ‖δ‖₂ in the image equals the
# coordinates' ‖δ_z‖₂, at most ε_z √k against ε √d for the image-space attack (k
# coordinates, d pixels). A box given as tensors bounds each coordinate
# separately: here, to the range the clean images span, so the adversarial images stay
# within the data's extent on the manifold.

# %%
W = manifold.bases[0]  # [k, d], orthonormal rows


def decode(z):
    return (z @ W).view(-1, 1, 28, 28)


z_train, z_test = x_train.flatten(1) @ W.T, x_test.flatten(1) @ W.T
z_clean = torch.cat([z_train, z_test])
low, high = z_clean.min(0).values, z_clean.max(0).values  # one bound per coordinate


def attack_on_manifold(model):
    """PGD on the coordinates z: every iterate decodes to a point of the manifold."""
    result = attacks.pgd(lambda z: model(decode(z)), z_test, y_test, eps=eps_latent,
                         steps=steps, lower=low, upper=high, seed=seed)
    z_adv = result.adversarial
    assert (z_adv - z_test).abs().max() <= eps_latent + 1e-6  # ‖δ_z‖∞ ≤ ε_z
    assert ((z_adv >= low) & (z_adv <= high)).all()  # inside the box
    return result, decode(z_adv)


on, x_on = attack_on_manifold(model)
print(f"largest |δ_z| of a coordinate: {(on.adversarial - z_test).abs().max():.4f} "
      f"(ε_z = {eps_latent}); coordinates outside the box: "
      f"{int(((on.adversarial < low) | (on.adversarial > high)).sum())}")
pd.DataFrame({"off the manifold": measure(off, x_off),
              "on the manifold": measure(on, x_on)}).round(3)

# %% [markdown]
# Both attacks fool the classifier on most test images with perturbations of similar
# L2 size, but the image-space attack leaves the manifold at a steep angle, while the
# on-manifold one changes the image within the manifold (distance and angle zero up to
# float rounding), the contrast that {cite}`stutz2019disentangling` measured.

# %% [markdown]
# ## 5. Alignment of input gradients
#
# {cite}`geyer2023relationship` measure how much of an input gradient
# g = ∇ₓ CE(f(x), y) lies in the manifold's tangent space, for instance by the cosine
# ‖P g‖ / ‖g‖ of its angle to the subspace (1: g lies in the manifold).
# `alignment.input_gradients` computes g for a whole batch, and
# `alignment.alignment_frame` tabulates the cosine, the norm ratio ‖g‖ / ‖P g‖ and
# the off-manifold part ‖g − P g‖ per example. A random direction of R^d has a
# cosine of about √(k/d) with a k-dimensional subspace (measured below): the
# baseline against which a classifier's alignment is read.

# %%
def gradient_alignment(model):
    g = alignment.input_gradients(model, x_test, y_test)
    return alignment.alignment_frame(g, manifold)


table = gradient_alignment(model)
random_directions = torch.randn(n_test, 784, device=device)
print(f"mean cosine: {table['cosine'].mean():.3f} for the classifier's gradients, "
      f"{alignment.cosine(random_directions, manifold).mean():.3f} for random "
      f"directions")
table.describe().loc[["mean", "min", "max"], ["cosine", "ratio", "rejection"]].round(3)

# %% [markdown]
# ## 6. Training for alignment
#
# The same measure can be trained for: `alignment.aligned_cross_entropy` is the loss
# CE + α · ‖g‖ / ‖P g‖ of {cite}`geyer2023relationship`, differentiated with respect
# to the weights by double backpropagation, and `training.train` takes it as its
# objective (`training.combined` adds terms, e.g. to an adversarial-training
# objective). The table repeats steps 3–5 for both classifiers.

# %%
aligned = mlp()
training.train(aligned, x_train, y_train,
               alignment.aligned_cross_entropy(manifold, alpha=1.0),
               epochs=epochs, seed=seed, progress=False)
models.freeze(aligned)


def summary(model):
    off, _ = attack_off_manifold(model)
    on, _ = attack_on_manifold(model)
    return {
        "test accuracy": models.accuracy(model, x_test, y_test),
        "accuracy under the image-space attack":
            attacks.robust_accuracy(model, x_test, y_test, off),
        "accuracy under the on-manifold attack":
            attacks.robust_accuracy(lambda z: model(decode(z)), z_test, y_test, on),
        "mean cosine of ∇ₓ CE to the manifold":
            gradient_alignment(model)["cosine"].mean(),
    }


pd.DataFrame({"cross-entropy": summary(model), "aligned": summary(aligned)}).round(3)

# %% [markdown]
# Training for alignment brings the gradients close to the manifold; whether that buys
# robustness, and against which attack, is what {doc}`03_pmnist` studies at full size.
