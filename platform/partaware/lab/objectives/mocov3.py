"""MoCo v3 (Chen, Xie, He 2021) at lab scale.

Base encoder = backbone + projector (3-layer MLP with BN) + predictor (2-layer MLP with BN); the
momentum encoder is an EMA copy of backbone + projector (momentum on a cosine schedule to 1).
Loss: the symmetric InfoNCE ``ctr(q1, k2) + ctr(q2, k1)`` with temperature tau, scaled by ``2 tau``
as in the paper's pseudo-code; keys come from the momentum encoder without gradient. The lab
encoder is the base backbone (what MoCo v3 evaluates).

Views rotate hue over the whole colour circle and are not blurred (recipe version 2). The synthetic images
colour every part at random, so a colour layout alone tells two images apart and the encoder learns colour
instead of shape and texture. ``bench/bench_lab_hue.py`` measures it: at 400 x 64 hue helped only without blur;
under ``cpu-xl`` hue with and without blur ended within noise of each other (docs/lab.md has the figures).
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from partaware.lab.augment import ViewRecipe
from partaware.lab.backbone import forward_tokens
from partaware.lab.objectives.base import Metrics, Objective, cosine_schedule, ema_update, mlp


class MoCoV3(Objective):
    name, family = "mocov3", "contrastive"
    views_per_image = 2.0  # two augmented views (plus two forward-only passes of the momentum encoder)
    recipe_version = 2  # 2: hue rotated over the whole circle, no blur (1: no hue, blur on half the views)

    def __init__(self, *, hidden: int = 256, dim: int = 64, tau: float = 0.2, momentum: float = 0.99, **kw):
        super().__init__(**kw)
        d = self.backbone.embed_dim
        self.projector = mlp([d, hidden, hidden, dim], bn=True, last_bn=True, act=nn.ReLU)
        self.predictor = mlp([dim, hidden, dim], bn=True, last_bn=True, act=nn.ReLU)
        self.momentum_backbone = copy.deepcopy(self.backbone).requires_grad_(False)
        self.momentum_projector = copy.deepcopy(self.projector).requires_grad_(False)
        self.tau, self.base_momentum = tau, momentum
        self.recipe = ViewRecipe(
            self.input_size, scale=(0.2, 1.0), jitter_p=0.8, jitter=0.4, hue=0.5, gray_p=0.2, blur_p=0.0
        )

    def _contrastive(self, q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        q, k = F.normalize(q, dim=1), F.normalize(k, dim=1)
        logits = q @ k.t() / self.tau
        return F.cross_entropy(logits, torch.arange(q.shape[0], device=q.device)) * 2 * self.tau

    def loss(self, images, labels, gen, step) -> tuple[torch.Tensor, Metrics]:
        x1, x2 = self.view(images, self.recipe, gen), self.view(images, self.recipe, gen)
        q1 = self.predictor(self.projector(forward_tokens(self.backbone, x1)[:, 0]))
        q2 = self.predictor(self.projector(forward_tokens(self.backbone, x2)[:, 0]))
        with torch.no_grad():
            k1 = self.momentum_projector(forward_tokens(self.momentum_backbone, x1)[:, 0])
            k2 = self.momentum_projector(forward_tokens(self.momentum_backbone, x2)[:, 0])
        loss = self._contrastive(q1, k2) + self._contrastive(q2, k1)
        return loss, {"momentum": self.momentum(step)}

    def momentum(self, step: int) -> float:
        return cosine_schedule(self.base_momentum, 1.0, step, self.total_steps)

    @torch.no_grad()
    def after_step(self, step: int) -> None:
        m = self.momentum(step)
        ema_update(self.momentum_backbone, self.backbone, m)
        ema_update(self.momentum_projector, self.projector, m)

    def export_head(self) -> dict[str, torch.Tensor]:
        """The online projector (the exported backbone is the online one too), as MoCo v3's
        ``base_encoder.head``: bias-free Linears with BatchNorm, ReLU between, BN without affine last."""
        return dict(self.projector.state_dict())
