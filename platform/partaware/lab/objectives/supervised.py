"""Supervised pretraining (the DeiT role): cross-entropy with label smoothing on object labels."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from partaware.lab.augment import ViewRecipe
from partaware.lab.backbone import forward_tokens
from partaware.lab.objectives.base import Metrics, Objective


class Supervised(Objective):
    name, family, views_per_image = "supervised", "supervised", 1.0

    def __init__(self, *, label_smoothing: float = 0.1, **kw):
        super().__init__(**kw)
        self.head = nn.Linear(self.backbone.embed_dim, self.num_classes)
        self.recipe = ViewRecipe(self.input_size, scale=(0.6, 1.0), jitter_p=0.5, jitter=0.2)
        self.label_smoothing = label_smoothing

    def loss(self, images, labels, gen, step) -> tuple[torch.Tensor, Metrics]:
        x = self.view(images, self.recipe, gen)
        logits = self.head(forward_tokens(self.backbone, x)[:, 0])
        loss = F.cross_entropy(logits, labels, label_smoothing=self.label_smoothing)
        acc = (logits.argmax(1) == labels).float().mean().item()
        return loss, {"acc": acc}
