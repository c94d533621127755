"""The PMNIST chapter's tidy tables of the evaluations of
:func:`advmanifold.chapters.pmnist.evaluate_seeds` (one row per seed, model and
measure), and the per-seed record of its numbers."""

from __future__ import annotations

from typing import Mapping

import pandas as pd
import torch

from ..book import results
from ..science import alignment
from .pmnist import NAMES


def alignment_table(evals: Mapping[tuple[int, str], dict]) -> pd.DataFrame:
    """One row per (seed, model, image): ‖g‖, ‖g‖/‖Pg‖, cosine ‖Pg‖/‖g‖, rejection."""
    frames = []
    for (seed, name), ev in evals.items():
        full, on, off = ev["grad_norm"], ev["on_norm"], ev["off_norm"]
        frames.append(
            pd.DataFrame(
                {
                    "grad_norm": full.numpy(),
                    "ratio": (full / on.clamp_min(alignment.TINY)).numpy(),
                    "cosine": (on / full).where(full > 0, torch.nan).numpy(),
                    "rejection": off.numpy(),
                    "model": NAMES[name],
                    "seed": seed,
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


def accuracy_table(evals: Mapping[tuple[int, str], dict]) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {"seed": s, "model": NAMES[m], "accuracy": float(ev["accuracy"])}
            for (s, m), ev in evals.items()
        ]
    )


def robustness_table(evals: Mapping[tuple[int, str], dict], eps_grid) -> pd.DataFrame:
    """One row per (seed, model, attack, ε), ε = 0 being the clean accuracy."""
    rows = []
    for (seed, name), ev in evals.items():
        for attack in ("FGSM", "PGD"):
            rows.append(
                {
                    "seed": seed,
                    "model": NAMES[name],
                    "attack": attack,
                    "eps": 0.0,
                    "accuracy": float(ev["clean"]),
                }
            )
            rows += [
                {
                    "seed": seed,
                    "model": NAMES[name],
                    "attack": attack,
                    "eps": eps,
                    "accuracy": float(acc),
                }
                for eps, acc in zip(eps_grid, ev[attack.lower()])
            ]
    return pd.DataFrame(rows)


PATHS = {"adversarial": "to adversarial", "other": "to other digit"}


def crossing_table(evals: Mapping[tuple[int, str], dict]) -> pd.DataFrame:
    """One row per valid crossing: path, model, seed, test index, t, classes, angle and
    the boundary normal's cosine with the manifold."""
    frames = [
        pd.DataFrame({k: v.numpy() for k, v in ev[key].items()}).assign(
            model=NAMES[name], seed=seed, path=path
        )
        for (seed, name), ev in evals.items()
        for key, path in PATHS.items()
    ]
    return pd.concat(frames, ignore_index=True)


# -- small helpers ---------------------------------------------------------------------
def record_over_seeds(res, rows: list, key: str, by_seed: Mapping[int, float]) -> None:
    """Record a metric measured once per seed: the mean under ``key``, the sample
    standard deviation under ``key_std`` (both glued); the per-seed values are
    appended to
    ``rows`` (the chapter's ``per_seed`` table)."""
    rows.extend(
        {"metric": key, "seed": s, "value": float(v)} for s, v in by_seed.items()
    )
    mean, std = results.mean_std(list(by_seed.values()))
    res.add(key, mean)
    res.add(f"{key}_std", std)
