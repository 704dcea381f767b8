"""One door to every probe: ``fit_and_score(task, train, evaluation, config)``, plain functions.

A *split* is ``(features, labels)``: features (N, D) or a mapping of taps (``{"cls": ..., "mean": ...}``)
for ``linear``/``knn``, tokens (N, T, D) for ``attentive``, maps (N, C, h, w) or a list of per-block
maps for ``segmentation``; labels (N,) class ids, or (N, H, W) label maps with 255 ignored.
``partaware.tune`` searches configurations with these functions and never sees anything else.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch

from partaware.probes.attentive import train_attentive_probe
from partaware.probes.errors import ProbeInputError
from partaware.probes.knn import knn_predict
from partaware.probes.linear import linear_input, train_linear_probe
from partaware.probes.metrics import IGNORE_INDEX
from partaware.probes.segmentation import block_maps, train_segmentation_probe, upsampled_logits
from partaware.probes.training import TrainConfig, as_tensor, predict_logits

#: The searched tasks and the metric each one selects on (a fraction; records store percent).
PRIMARY_METRIC = {"linear": "top1", "attentive": "top1", "knn": "top1", "segmentation": "miou"}
TRAINED = ("linear", "attentive", "segmentation")
KNN_KEYS = ("k", "temperature", "feature")


def subset(features, index: np.ndarray):
    """Rows ``index`` of an array, a mapping of arrays, or a list of arrays."""
    if isinstance(features, Mapping):
        return {k: subset(v, index) for k, v in features.items()}
    if isinstance(features, list | tuple):
        return [subset(v, index) for v in features]
    return features[torch.as_tensor(index) if isinstance(features, torch.Tensor) else index]


def concat(parts: list):
    """Rows of several splits stacked (same structure as ``subset``)."""
    first = parts[0]
    if isinstance(first, Mapping):
        return {k: concat([p[k] for p in parts]) for k in first}
    if isinstance(first, list | tuple):
        return [concat([p[i] for p in parts]) for i in range(len(first))]
    if isinstance(first, torch.Tensor):
        return torch.cat([torch.as_tensor(p) for p in parts])
    return np.concatenate([np.asarray(p) for p in parts])


def num_rows(features) -> int:
    if isinstance(features, Mapping):
        return num_rows(next(iter(features.values())))
    if isinstance(features, list | tuple):
        return num_rows(features[0])
    return int(features.shape[0])


def infer_num_classes(*label_arrays) -> int:
    """1 + the largest label over all given arrays (255, the ignore index, excluded)."""
    top = -1
    for labels in label_arrays:
        arr = np.asarray(labels)
        arr = arr[arr != IGNORE_INDEX]
        if arr.size:
            top = max(top, int(arr.max()))
    if top < 0:
        raise ProbeInputError("no labels to infer the number of classes from")
    return top + 1


def fit_and_score(
    task: str,
    train: tuple[Any, Any],
    evaluation: tuple[Any, Any],
    config: Mapping[str, Any],
    *,
    num_classes: int,
    on_epoch: Callable[[int, dict[str, float]], None] | None = None,
) -> dict[str, float]:
    """Train ``task``'s head on ``train`` with ``config`` and return its metrics on ``evaluation``
    (fractions: ``top1``, or ``miou``/``macc``/``aacc``); ``on_epoch`` sees every epoch's metrics."""
    return fit_and_predict(task, train, evaluation, config, num_classes=num_classes, on_epoch=on_epoch)[0]


