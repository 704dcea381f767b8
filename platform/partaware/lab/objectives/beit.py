"""BEiT (Bao et al. 2022) at lab scale: masked image modelling as visual-token prediction.

About 40% of the patches are masked blockwise and replaced by a learned mask token; the encoder sees
the whole sequence; a linear head predicts, at each masked position, the visual token of that patch
(from the lab's k-means tokenizer, fitted on the training images before step 0). The lab encoder
keeps the shared ViT (absolute positions), not BEiT's relative position bias, so every objective
trains the same architecture.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from partaware.lab.backbone import forward_tokens
from partaware.lab.objectives.base import Metrics
from partaware.lab.objectives.tokenizer import VisualTokenObjective


class BEiT(VisualTokenObjective):
    name, family = "beit", "mim"
    views_per_image = 1.0

    def __init__(self, *, num_tokens: int = 64, mask_ratio: float = 0.4, **kw):
        super().__init__(num_tokens=num_tokens, mask_ratio=mask_ratio, **kw)
        self.lm_head = nn.Linear(self.backbone.embed_dim, num_tokens)

    def loss(self, images, labels, gen, step) -> tuple[torch.Tensor, Metrics]:
        x = self.view(images, self.recipe, gen)
        mask = self.draw_mask(x.shape[0], gen, x.device)
        targets = self.tokenizer.tokens(x)[mask]
        tokens = forward_tokens(self.backbone, x, mask=mask, mask_token=self.mask_token)
        logits = self.lm_head(tokens[:, 1:][mask])
        loss = F.cross_entropy(logits, targets)
        return loss, {"token_acc": (logits.argmax(1) == targets).float().mean().item()}
