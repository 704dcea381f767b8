"""What every lab objective is: a module that owns the backbone and turns a batch into a loss."""

from __future__ import annotations

import math
from typing import ClassVar

import torch
from torch import nn

from partaware.lab.augment import ViewRecipe, make_views
from partaware.lab.backbone import LAB_INPUT_SIZE, LAB_MEAN, LAB_STD, create_backbone

Metrics = dict[str, float]


class Objective(nn.Module):
    """A pretraining method around one lab backbone.

    ``loss`` gets a ``uint8`` batch (``B x 3 x S x S``), its object labels (only ``supervised`` may
    read them), a generator for every random draw (views, masks) and the step; ``after_step`` does
    post-optimiser work (EMA teachers). ``export_backbone`` is the network whose weights become the
    lab encoder (the teacher for DINO and iBOT, as their papers evaluate it).
    """

    name: ClassVar[str] = ""
    family: ClassVar[str] = ""
    #: backbone passes per image (a local crop counts by its token share), for the budget's record.
    views_per_image: ClassVar[float] = 1.0
    #: the curve that shows learning at a small budget: ``loss``, or a metric the loss reports (DINO and
    #: iBOT: ``kl``, the student-teacher divergence; their cross-entropy also holds the teacher's entropy,
    #: which centring raises early in training, so it is not monotone over a short run).
    learning_curve: ClassVar[str] = "loss"
    #: raised when this objective's recipe changes: it enters the objective's weights key
    #: (``partaware.lab.train.weights_key``), so only this objective is trained again and the others' weights,
    #: keys and released files stay as they are.
    recipe_version: ClassVar[int] = 1

    def __init__(self, *, num_classes: int, total_steps: int, input_size: int = LAB_INPUT_SIZE):
        super().__init__()
        self.backbone = create_backbone()
        self.num_classes, self.total_steps, self.input_size = num_classes, total_steps, input_size

    def setup(self, images: torch.Tensor, gen: torch.Generator) -> None:
        """One-off work before step 0 (for example fitting a tokenizer); not called on resume."""

    def loss(
        self, images: torch.Tensor, labels: torch.Tensor, gen: torch.Generator, step: int
    ) -> tuple[torch.Tensor, Metrics]:
        raise NotImplementedError

    @torch.no_grad()
    def after_step(self, step: int) -> None:
        """Post-update work (EMA teachers)."""

    def export_backbone(self) -> nn.Module:
        return self.backbone

    def export_head(self) -> dict[str, torch.Tensor] | None:
        """The projection head exported beside the backbone (the ``proj`` tap), in the layout of the
        method's official checkpoints (``partaware.encoders.heads`` builds it back); None: no head."""
        return None

    @property
    def device(self) -> torch.device:
        return self.backbone.cls_token.device

    def view(self, images: torch.Tensor, recipe: ViewRecipe, gen: torch.Generator) -> torch.Tensor:
        """A view computed on the model's device (its random draws come from the CPU generator)."""
        return make_views(images.to(self.device), recipe, gen, mean=LAB_MEAN, std=LAB_STD)


def cosine_schedule(start: float, end: float, step: int, total: int) -> float:
    """``start`` at step 0 rising/falling to ``end`` at ``total`` along a half cosine (momentum schedules)."""
    if total <= 1:
        return end
    return end - (end - start) * (math.cos(math.pi * min(step, total) / total) + 1) / 2


@torch.no_grad()
def ema_update(teacher: nn.Module, student: nn.Module, momentum: float) -> None:
    """teacher = m * teacher + (1 - m) * student, parameter by parameter."""
    for t, s in zip(teacher.parameters(), student.parameters(), strict=True):
        t.mul_(momentum).add_(s.detach(), alpha=1 - momentum)


def mlp(dims: list[int], *, bn: bool, last_bn: bool = False, act: type[nn.Module] = nn.GELU) -> nn.Sequential:
    """Linear layers with (optional BatchNorm and) activations between them; BN without affine last."""
    layers: list[nn.Module] = []
    for i in range(len(dims) - 1):
        last = i == len(dims) - 2
        layers.append(nn.Linear(dims[i], dims[i + 1], bias=not (bn and (not last or last_bn))))
        if not last:
            if bn:
                layers.append(nn.BatchNorm1d(dims[i + 1]))
            layers.append(act())
        elif last_bn:
            layers.append(nn.BatchNorm1d(dims[i + 1], affine=False))
    return nn.Sequential(*layers)


def random_masking(n: int, num_patches: int, ratio: float, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """MAE's per-image random masking: (kept indices ``n x K``, masked indices ``n x M``), sorted."""
    keep = int(round(num_patches * (1 - ratio)))
    order = torch.rand(n, num_patches, generator=gen).argsort(dim=1)
    return order[:, :keep].sort(dim=1).values, order[:, keep:].sort(dim=1).values


def block_masking(
    n: int, grid: int, num_masked: int, gen: torch.Generator, *, min_block: int = 2, aspect: float = 0.3
) -> torch.Tensor:
    """BEiT's blockwise masking on a ``grid x grid`` patch grid: rectangles of random area and aspect
    are added until ``num_masked`` patches are masked; exactly ``num_masked`` per image (``n x N`` bool),
    so masked tokens can be gathered as a dense tensor."""
    masks = torch.zeros(n, grid, grid, dtype=torch.bool)
    log_lo, log_hi = math.log(aspect), math.log(1 / aspect)
    for i in range(n):
        m = masks[i]
        for _ in range(50):
            left = num_masked - int(m.sum())
            if left <= 0:
                break
            area = min_block + float(torch.rand(1, generator=gen)) * (max(min_block, left) - min_block)
            r = math.exp(log_lo + float(torch.rand(1, generator=gen)) * (log_hi - log_lo))
            h = max(1, min(grid, int(round(math.sqrt(area * r)))))
            w = max(1, min(grid, int(round(math.sqrt(area / r)))))
            top = int(torch.randint(0, grid - h + 1, (1,), generator=gen))
            lft = int(torch.randint(0, grid - w + 1, (1,), generator=gen))
            m[top : top + h, lft : lft + w] = True
        flat = m.flatten()
        count = int(flat.sum())
        if count != num_masked:  # trim or top up at random so every image masks the same number
            idx = (flat if count > num_masked else ~flat).nonzero().squeeze(1)
            pick = idx[torch.randperm(len(idx), generator=gen)[: abs(count - num_masked)]]
            flat[pick] = count < num_masked
        masks[i] = flat.view(grid, grid)
    return masks.flatten(1)
