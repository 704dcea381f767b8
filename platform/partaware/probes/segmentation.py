"""Linear semantic segmentation (protocol §3.5) on frozen patch-token maps.

The paper's head: patch tokens of blocks 4, 6, 8 and 12 (no final norm) reshaped to D x H/16 x W/16,
concatenated (4D channels), one 1x1 conv to K classes, bilinear upsampling (align_corners=False)
to the label size, cross-entropy with ignore index 255; AdamW lr 4e-4, weight decay 0.05, poly decay
after a linear warmup. Scored with mIoU / mAcc / aAcc.

Fast mode (this module): train on cached feature maps, no augmentation; the search uses it. The paper's
augmented schedule (random resize 0.5-2.0, crop, flip, photometric distortion, 160k iterations) needs
the encoder in the loop and is not run on cached features.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from partaware.probes.errors import ProbeInputError
from partaware.probes.metrics import IGNORE_INDEX, confusion_matrix, segmentation_scores
from partaware.probes.training import FitResult, TrainConfig, as_tensor, fit_head

#: The paper's taps: patch tokens of blocks 4, 6, 8 and 12 (1-based).
PAPER_BLOCKS = (4, 6, 8, 12)
SEGMENTATION_DEFAULTS = {"lr": 4e-4, "weight_decay": 0.05, "optimizer": "adamw", "schedule": "poly", "batch_size": 16}


def concat_block_maps(maps: Sequence) -> torch.Tensor:
    """(N, sum C_i, h, w) from per-block maps (N, C_i, h, w) of one grid (the paper's ``resize_concat``)."""
    tensors = [as_tensor(m, dtype=torch.float32) for m in maps]
    if not tensors or any(t.ndim != 4 or t.shape[0] != tensors[0].shape[0] for t in tensors):
        raise ProbeInputError("segmentation needs one or more (N, C, h, w) maps with the same N")
    size = tensors[0].shape[-2:]
    tensors = [
        t if t.shape[-2:] == size else nn.functional.interpolate(t, size=size, mode="bilinear", align_corners=False)
        for t in tensors
    ]
    return torch.cat(tensors, dim=1)


class LinearSegmentationHead(nn.Module):
    def __init__(self, channels: int, num_classes: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, num_classes, kernel_size=1)
        nn.init.normal_(self.conv.weight, std=0.01)
        nn.init.zeros_(self.conv.bias)

    def forward(self, maps: torch.Tensor) -> torch.Tensor:
        return self.conv(maps)  # stride-16 logits; upsampled to the label size by the caller


def upsampled_logits(logits: torch.Tensor, size) -> torch.Tensor:
    return nn.functional.interpolate(logits, size=tuple(size), mode="bilinear", align_corners=False)


def segmentation_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return nn.functional.cross_entropy(
        upsampled_logits(logits, labels.shape[-2:]), labels.long(), ignore_index=IGNORE_INDEX
    )


@torch.no_grad()
def evaluate_segmentation(
    model: nn.Module, maps: torch.Tensor, labels: torch.Tensor, *, num_classes: int, cfg: TrainConfig
) -> dict[str, float]:
    """mIoU / mAcc / aAcc (fractions) accumulated over the whole split in one confusion matrix."""
    device = cfg.torch_device()
    model.eval()
    cm = torch.zeros(num_classes, num_classes, dtype=torch.int64)
    for lo in range(0, maps.shape[0], cfg.eval_batch_size):
        y = labels[lo : lo + cfg.eval_batch_size]
        logits = upsampled_logits(model(maps[lo : lo + cfg.eval_batch_size].to(device)), y.shape[-2:])
        cm += confusion_matrix(logits.argmax(1).cpu(), y, num_classes)
    return segmentation_scores(cm)


def block_maps(maps) -> torch.Tensor:
    """One (N, C, h, w) array as is; a list or tuple of per-block maps concatenated."""
    return concat_block_maps(maps) if isinstance(maps, list | tuple) else as_tensor(maps, dtype=torch.float32)


def _check(maps: torch.Tensor, labels: torch.Tensor, num_classes: int) -> None:
    if maps.ndim != 4 or labels.ndim != 3 or maps.shape[0] != labels.shape[0]:
        raise ProbeInputError(
            f"segmentation needs maps (N, C, h, w) and labels (N, H, W); got "
            f"{tuple(maps.shape)} and {tuple(labels.shape)}"
        )
    valid = labels[labels != IGNORE_INDEX]
    if valid.numel() and (int(valid.min()) < 0 or int(valid.max()) >= num_classes):
        raise ProbeInputError(f"segmentation labels must lie in [0, {num_classes}) or equal {IGNORE_INDEX}")


def train_segmentation_probe(
    maps_train,
    labels_train,
    *,
    num_classes: int,
    config: Mapping[str, Any] | TrainConfig | None = None,
    maps_eval=None,
    labels_eval=None,
    on_epoch: Callable[[int, dict[str, float]], None] | None = None,
) -> FitResult:
    """Fast mode: a 1x1 conv on cached (N, C, h, w) maps (or a list of per-block maps, concatenated)."""
    cfg = (
        config
        if isinstance(config, TrainConfig)
        else TrainConfig.from_mapping({**SEGMENTATION_DEFAULTS, **dict(config or {})})
    )
    x = block_maps(maps_train)
    y = as_tensor(labels_train).long()
    _check(x, y, num_classes)
    torch.manual_seed(cfg.seed)
    model = LinearSegmentationHead(x.shape[1], num_classes)
    evaluate = None
    if maps_eval is not None:
        xe = block_maps(maps_eval)
        ye = as_tensor(labels_eval).long()
        _check(xe, ye, num_classes)

        def evaluate(m: nn.Module) -> dict[str, float]:
            return evaluate_segmentation(m, xe, ye, num_classes=num_classes, cfg=cfg)

    return fit_head(model, x, y, config=cfg, loss_fn=segmentation_loss, evaluate=evaluate, on_epoch=on_epoch)
