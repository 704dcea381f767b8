"""DINO (Caron et al. 2021) at lab scale: self-distillation with no labels.

Student = backbone + DINO head (3-layer MLP, l2-normalised bottleneck, weight-normalised prototypes
with the norm fixed, DINO's ``norm_last_layer``); teacher = EMA of the student (momentum on a cosine
schedule to 1). Multi-crop: two global views and several small local views (position embeddings
resampled to their grid); the teacher sees only the globals. Teacher outputs are centred (EMA
centre) and sharpened (low teacher temperature); the loss is the cross-entropy between teacher and
student distributions over every (teacher global, other student view) pair. The lab encoder is the
teacher backbone, as DINO evaluates it.

Two settings differ from DINO's ViT defaults, for a run of a hundred steps instead of hundreds of
thousands (measured, docs/lab.md): the head uses BatchNorm between its hidden layers (DINO's own
``--use_bn_in_head`` option), and the centre starts at the first batch's mean instead of zero. Without
them the head's outputs are nearly the same for every image at initialisation (cosine 0.95), the
zero centre lets every image get the same sharp target for the first steps, the student collapses onto
it within 4 steps, and once the centre catches up the teacher is uniform (entropy log K).

Views rotate hue over the whole colour circle and are not blurred (recipe version 2, as MoCo v3's: the synthetic
images colour their parts at random, and a view-invariance objective otherwise learns the colour layout; see
``mocov3.py`` and docs/lab.md). iBOT inherits these views.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from partaware.lab.augment import ViewRecipe, multi_crop
from partaware.lab.backbone import LAB_MEAN, LAB_STD, forward_tokens
from partaware.lab.objectives.base import Metrics, Objective, cosine_schedule, ema_update, mlp


class DINOHead(nn.Module):
    """MLP -> l2-normalised bottleneck -> cosine similarity to ``out_dim`` prototypes; any leading
    dimensions (iBOT applies it to every token), BatchNorm statistics over all of them."""

    def __init__(self, in_dim: int, out_dim: int, hidden: int = 256, bottleneck: int = 64, use_bn: bool = True):
        super().__init__()
        self.mlp = mlp([in_dim, hidden, hidden, bottleneck], bn=use_bn)
        self.prototypes = nn.Parameter(torch.randn(out_dim, bottleneck) * 0.02)
        self.freeze_prototypes = False  # DINO's ``freeze_last_layer``: fixed prototypes early in training

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        protos = self.prototypes.detach() if self.freeze_prototypes else self.prototypes
        z = self.mlp(x.reshape(-1, x.shape[-1])).reshape(*x.shape[:-1], -1)
        return F.linear(F.normalize(z, dim=-1), F.normalize(protos, dim=-1))


def dino_ce(teacher_probs: torch.Tensor, student_logits: torch.Tensor, student_temp: float) -> torch.Tensor:
    """Mean over rows of ``-sum p_teacher log softmax(student / T_s)``."""
    return torch.sum(-teacher_probs * F.log_softmax(student_logits / student_temp, dim=-1), dim=-1).mean()


class Centre(nn.Module):
    """The teacher's EMA centre (buffers, so it is checkpointed with the objective); it starts at the
    first batch's mean (``started``), not at zero."""

    def __init__(self, dim: int, momentum: float = 0.9):
        super().__init__()
        self.register_buffer("value", torch.zeros(1, dim))
        self.register_buffer("started", torch.zeros((), dtype=torch.bool))
        self.momentum = momentum

    def probs(self, teacher_logits: torch.Tensor, temp: float) -> torch.Tensor:
        if not bool(self.started):
            self.value.copy_(self.batch_centre(teacher_logits))
            self.started.fill_(True)
        return F.softmax((teacher_logits - self.value) / temp, dim=-1)

    @staticmethod
    def batch_centre(teacher_logits: torch.Tensor) -> torch.Tensor:
        return teacher_logits.reshape(-1, teacher_logits.shape[-1]).mean(dim=0, keepdim=True)

    @torch.no_grad()
    def update(self, teacher_logits: torch.Tensor) -> None:
        self.value.mul_(self.momentum).add_(self.batch_centre(teacher_logits), alpha=1 - self.momentum)


