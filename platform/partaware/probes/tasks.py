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
from partaware.probes.knn import knn_top1
from partaware.probes.linear import linear_input, train_linear_probe
from partaware.probes.metrics import IGNORE_INDEX
from partaware.probes.segmentation import train_segmentation_probe

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
    (x, y), (xe, ye) = train, evaluation
    if task == "linear":
        return train_linear_probe(
            x, y, num_classes=num_classes, config=config, x_eval=xe, y_eval=ye, on_epoch=on_epoch
        ).metrics
    if task == "attentive":
        return train_attentive_probe(
            x, y, num_classes=num_classes, config=config, tokens_eval=xe, y_eval=ye, on_epoch=on_epoch
        ).metrics
    if task == "segmentation":
        return train_segmentation_probe(
            x, y, num_classes=num_classes, config=config, maps_eval=xe, labels_eval=ye, on_epoch=on_epoch
        ).metrics
    if task == "knn":
        unknown = set(config) - set(KNN_KEYS) - {"seed", "device"}
        if unknown:
            raise ProbeInputError(f"unknown k-NN setting(s) {sorted(unknown)}. Valid: {', '.join(KNN_KEYS)}")
        feature = config.get("feature", "cls")
        top1 = knn_top1(
            linear_input(x, feature),
            y,
            linear_input(xe, feature),
            ye,
            k=int(config.get("k", 20)),
            temperature=float(config.get("temperature", 0.07)),
            num_classes=num_classes,
            device=config.get("device"),
        )
        metrics = {"epoch": 1.0, "top1": top1}
        if on_epoch is not None:
            on_epoch(1, metrics)
        return metrics
    raise ProbeInputError(f"unknown probe task {task!r}. Valid: {', '.join(sorted(PRIMARY_METRIC))}")
