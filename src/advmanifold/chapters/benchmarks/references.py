"""The reference pipelines the package is measured against: ``torchattacks.PGD`` (an
optional dependency, :func:`require_torchattacks`) and the original k-NN subspace
distance of Stutz et al. (:func:`knn_original`), with the measure of how far its
neighbours agree with the exact ones (:func:`neighbour_overlap`)."""

from __future__ import annotations

import time

import torch
from torch import Tensor


class MissingDependency(RuntimeError):
    """An optional package a benchmark compares against is not installed."""


def require_torchattacks():
    """Import torchattacks, or say clearly how to install it."""
    try:
        import torchattacks
    except ImportError as err:
        raise MissingDependency(
            "torchattacks is not installed, so the PGD reference cannot run: "
            "install it with `python -m pip install --no-deps torchattacks` "
            "(or `make install`)"
        ) from err
    return torchattacks


def knn_original(
    perturbed: Tensor,
    reference: Tensor,
    train: Tensor,
    k: int = 50,
    *,
    n_components: int = 40,
    stages: dict[str, float] | None = None,
) -> tuple[Tensor, Tensor]:
    """The original pipeline of the MNIST distance (Stutz et al.): IncrementalPCA with
    ``n_components`` fitted on the training images, a kd-tree (scikit-learn ``KDTree``)
    in that PCA space, the k nearest training images of each *reference* image, and per
    example a reduced QR of the basis B = [x_i − x] (D × k) in NumPy: distance =
    ‖δ − Q Qᵀ δ‖₂ with δ = x̃ − x. The Python loop over examples is the reference's
    nature. Returns (neighbour indices [N, k], distances [N]); ``stages`` collects
    seconds per stage."""
    import numpy as np
    from sklearn.decomposition import IncrementalPCA
    from sklearn.neighbors import KDTree

    stages = {} if stages is None else stages
    clock = time.perf_counter()

    def lap(name):
        nonlocal clock
        now = time.perf_counter()
        stages[name] = now - clock
        clock = now

    t = train.reshape(len(train), -1).numpy()
    x = reference.reshape(len(reference), -1).numpy()
    xt = perturbed.reshape(len(perturbed), -1).numpy()
    pca = IncrementalPCA(n_components=n_components).fit(t)
    lap("pca_fit")
    tree = KDTree(pca.transform(t))
    lap("kdtree_build")
    _, neighbours = tree.query(pca.transform(x), k=k)
    lap("kdtree_query")
    distances = np.empty(len(x))
    for i in range(len(x)):
        basis = (t[neighbours[i]] - x[i]).T.astype(np.float64)
        q, _ = np.linalg.qr(basis)
        delta = (xt[i] - x[i]).astype(np.float64)
        distances[i] = np.linalg.norm(delta - q @ (q.T @ delta))
    lap("qr_loop")
    indices = np.asarray(neighbours, dtype=np.int64)
    return torch.from_numpy(indices), torch.from_numpy(distances)


def neighbour_overlap(found: Tensor, exact: Tensor) -> Tensor:
    """Per example, the fraction of the exact neighbours that ``found`` contains."""
    return (found.unsqueeze(2) == exact.unsqueeze(1)).any(2).float().mean(1)
