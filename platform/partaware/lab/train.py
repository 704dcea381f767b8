"""The lab's training loop: one objective, one budget, checkpoints and resume, weights with digest.

Equal budget: every objective trains the same backbone (same init for the same seed), on the same
images, for the same number of steps x batch (images seen), with the same optimiser family (AdamW,
linear warm-up then cosine decay, gradient clipping). The budget is a typed record; its digest (the
*budget key*; for an objective whose own recipe was revised since, a digest of the key and that recipe's
version: ``weights_key``) names the output folder:

    <root>/weights/lab/<objective>/<budget-key>/
        checkpoint.pt   while training (objective + optimiser + step), replaced atomically; removed at the end
        backbone.pt     {"model": timm state dict, "head": projection head (MoCo v3, DINO, iBOT)}: the model
                        loads strictly into the lab ViT (num_classes=0), the head into its family's builder
        info.json       budget, digests, loss curve, timing
        _SUCCESS        written last
    <root>/weights/lab/<objective>/latest.json   {"budget_key": ...}: what ``lab/<objective>`` resolves to

A step's data (batch indices, views, masks) is a pure function of (seed, step), so a resumed run
replays exactly what an uninterrupted one would have done.
"""

from __future__ import annotations

import hashlib
import io
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from pydantic import BaseModel, ConfigDict, Field

from partaware.encoders.base import state_dict_digest
from partaware.errors import SpecError
from partaware.lab.backbone import LAB_INPUT_SIZE, LAB_VERSION, backbone_config
from partaware.lab.data import LabData
from partaware.lab.objectives import OBJECTIVES, ROWS_BY_NAME
from partaware.lab.objectives.base import Objective
from partaware.lab.presets import budget_digest
from partaware.storage import StorageRoot

WEIGHTS_FILE = "backbone.pt"
CHECKPOINT_FILE = "checkpoint.pt"
INFO_FILE = "info.json"
LATEST_FILE = "latest.json"

#: The ``quickstart`` preset's steps and batch (partaware.lab.presets), the lab's defaults.
DEFAULT_STEPS = 60
DEFAULT_BATCH = 32

#: (objective, step, total steps, loss) -> None
StepCallback = Callable[[str, int, int, float], None]


class Budget(BaseModel):
    """Everything that makes two lab runs comparable; its digest names the weights folder."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    preset: str = ""  # the named budget this was made from (partaware.lab.presets), "" when hand-set
    steps: int = Field(DEFAULT_STEPS, ge=1)
    batch_size: int = Field(DEFAULT_BATCH, ge=2)
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(0.05, ge=0)
    warmup_fraction: float = Field(0.1, ge=0, lt=1)
    grad_clip: float = Field(3.0, gt=0)
    optimizer: str = "adamw(0.9,0.95)+warmup-cosine"
    seed: int = Field(0, ge=0)
    input_size: int = LAB_INPUT_SIZE
    dataset: str = "synthetic"
    dataset_version: str = ""
    split: str = "train"
    backbone: dict[str, Any] = Field(default_factory=backbone_config)
    lab_version: str = LAB_VERSION

    @property
    def images_seen(self) -> int:
        return self.steps * self.batch_size

    def key(self) -> str:
        """A short digest of the budget (the objective is not in it: equal budgets share a key)."""
        return budget_digest(self.model_dump())


def weights_key(objective: str, budget: Budget) -> str:
    """The key of ``objective``'s weights under ``budget``: the budget's own key, or, for an objective whose recipe
    was revised (``Objective.recipe_version`` > 1), a digest of the key and that version."""
    version = OBJECTIVES.get(objective).recipe_version
    if version == 1:
        return budget.key()
    return hashlib.sha256(f"{budget.key()}/{objective}/recipe-{version}".encode()).hexdigest()[:16]


def trained_recipe_version(objective: str, info: dict[str, Any]) -> int | None:
    """The recipe version ``info``'s weights were trained with: as recorded, else (weights published before the
    field existed) the current one when their key is the current recipe's key; None for an older recipe."""
    if "recipe_version" in info:
        return int(info["recipe_version"])
    try:
        current = weights_key(objective, Budget(**info["budget"])) == info.get("budget_key")
    except (KeyError, TypeError, ValueError):  # no budget, or one from an older lab's fields: unknown
        return None
    return OBJECTIVES.get(objective).recipe_version if current else None


def weights_dir(objective: str, budget_key: str) -> tuple[str, ...]:
    return ("weights", "lab", objective, budget_key)


