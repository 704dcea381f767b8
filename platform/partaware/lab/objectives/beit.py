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

from partaware.lab.augment import ViewRecipe
from partaware.lab.backbone import forward_tokens
from partaware.lab.objectives.base import Metrics, Objective, block_masking
from partaware.lab.objectives.tokenizer import KMeansTokenizer


class BEiT(Objective):
    name, family = "beit", "mim"
    views_per_image = 1.0

    def __init__(self, *, num_tokens: int = 64, mask_ratio: float = 0.4, **kw):
        super().__init__(**kw)
        d = self.backbone.embed_dim
        self.grid = self.backbone.patch_embed.grid_size[0]
        self.num_masked = int(round(mask_ratio * self.grid * self.grid))
        self.tokenizer = KMeansTokenizer(num_tokens)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, d))
        nn.init.normal_(self.mask_token, std=0.02)
        self.lm_head = nn.Linear(d, num_tokens)
        self.recipe = ViewRecipe(self.input_size, scale=(0.25, 1.0), jitter_p=0.8, jitter=0.4)

    def setup(self, images: torch.Tensor, gen: torch.Generator) -> None:
        self.tokenizer.fit(images, gen)

    def loss(self, images, labels, gen, step) -> tuple[torch.Tensor, Metrics]:
        x = self.view(images, self.recipe, gen)
        mask = block_masking(x.shape[0], self.grid, self.num_masked, gen).to(x.device)
        targets = self.tokenizer.tokens(x)[mask]
        tokens = forward_tokens(self.backbone, x, mask=mask, mask_token=self.mask_token)
        logits = self.lm_head(tokens[:, 1:][mask])
        loss = F.cross_entropy(logits, targets)
        return loss, {"token_acc": (logits.argmax(1) == targets).float().mean().item()}
