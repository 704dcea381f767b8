"""Linear classification probe (protocol §3.4) on the CLS token, the mean patch token, or both.

The paper's head: CLS token -> Linear(D, C) with weights ~ N(0, 0.01) and zero bias, no BatchNorm,
SGD momentum 0.9, cosine schedule. Object and part level use the same code; only the arrays differ.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from partaware.probes.errors import ProbeInputError
from partaware.probes.metrics import top1_accuracy
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


class LinearHeads(nn.Module):
    """Several independent linear heads on one input: one pass over the data trains them all."""

    def __init__(self, dim: int, num_classes: int, count: int):
        super().__init__()
        self.heads = nn.ModuleList(LinearHead(dim, num_classes) for _ in range(count))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([h(x) for h in self.heads], dim=1)  # (N, heads, C)


#: Settings that may differ between heads trained together; everything else must be shared.
PER_HEAD_KEYS = ("lr", "weight_decay")


def train_linear_heads(
    x_train,
    y_train,
    *,
    num_classes: int,
    configs: list[Mapping[str, Any]],
    x_eval=None,
    y_eval=None,
    on_epoch: Callable[[int, dict[str, float]], None] | None = None,
) -> list[dict[str, float]]:
    """Train one linear head per config in a single pass (DINOv2's trick for cheap probes).

    Heads may differ only in ``lr`` and ``weight_decay`` (one optimizer parameter group each; the
    summed loss gives every head its own gradient). Returns each head's final metrics; ``on_epoch``
    gets ``top1`` (the best head), ``best_head`` and ``top1_head<i>`` for every head.
    """
    if not configs:
        raise ProbeInputError("train_linear_heads needs at least one configuration")
    shared = [{k: v for k, v in c.items() if k not in PER_HEAD_KEYS} for c in configs]
    if any(s != shared[0] for s in shared):
        raise ProbeInputError(f"heads trained together may differ only in {', '.join(PER_HEAD_KEYS)}")
    cfgs = [TrainConfig.from_mapping(c, head_keys=("feature",)) for c in configs]
    base = cfgs[0]
    x, y = linear_input(x_train, base.extra.get("feature", "cls")), as_tensor(y_train, dtype=torch.long)
    check_classification_arrays(x, y, num_classes)
    torch.manual_seed(base.seed)
    model = LinearHeads(x.shape[1], num_classes, len(cfgs))
    groups = [{"params": h.parameters(), "lr": c.lr, "weight_decay": c.weight_decay} for h, c in zip(
        model.heads, cfgs, strict=True)]  # fmt: skip
    if base.optimizer == "sgd":
        optimizer = torch.optim.SGD(groups, lr=base.lr, momentum=base.momentum)
    else:
        optimizer = torch.optim.AdamW(groups, lr=base.lr)
    evaluate = None
    if x_eval is not None:
        xe, ye = linear_input(x_eval, base.extra.get("feature", "cls")), as_tensor(y_eval, dtype=torch.long)
        check_classification_arrays(xe, ye, num_classes)

        def evaluate(m: nn.Module) -> dict[str, float]:
            logits = predict_logits(m, xe, batch_size=base.eval_batch_size, device=base.torch_device())
            per_head = [top1_accuracy(logits[:, i], ye) for i in range(len(cfgs))]
            best = max(range(len(per_head)), key=per_head.__getitem__)
            return {"top1": per_head[best], "best_head": float(best),
                    **{f"top1_head{i}": a for i, a in enumerate(per_head)}}  # fmt: skip

    def loss_fn(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        heads = logits.shape[1]
        return nn.functional.cross_entropy(logits.flatten(0, 1), target.repeat_interleave(heads)) * heads

    fit = fit_head(model, x, y, config=base, loss_fn=loss_fn, evaluate=evaluate, on_epoch=on_epoch,
                   optimizer=optimizer)  # fmt: skip
    return [{"top1": fit.metrics.get(f"top1_head{i}", float("nan")), "epoch": fit.metrics["epoch"]}
            for i in range(len(cfgs))]  # fmt: skip