class DINO(Objective):
    name, family = "dino", "contrastive"
    n_global, n_local = 2, 4
    views_per_image = 2 + 4 * 0.25  # local crops have a quarter of the tokens
    learning_curve = "kl"
    recipe_version = 2  # 2: hue rotated over the whole circle, no blur (1: no hue, blur on half the views)

    def __init__(
        self,
        *,
        out_dim: int = 512,
        student_temp: float = 0.1,
        teacher_temp: float = 0.04,
        momentum: float = 0.99,
        freeze_fraction: float = 0.1,
        **kw,
    ):
        super().__init__(**kw)
        d = self.backbone.embed_dim
        self.head = DINOHead(d, out_dim)
        self.teacher_backbone = copy.deepcopy(self.backbone).requires_grad_(False)
        self.teacher_head = copy.deepcopy(self.head).requires_grad_(False)
        self.centre = Centre(out_dim)
        self.student_temp, self.teacher_temp, self.base_momentum = student_temp, teacher_temp, momentum
        self.freeze_steps = int(freeze_fraction * self.total_steps)
        jitter = {"jitter_p": 0.8, "jitter": 0.4, "hue": 0.5, "gray_p": 0.2, "blur_p": 0.0}
        self.global_recipe = ViewRecipe(self.input_size, scale=(0.35, 1.0), **jitter)
        # blur_sigma: recipe version 1's local blur (unused at blur_p 0; bench_lab_hue.py turns blur back on)
        self.local_recipe = ViewRecipe(self.input_size // 2, scale=(0.08, 0.35), blur_sigma=(0.1, 0.5), **jitter)

    def student_head(self, step: int) -> DINOHead:
        self.head.freeze_prototypes = step < self.freeze_steps
        return self.head

    def crops(self, images: torch.Tensor, gen: torch.Generator) -> list[torch.Tensor]:
        return multi_crop(
            images.to(self.device), self.global_recipe, self.local_recipe, gen,
            n_global=self.n_global, n_local=self.n_local, mean=LAB_MEAN, std=LAB_STD,
        )  # fmt: skip

    def loss(self, images, labels, gen, step) -> tuple[torch.Tensor, Metrics]:
        views = self.crops(images, gen)
        head = self.student_head(step)
        student = [head(forward_tokens(self.backbone, v)[:, 0]) for v in views]
        with torch.no_grad():
            teacher = [
                self.teacher_head(forward_tokens(self.teacher_backbone, v)[:, 0]) for v in views[: self.n_global]
            ]
            teacher_logits = torch.stack(teacher)
            probs = self.centre.probs(teacher_logits, self.teacher_temp)
        total, pairs = 0.0, 0
        for iq in range(self.n_global):
            for v, s in enumerate(student):
                if v == iq:
                    continue
                total = total + dino_ce(probs[iq], s, self.student_temp)
                pairs += 1
        self.centre.update(teacher_logits)
        entropy = -(probs * probs.clamp_min(1e-12).log()).sum(-1).mean().item()
        loss = total / pairs
        return loss, {"teacher_entropy": entropy, "kl": loss.item() - entropy}

    def momentum(self, step: int) -> float:
        return cosine_schedule(self.base_momentum, 1.0, step, self.total_steps)

    @torch.no_grad()
    def after_step(self, step: int) -> None:
        m = self.momentum(step)
        ema_update(self.teacher_backbone, self.backbone, m)
        ema_update(self.teacher_head, self.head, m)

    def export_backbone(self) -> nn.Module:
        return self.teacher_backbone

    def export_head(self) -> dict[str, torch.Tensor]:
        """The teacher head as DINO's checkpoints hold it: ``mlp.*`` and a weight-normalised
        ``last_layer`` (g = 1, v = the prototypes: cosine to normalised prototypes, as trained)."""
        head = self.teacher_head
        state = {f"mlp.{k}": v for k, v in head.mlp.state_dict().items()}
        protos = head.prototypes.detach()
        state["last_layer.weight_g"] = torch.ones(protos.shape[0], 1, dtype=protos.dtype, device=protos.device)
        state["last_layer.weight_v"] = protos.clone()
        return state