def build_objective(name: str, *, num_classes: int, total_steps: int, seed: int) -> Objective:
    """The objective with a seeded init: the backbone is created first, so all objectives start equal."""
    cls = OBJECTIVES.get(name)
    torch.manual_seed(seed)
    return cls(num_classes=num_classes, total_steps=total_steps)


def learning_rate(budget: Budget, step: int) -> float:
    warm = max(1, int(budget.warmup_fraction * budget.steps))
    if step < warm:
        return budget.lr * (step + 1) / warm
    progress = (step - warm) / max(1, budget.steps - warm)
    return budget.lr * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * progress)))


def step_generator(seed: int, step: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed * 1_000_003 + step)


def batch_indices(n: int, batch: int, seed: int, step: int) -> torch.Tensor:
    """Sampling without replacement within an epoch; epoch ``e``'s order is seeded by (seed, e)."""
    start = step * batch
    positions = torch.arange(start, start + batch)
    out = torch.empty(batch, dtype=torch.int64)
    for epoch in positions.div(n, rounding_mode="floor").unique().tolist():
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 7919 + epoch + 1))
        sel = positions.div(n, rounding_mode="floor") == epoch
        out[sel] = perm[positions[sel] % n]
    return out


def _save_torch(root: StorageRoot, obj: Any, *relparts: str) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    data = buf.getvalue()
    root.write_bytes(data, *relparts)
    return data


def _load_torch(data: bytes) -> Any:
    return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)


def lab_info(root: StorageRoot, objective: str, budget_key: str) -> dict[str, Any] | None:
    """The info of complete weights, or None."""
    folder = weights_dir(objective, budget_key)
    if not root.is_complete(*folder):
        return None
    return root.read_json(*folder, INFO_FILE)


@dataclass
class Fitted:
    """What a (possibly partial) training run leaves: the objective and its curve."""

    model: Objective
    losses: list[float]
    seconds: float
    steps_done: int
    resumed_from: int | None
    last_metrics: dict[str, float] = field(default_factory=dict)
    metric_curves: dict[str, list[float]] = field(default_factory=dict)


def fit(
    root: StorageRoot,
    objective: str,
    budget: Budget,
    data: LabData,
    *,
    on_step: StepCallback | None = None,
    checkpoint_every: int = 25,
    device: str = "cpu",
    stop_after: int | None = None,
) -> Fitted:
    """The training loop: resumes from ``checkpoint.pt`` when one exists; checkpoints every
    ``checkpoint_every`` steps, at the end and at ``stop_after`` (where it returns early)."""
    key = weights_key(objective, budget)
    folder = weights_dir(objective, key)
    model = build_objective(objective, num_classes=data.num_classes, total_steps=budget.steps, seed=budget.seed)
    model.to(device)
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.ndim > 1]
    no_decay = [p for p in params if p.ndim <= 1]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": budget.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=budget.lr,
        betas=(0.9, 0.95),
    )
    start, losses, elapsed, resumed_from, curves = 0, [], 0.0, None, {}
    if root.exists(*folder, CHECKPOINT_FILE):
        ckpt = _load_torch(root.read_bytes(*folder, CHECKPOINT_FILE))
        model.load_state_dict(ckpt["objective"])
        opt.load_state_dict(ckpt["optimizer"])
        start, losses, elapsed = int(ckpt["step"]), list(ckpt["losses"]), float(ckpt["seconds"])
        curves = {k: list(v) for k, v in ckpt.get("metric_curves", {}).items()}
        resumed_from = start
    else:
        model.setup(data.images, step_generator(budget.seed, -1))

    model.train()
    t0 = time.perf_counter() - elapsed
    last_metrics: dict[str, float] = {}
    end = budget.steps if stop_after is None else min(budget.steps, stop_after)
    for step in range(start, end):
        gen = step_generator(budget.seed, step)
        idx = batch_indices(len(data), budget.batch_size, budget.seed, step)
        for group in opt.param_groups:
            group["lr"] = learning_rate(budget, step)
        images = data.images[idx].to(device, non_blocking=True)  # views are computed where the model is
        loss, last_metrics = model.loss(images, data.labels[idx].to(device), gen, step)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"lab {objective}: loss is {loss.item()} at step {step}")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, budget.grad_clip)
        opt.step()
        model.after_step(step)
        losses.append(float(loss.detach()))
        for k, v in last_metrics.items():
            curves.setdefault(k, []).append(float(v))
        if on_step:
            on_step(objective, step + 1, budget.steps, losses[-1])
        done = step + 1
        if done % checkpoint_every == 0 or done == end:
            state = {
                "objective": model.state_dict(),
                "optimizer": opt.state_dict(),
                "step": done,
                "losses": losses,
                "metric_curves": curves,
                "seconds": time.perf_counter() - t0,
            }
            _save_torch(root, state, *folder, CHECKPOINT_FILE)
    return Fitted(model, losses, time.perf_counter() - t0, max(start, end), resumed_from, last_metrics, curves)


