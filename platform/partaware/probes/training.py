"""One training loop for every trained head (linear, attentive, segmentation): frozen features in,
a small head trained with SGD or AdamW under a cosine / poly / constant schedule, evaluated each epoch.

``on_epoch(epoch, metrics)`` is how Ray Tune (``partaware.tune``) sees progress and stops a trial
early; the loop itself knows nothing of Ray. Every random choice (init, shuffling) comes from
``config.seed``, so a configuration trains to the same weights twice on the same device.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np
import torch
from torch import nn

from partaware.probes.errors import ProbeInputError


@dataclass
class TrainConfig:
    """Hyperparameters shared by trained heads; defaults follow the paper's linear part probe (§3.4)."""

    lr: float = 0.1
    weight_decay: float = 0.0
    epochs: int = 20
    batch_size: int = 256
    optimizer: str = "sgd"  # sgd (momentum 0.9, the paper's probes) | adamw (the paper's segmentation)
    momentum: float = 0.9
    schedule: str = "cosine"  # cosine | poly | constant
    warmup_epochs: float = 0.0
    eval_batch_size: int = 256
    seed: int = 0
    device: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # head-specific keys (feature, k, temperature ...)

    @classmethod
    def from_mapping(cls, config: Mapping[str, Any] | None, *, head_keys: tuple[str, ...] = ()) -> TrainConfig:
        """Build from a search configuration; ``head_keys`` go to ``extra``; any other key is an error."""
        config = dict(config or {})
        known = {f.name for f in fields(cls)} - {"extra"}
        unknown = set(config) - known - set(head_keys)
        if unknown:
            valid = ", ".join(sorted(known | set(head_keys)))
            raise ProbeInputError(f"unknown probe setting(s) {sorted(unknown)}. Valid: {valid}")
        extra = {k: config.pop(k) for k in head_keys if k in config}
        cfg = cls(**config, extra=extra)
        if cfg.optimizer not in ("sgd", "adamw"):
            raise ProbeInputError(f"unknown optimizer {cfg.optimizer!r}. Valid: adamw, sgd")
        if cfg.schedule not in ("cosine", "poly", "constant"):
            raise ProbeInputError(f"unknown schedule {cfg.schedule!r}. Valid: constant, cosine, poly")
        if cfg.epochs < 1 or cfg.batch_size < 1 or cfg.lr <= 0:
            raise ProbeInputError(
                f"epochs, batch_size and lr must be positive (got {cfg.epochs}, {cfg.batch_size}, {cfg.lr})"
            )
        cfg.epochs, cfg.batch_size = int(cfg.epochs), int(cfg.batch_size)
        return cfg

    def torch_device(self) -> torch.device:
        return torch.device(self.device or ("cuda" if torch.cuda.is_available() else "cpu"))


@dataclass
class FitResult:
    """The trained head, the last epoch's metrics and every epoch's metrics."""

    model: nn.Module
    metrics: dict[str, float]
    history: list[dict[str, float]]


def _optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


def _lr_factor(step: int, total: int, warmup: int, schedule: str) -> float:
    if warmup and step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    if schedule == "poly":
        return max(0.0, 1.0 - progress)
    return 1.0


def fit_head(
    model: nn.Module,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    *,
    config: TrainConfig,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    evaluate: Callable[[nn.Module], dict[str, float]] | None = None,
    on_epoch: Callable[[int, dict[str, float]], None] | None = None,
    optimizer: torch.optim.Optimizer | None = None,
) -> FitResult:
    """Train ``model`` on (inputs, targets) for ``config.epochs``; evaluate and report after each epoch."""
    device = config.torch_device()
    model.to(device)
    n = inputs.shape[0]
    if n == 0:
        raise ProbeInputError("no training items")
    gen = torch.Generator().manual_seed(config.seed)
    steps_per_epoch = math.ceil(n / config.batch_size)
    total = steps_per_epoch * config.epochs
    warmup = int(config.warmup_epochs * steps_per_epoch)
    opt = optimizer or _optimizer(model, config)  # a given optimizer: per-head parameter groups
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: _lr_factor(s, total, warmup, config.schedule))
    history: list[dict[str, float]] = []
    for epoch in range(1, config.epochs + 1):
        model.train()
        order = torch.randperm(n, generator=gen)
        loss_sum = 0.0
        for lo in range(0, n, config.batch_size):
            idx = order[lo : lo + config.batch_size]
            x = inputs[idx].to(device, non_blocking=True)
            y = targets[idx].to(device, non_blocking=True)
            loss = loss_fn(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            loss_sum += float(loss.detach()) * len(idx)
        metrics = {"epoch": float(epoch), "train_loss": loss_sum / n}
        if evaluate is not None:
            model.eval()
            with torch.no_grad():
                metrics.update(evaluate(model))
        history.append(metrics)
        if on_epoch is not None:
            on_epoch(epoch, metrics)
    return FitResult(model=model, metrics=history[-1], history=history)


@torch.no_grad()
def predict_logits(model: nn.Module, inputs: torch.Tensor, *, batch_size: int, device: torch.device) -> torch.Tensor:
    """Logits for ``inputs`` in eval mode, ``batch_size`` at a time (the batch matters for batch-stat BN)."""
    model.eval()
    out = [model(inputs[lo : lo + batch_size].to(device)).float().cpu() for lo in range(0, inputs.shape[0], batch_size)]
    return torch.cat(out) if out else torch.empty(0)


def as_tensor(array, *, dtype: torch.dtype | None = None) -> torch.Tensor:
    """A CPU tensor view of a numpy array or tensor (no copy when the dtype already matches).

    Arrays from Ray's object store are read-only; torch cannot view those safely, so they are copied.
    """
    t = array if isinstance(array, torch.Tensor) else torch.from_numpy(np.require(array, requirements="W"))
    return t.to(dtype) if dtype is not None and t.dtype != dtype else t
