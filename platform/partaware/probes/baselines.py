"""Baselines on the same split and metric as a probe (percent): what a score must beat to mean anything.

- classification: ``chance`` (uniform guessing, 100 / K) and ``majority`` (always the train-majority class);
- retrieval: ``chance`` (expected AP of a random ranking: each query's class prevalence in the gallery) and
  ``random_features`` (AP of seeded Gaussian features of the encoder's dimension on the same labels);
- segmentation: ``majority`` (every pixel the train-majority class, mIoU).
"""

from __future__ import annotations

import numpy as np

from partaware.probes.metrics import IGNORE_INDEX


def classification_baselines(y_train, y_test, num_classes: int) -> dict[str, float]:
    y_train, y_test = np.asarray(y_train), np.asarray(y_test)
    majority = int(np.bincount(y_train, minlength=num_classes).argmax())
    return {"chance": 100.0 / num_classes, "majority": 100.0 * float(np.mean(y_test == majority))}


def retrieval_baselines(labels, dim: int, *, exclude_self: bool = False, seed: int = 0) -> dict[str, float]:
    from partaware.probes.retrieval import retrieval_ap

    labels = np.asarray(labels)
    _, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    positives = counts[inverse] - (1 if exclude_self else 0)
    chance = float(np.mean(positives / (len(labels) - (1 if exclude_self else 0))))
    noise = np.random.default_rng(seed).standard_normal((len(labels), max(1, dim))).astype(np.float32)
    random_ap = retrieval_ap(noise, labels, exclude_self=exclude_self).ap
    return {"chance": 100.0 * chance, "random_features": 100.0 * random_ap}


def segmentation_baselines(labels_train, labels_test, num_classes: int) -> dict[str, float]:
    train = np.asarray(labels_train).ravel()
    test = np.asarray(labels_test).ravel()
    return segmentation_baselines_from_pixels(
        np.bincount(train[train != IGNORE_INDEX], minlength=num_classes),
        np.bincount(test[test != IGNORE_INDEX], minlength=num_classes),
    )


def segmentation_baselines_from_pixels(train_pixels, test_pixels) -> dict[str, float]:
    """``segmentation_baselines`` from labelled pixels per class (K,) of train and of the scored split: for
    label maps at their own sizes, too large to hold at once."""
    from partaware.probes.uncertainty import miou

    majority = int(np.asarray(train_pixels).argmax())
    gt = np.asarray(test_pixels, dtype=np.float64)
    pred = np.zeros(gt.size)
    pred[majority] = gt.sum()
    inter = np.zeros(gt.size)
    inter[majority] = gt[majority]
    return {"majority": 100.0 * float(miou(inter, gt, pred))}