def publish_weights(
    root: StorageRoot, objective: str, budget: Budget, data: LabData, fitted: Fitted, *, device: str = "cpu"
) -> dict[str, Any]:
    """Write ``backbone.pt`` and ``info.json``, then ``_SUCCESS`` (last); drop the checkpoint; point
    ``latest.json`` at this budget."""
    key = weights_key(objective, budget)
    folder = weights_dir(objective, key)
    losses = fitted.losses
    backbone_state = {k: v.detach().cpu().clone() for k, v in fitted.model.export_backbone().state_dict().items()}
    head = fitted.model.export_head()
    payload: dict[str, Any] = {"model": backbone_state}
    if head is not None:
        payload["head"] = {k: v.detach().cpu().clone() for k, v in head.items()}
    blob = _save_torch(root, payload, *folder, WEIGHTS_FILE)
    row = ROWS_BY_NAME[objective]
    info = {
        "objective": objective,
        "family": row.family,
        "description": row.description,
        "budget": budget.model_dump(),
        "budget_key": key,
        "images_seen": budget.images_seen,
        "views_per_image": fitted.model.views_per_image,
        "recipe_version": fitted.model.recipe_version,
        "train_images": len(data),
        "skipped_images": data.skipped,
        "file_sha256": hashlib.sha256(blob).hexdigest(),
        "weights_digest": state_dict_digest(backbone_state),
        "loss_curve": losses,
        "loss_first": losses[0],
        "loss_last": losses[-1],
        "last_metrics": fitted.last_metrics,
        "metric_curves": fitted.metric_curves,
        "learning_curve": fitted.model.learning_curve,
        "seconds": fitted.seconds,
        "resumed_from_step": fitted.resumed_from,
        "torch_threads": torch.get_num_threads(),
        "device": str(device),
        "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    root.write_json(info, *folder, INFO_FILE)
    root.mark_complete(*folder, info={"weights_digest": info["weights_digest"]})
    if root.exists(*folder, CHECKPOINT_FILE):
        root.fs.rm(root.join(*folder, CHECKPOINT_FILE))
    root.write_json({"budget_key": key}, "weights", "lab", objective, LATEST_FILE)
    return info


def bind_budget(budget: Budget, data: LabData) -> Budget:
    """The budget with the data's dataset and version filled in (they enter the key)."""
    if budget.dataset_version and budget.dataset_version != data.version:
        raise SpecError(f"budget names dataset version {budget.dataset_version} but the data is {data.version}")
    return budget.model_copy(update={"dataset_version": data.version, "dataset": data.dataset})


def train_objective(
    root: StorageRoot,
    objective: str,
    budget: Budget,
    data: LabData,
    *,
    on_step: StepCallback | None = None,
    checkpoint_every: int = 25,
    threads: int | None = None,
    device: str = "cpu",
    stop_after: int | None = None,
) -> dict[str, Any]:
    """Train ``objective`` under ``budget`` unless its weights exist; resume from a checkpoint if one is there.

    Returns the weights' ``info.json`` (with ``"cached": True`` when nothing was trained).
    ``stop_after`` ends the run early after that many steps *without* publishing (tests use it to
    simulate an interruption); it then returns ``{"stopped_at": step, ...}``.
    """
    objective = OBJECTIVES.resolve(objective)
    budget = bind_budget(budget, data)
    key = weights_key(objective, budget)
    done = lab_info(root, objective, key)
    if done is not None:
        root.write_json({"budget_key": key}, "weights", "lab", objective, LATEST_FILE)
        return {**done, "cached": True}
    if threads:
        torch.set_num_threads(threads)
    fitted = fit(
        root, objective, budget, data, on_step=on_step, checkpoint_every=checkpoint_every, device=device,
        stop_after=stop_after,
    )  # fmt: skip
    if fitted.steps_done < budget.steps:
        return {"objective": objective, "budget_key": key, "stopped_at": fitted.steps_done, "losses": fitted.losses}
    return {**publish_weights(root, objective, budget, data, fitted, device=device), "cached": False}
