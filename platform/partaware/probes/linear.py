"""Linear classification probe (protocol §3.4) on the CLS token, the mean patch token, or both.

The paper's head: CLS token -> Linear(D, C) with weights ~ N(0, 0.01) and zero bias, no BatchNorm,
SGD momentum 0.9, cosine schedule. Object and part level use the same code; only the arrays differ.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from partaware.probes.metrics import top1_accuracy
from partaware.probes.retrieval import ProbeInputError
from partaware.probes.training import FitResult, TrainConfig, as_tensor, fit_head, predict_logits

FEATURES = ("cls", "mean", "cls+mean")


def linear_input(taps, feature: str = "cls") -> torch.Tensor:
    """The (N, D) input of a linear probe: an array as is, or ``cls`` / ``mean`` / ``cls+mean`` (concatenated)
    picked from a mapping of taps such as ``{"cls": (N, D), "mean": (N, D)}``."""
    if not isinstance(taps, Mapping):
        return as_tensor(taps, dtype=torch.float32)
    if feature not in FEATURES:
        raise ProbeInputError(f"unknown linear-probe feature {feature!r}. Valid: {', '.join(FEATURES)}")
    names = feature.split("+")
    missing = [n for n in names if n not in taps]
    if missing:
        raise ProbeInputError(f"feature {feature!r} needs taps {missing}; available: {', '.join(sorted(taps))}")
    return torch.cat([as_tensor(taps[n], dtype=torch.float32) for n in names], dim=1)


class LinearHead(nn.Module):
    def __init__(self, dim: int, num_classes: int):
        super().__init__()
        self.fc = nn.Linear(dim, num_classes)
        nn.init.normal_(self.fc.weight, std=0.01)
        nn.init.zeros_(self.fc.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x)


def evaluate_classifier(model: nn.Module, x: torch.Tensor, y: torch.Tensor, cfg: TrainConfig) -> dict[str, float]:
    logits = predict_logits(model, x, batch_size=cfg.eval_batch_size, device=cfg.torch_device())
    return {"top1": top1_accuracy(logits, y)}


def check_classification_arrays(x: torch.Tensor, y: torch.Tensor, num_classes: int) -> None:
    if x.shape[0] != y.shape[0]:
        raise ProbeInputError(f"{x.shape[0]} feature rows but {y.shape[0]} labels")
    if y.numel() and (int(y.min()) < 0 or int(y.max()) >= num_classes):
        raise ProbeInputError(f"labels must lie in [0, {num_classes}), got [{int(y.min())}, {int(y.max())}]")
    if not torch.isfinite(x).all():
        raise ProbeInputError("features contain NaN or infinite values")


def train_linear_probe(
    x_train,
    y_train,
    *,
    num_classes: int,
    config: Mapping[str, Any] | TrainConfig | None = None,
    x_eval=None,
    y_eval=None,
    on_epoch: Callable[[int, dict[str, float]], None] | None = None,
) -> FitResult:
    """Train a linear head on (N, D) features; ``top1`` on (x_eval, y_eval) after every epoch."""
    cfg = config if isinstance(config, TrainConfig) else TrainConfig.from_mapping(config, head_keys=("feature",))
    x, y = linear_input(x_train, cfg.extra.get("feature", "cls")), as_tensor(y_train, dtype=torch.long)
    check_classification_arrays(x, y, num_classes)
    torch.manual_seed(cfg.seed)
    model = LinearHead(x.shape[1], num_classes)
    evaluate = None
    if x_eval is not None:
        xe, ye = linear_input(x_eval, cfg.extra.get("feature", "cls")), as_tensor(y_eval, dtype=torch.long)
        check_classification_arrays(xe, ye, num_classes)

        def evaluate(m: nn.Module) -> dict[str, float]:
            return evaluate_classifier(m, xe, ye, cfg)

    return fit_head(model, x, y, config=cfg, loss_fn=nn.functional.cross_entropy, evaluate=evaluate, on_epoch=on_epoch)
