"""Metrics: top-1 accuracy, and mIoU / mAcc / aAcc from a confusion matrix (mmseg's definitions).

mmseg semantics (the paper's segmentation numbers): a class whose IoU (or accuracy) is undefined
(never in the ground truth nor predicted) is left out of the mean; aAcc is over labelled pixels.
Values are fractions in [0, 1]; result records store percentages.
"""

from __future__ import annotations

import numpy as np
import torch

IGNORE_INDEX = 255


def top1_accuracy(logits_or_pred, target) -> float:
    """Fraction of correct predictions; ``logits_or_pred`` is (N, C) scores or (N,) class ids."""
    pred = torch.as_tensor(logits_or_pred)
    if pred.ndim == 2:
        pred = pred.argmax(1)
    target = torch.as_tensor(target, device=pred.device)
    if pred.shape != target.shape:
        raise ValueError(f"prediction shape {tuple(pred.shape)} differs from target shape {tuple(target.shape)}")
    return float((pred == target).float().mean()) if target.numel() else float("nan")


def confusion_matrix(pred, target, num_classes: int, *, ignore_index: int = IGNORE_INDEX) -> torch.Tensor:
    """(K, K) int64 counts, rows = ground truth, columns = prediction; ``ignore_index`` pixels skipped."""
    pred = torch.as_tensor(pred).reshape(-1).long()
    target = torch.as_tensor(target, device=pred.device).reshape(-1).long()
    keep = target != ignore_index
    pred, target = pred[keep], target[keep]
    if target.numel() and (int(target.min()) < 0 or int(target.max()) >= num_classes):
        raise ValueError(f"target labels must lie in [0, {num_classes}) or equal {ignore_index}")
    return torch.bincount(target * num_classes + pred, minlength=num_classes * num_classes).reshape(
        num_classes, num_classes
    )


def segmentation_scores(cm) -> dict[str, float]:
    """``miou``, ``macc``, ``aacc`` (fractions) from a confusion matrix (rows = truth)."""
    cm = np.asarray(torch.as_tensor(cm).cpu(), dtype=np.float64)
    tp = np.diag(cm)
    gt = cm.sum(1)
    predicted = cm.sum(0)
    union = gt + predicted - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(union > 0, tp / union, np.nan)
        acc = np.where(gt > 0, tp / gt, np.nan)
    total = cm.sum()
    return {
        "miou": float(np.nanmean(iou)) if np.isfinite(iou).any() else float("nan"),
        "macc": float(np.nanmean(acc)) if np.isfinite(acc).any() else float("nan"),
        "aacc": float(tp.sum() / total) if total > 0 else float("nan"),
    }
