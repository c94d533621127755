"""MNIST through torchvision, as float tensors in [0, 1].

Online, torchvision downloads the four original ``.gz`` files into
``<data_dir>/MNIST/raw``. Offline, the same call finds them there, checks their
MD5 and un-gzips them; with neither network nor files, :class:`DataNotFoundError`
says which files to put where.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import Tensor


MNIST_FILES = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)


def user_cache() -> Path:
    """``$XDG_CACHE_HOME/advmanifold`` (default ``~/.cache/advmanifold``)."""
    return (
        Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "advmanifold"
    )


def resolve_data_dir(explicit: str | os.PathLike | None = None) -> Path:
    """The data folder: ``explicit`` > variable ``ADVMANIFOLD_DATA`` >
    ``<user cache>/data``; created if missing."""
    path = Path(explicit or os.environ.get("ADVMANIFOLD_DATA") or user_cache() / "data")
    path = path.expanduser()
    path.mkdir(parents=True, exist_ok=True)
    return path


class DataNotFoundError(RuntimeError):
    """The data is neither on disk nor downloadable."""


def mnist_raw_dir(data_dir: str | os.PathLike | None = None) -> Path:
    return resolve_data_dir(data_dir) / "MNIST" / "raw"


def load_mnist(
    train: bool = True,
    data_dir: str | os.PathLike | None = None,
    limit: int | None = None,
) -> tuple[Tensor, Tensor]:
    """Images ``[N, 1, 28, 28]`` (float32 in [0, 1]) and labels ``[N]`` (int64).

    ``limit`` keeps the first ``limit`` examples (the files' order).
    """
    from torchvision.datasets import MNIST

    if limit is not None and (int(limit) != limit or limit < 1):
        raise ValueError(f"limit must be a positive integer or None, got {limit!r}")
    root = resolve_data_dir(data_dir)
    try:
        dataset = MNIST(str(root), train=train, download=True)
    except Exception as err:  # noqa: BLE001 - URLError, RuntimeError, socket errors ...
        raw = mnist_raw_dir(root)
        missing = [f for f in MNIST_FILES if not (raw / f).is_file()]
        raise DataNotFoundError(
            f"MNIST could not be loaded from {raw} nor downloaded "
            f"({type(err).__name__}: {err}).\n"
            f"Put the original files {', '.join(missing or MNIST_FILES)} into {raw} "
            "(or set ADVMANIFOLD_DATA / the notebook parameter data_dir to a folder "
            "holding MNIST/raw/)."
        ) from err
    images, labels = dataset.data, dataset.targets
    if limit is not None:
        images, labels = images[:limit], labels[:limit]
    return images.unsqueeze(1).float().div_(255.0), labels.long()


def batches(
    *tensors: Tensor,
    batch_size: int,
    shuffle: bool = False,
    generator: torch.Generator | None = None,
):
    """Yield aligned mini-batches of the given tensors (a light DataLoader for in-memory
    data)."""
    n = len(tensors[0])
    order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
    for start in range(0, n, batch_size):
        idx = order[start : start + batch_size]
        yield tuple(t[idx] for t in tensors)
