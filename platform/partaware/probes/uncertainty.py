"""Confidence intervals of a test score by the percentile bootstrap over test items (numpy only).

A score on a few hundred test items moves by points when the items change: the interval says by how
much, so a report never ranks two encoders or calls one part-aware on a difference the test set cannot
resolve. Items are resampled with replacement; the statistic is recomputed on each resample (a mean for
accuracy and retrieval AP, mIoU from re-summed class counts for segmentation).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np

RESAMPLES = 1000
LEVEL = 0.95


def _resample_weights(n: int, resamples: int, seed: int) -> np.ndarray:
    """(resamples, n) counts: how often each item appears in each bootstrap resample."""
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(resamples, n))
    weights = np.zeros((resamples, n), dtype=np.float64)
    np.add.at(weights, (np.arange(resamples)[:, None], idx), 1.0)
    return weights


def _interval(stats: np.ndarray, level: float) -> tuple[float, float]:
    stats = stats[np.isfinite(stats)]
    if stats.size == 0:
        return float("nan"), float("nan")
    tail = (1.0 - level) / 2.0
    return float(np.quantile(stats, tail)), float(np.quantile(stats, 1.0 - tail))


def mean_interval(
    values: np.ndarray, *, resamples: int = RESAMPLES, level: float = LEVEL, seed: int = 0
) -> tuple[float, float]:
    """Interval of the mean of per-item values (0/1 correctness, per-query AP); NaN items are left out."""
    values = np.asarray(values, dtype=np.float64)
    values = values[np.isfinite(values)]
    if values.size < 2:
        return float("nan"), float("nan")
    weights = _resample_weights(values.size, resamples, seed)
    return _interval(weights @ values / values.size, level)


def miou(inter: np.ndarray, gt: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """mIoU (fraction) from summed class counts; rows of a 2-D input are separate resamples. A class never
    in the ground truth nor predicted is left out (mmseg's rule)."""
    union = gt + pred - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(union > 0, inter / union, np.nan)
    defined = np.isfinite(iou)
    return np.where(defined.any(-1), np.nansum(iou, -1) / np.maximum(defined.sum(-1), 1), np.nan)


def miou_interval(
    counts: Mapping[str, np.ndarray], *, resamples: int = RESAMPLES, level: float = LEVEL, seed: int = 0
) -> tuple[float, float]:
    """Interval of mIoU over images: per-image class counts ``inter``/``gt``/``pred`` (N, K) re-summed."""
    n = counts["gt"].shape[0]
    if n < 2:
        return float("nan"), float("nan")
    weights = _resample_weights(n, resamples, seed)
    summed = {k: weights @ np.asarray(counts[k], dtype=np.float64) for k in ("inter", "gt", "pred")}
    return _interval(miou(summed["inter"], summed["gt"], summed["pred"]), level)


def item_interval(task_metric: str, items, **kwargs) -> tuple[float, float]:
    """The interval (fractions) for a task's per-item outcomes: counts for ``miou``, values otherwise."""
    interval: Callable = miou_interval if task_metric == "miou" else mean_interval
    return interval(items, **kwargs)


def average_items(per_seed: list):
    """Per-item outcomes averaged over seeds (a seed changes the head, not the test items)."""
    if isinstance(per_seed[0], Mapping):
        return {k: np.mean([np.asarray(p[k], dtype=np.float64) for p in per_seed], axis=0) for k in per_seed[0]}
    return np.mean([np.asarray(p, dtype=np.float64) for p in per_seed], axis=0)