def fit_and_predict(
    task: str,
    train: tuple[Any, Any],
    evaluation: tuple[Any, Any],
    config: Mapping[str, Any],
    *,
    num_classes: int,
    on_epoch: Callable[[int, dict[str, float]], None] | None = None,
    items: bool = False,
    also: Mapping[str, tuple[Any, Any]] | None = None,
) -> tuple[dict[str, float], Any]:
    """``fit_and_score`` plus, with ``items``, the per-item outcomes on ``evaluation`` that an interval is
    bootstrapped from: a (N,) 0/1 correctness array for classification, or per-image class counts
    ``{"inter", "gt", "pred"}`` (each (N, K)) for segmentation. ``also`` (segmentation): further evaluation
    splits scored by the same head, as metrics ``<name>_miou`` ... and counts ``<name>:inter`` ..."""
    (x, y), (xe, ye) = train, evaluation
    if also and task != "segmentation":
        raise ProbeInputError(f"further evaluation splits are for segmentation, not {task!r}")
    if task in ("linear", "attentive"):
        train_fn, inputs = (
            (train_linear_probe, lambda t: linear_input(t, config.get("feature", "cls")))
            if task == "linear" else (train_attentive_probe, lambda t: as_tensor(t, dtype=torch.float32))
        )  # fmt: skip
        eval_key = "x_eval" if task == "linear" else "tokens_eval"
        result = train_fn(x, y, num_classes=num_classes, config=config, y_eval=ye, on_epoch=on_epoch, **{eval_key: xe})
        if not items:
            return result.metrics, None
        cfg = TrainConfig.from_mapping(config, head_keys=("feature", "num_heads", "eval_batch_stats"))
        logits = predict_logits(result.model, inputs(xe), batch_size=cfg.eval_batch_size, device=cfg.torch_device())
        return result.metrics, (logits.argmax(1).numpy() == np.asarray(ye)).astype(np.float64)
    if task == "segmentation":
        result = train_segmentation_probe(
            x, y, num_classes=num_classes, config=config, maps_eval=xe, labels_eval=ye, on_epoch=on_epoch
        )
        counts = segmentation_counts(result.model, xe, ye, num_classes) if items else None
        metrics = dict(result.metrics)
        for name, (xa, ya) in (also or {}).items():  # the same head on another split: counts re-summed
            extra = segmentation_counts(result.model, xa, ya, num_classes)
            metrics.update({f"{name}_{k}": v for k, v in counts_scores(extra).items()})
            if counts is not None:
                counts.update({f"{name}:{k}": v for k, v in extra.items()})
        return metrics, counts
    if task == "knn":
        unknown = set(config) - set(KNN_KEYS) - {"seed", "device"}
        if unknown:
            raise ProbeInputError(f"unknown k-NN setting(s) {sorted(unknown)}. Valid: {', '.join(KNN_KEYS)}")
        feature = config.get("feature", "cls")
        pred = knn_predict(
            linear_input(x, feature), y, linear_input(xe, feature), k=int(config.get("k", 20)),
            temperature=float(config.get("temperature", 0.07)), num_classes=num_classes, device=config.get("device"),
        )  # fmt: skip
        correct = (pred.numpy() == np.asarray(ye)).astype(np.float64)
        metrics = {"epoch": 1.0, "top1": float(correct.mean()) if correct.size else float("nan")}
        if on_epoch is not None:
            on_epoch(1, metrics)
        return metrics, (correct if items else None)
    raise ProbeInputError(f"unknown probe task {task!r}. Valid: {', '.join(sorted(PRIMARY_METRIC))}")


def counts_scores(counts: Mapping[str, np.ndarray]) -> dict[str, float]:
    """``miou``, ``macc``, ``aacc`` (fractions) from per-image class counts summed over images (mmseg's rules)."""
    from partaware.probes.uncertainty import miou

    inter, gt, pred = (np.asarray(counts[k], dtype=np.float64).sum(0) for k in ("inter", "gt", "pred"))
    with np.errstate(invalid="ignore", divide="ignore"):
        acc = np.where(gt > 0, inter / gt, np.nan)
    return {
        "miou": float(miou(inter, gt, pred)),
        "macc": float(np.nanmean(acc)) if np.isfinite(acc).any() else float("nan"),
        "aacc": float(inter.sum() / gt.sum()) if gt.sum() > 0 else float("nan"),
    }


@torch.no_grad()
def segmentation_counts(model, maps, labels, num_classes: int, batch_size: int = 16) -> dict[str, np.ndarray]:
    """Per image and class: intersection, ground-truth and predicted pixel counts (ignore index skipped), so an
    interval over images can re-sum them into mIoU."""
    x = block_maps(maps)
    y = as_tensor(labels).long()
    model.eval()
    out = {k: np.zeros((x.shape[0], num_classes), dtype=np.int64) for k in ("inter", "gt", "pred")}
    for lo in range(0, x.shape[0], batch_size):
        yb = y[lo : lo + batch_size]
        pred = upsampled_logits(model(x[lo : lo + batch_size]), yb.shape[-2:]).argmax(1)
        for i in range(yb.shape[0]):
            keep = yb[i] != IGNORE_INDEX
            t, p = yb[i][keep], pred[i][keep]
            out["gt"][lo + i] = torch.bincount(t, minlength=num_classes).numpy()
            out["pred"][lo + i] = torch.bincount(p, minlength=num_classes).numpy()
            out["inter"][lo + i] = torch.bincount(t[t == p], minlength=num_classes).numpy()
    return out
