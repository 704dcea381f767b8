"""Honest selection: a seeded validation split carved from train; the test split stays sealed.

The paper picked the best epoch on its evaluation split (quirk §7.7). Here hyperparameters are chosen
on a validation split drawn from train only (stratified by label, so rare part classes appear in
both halves), and the test split is scored once, after selection.
"""

from __future__ import annotations

import numpy as np

from partaware.errors import PartawareError


class SplitError(PartawareError, ValueError):
    """A split request that cannot be met (too few items, bad fraction, missing split)."""


def stratified_validation_split(labels, fraction: float, *, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train_idx, val_idx), sorted: ``fraction`` of each class (at least one item of every class with
    two or more) goes to validation. The same labels and seed give the same split."""
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise SplitError(f"labels must be one-dimensional, got shape {labels.shape}")
    if not 0.0 < fraction < 1.0:
        raise SplitError(f"validation fraction must lie in (0, 1), got {fraction}")
    rng = np.random.default_rng(seed)
    val = []
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        if len(members) < 2:
            continue  # a singleton class stays in train
        take = min(len(members) - 1, max(1, round(fraction * len(members))))
        val.append(rng.permutation(members)[:take])
    val_idx = np.sort(np.concatenate(val)) if val else np.empty(0, dtype=np.int64)
    if len(val_idx) == 0:
        raise SplitError(f"cannot carve a validation split from {len(labels)} training items")
    train_idx = np.setdiff1d(np.arange(len(labels)), val_idx)
    return train_idx, val_idx


def random_validation_split(n: int, fraction: float, *, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train_idx, val_idx) for items without one label each (segmentation images)."""
    if not 0.0 < fraction < 1.0:
        raise SplitError(f"validation fraction must lie in (0, 1), got {fraction}")
    if n < 2:
        raise SplitError(f"cannot carve a validation split from {n} training items")
    take = min(n - 1, max(1, round(fraction * n)))
    perm = np.random.default_rng(seed).permutation(n)
    return np.sort(perm[take:]), np.sort(perm[:take])
