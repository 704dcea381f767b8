"""A visual tokenizer learned in the lab: k-means over per-patch normalised pixel patches.

BEiT predicts the ids of a discrete VAE (DALL-E's) and CAE predicts the same tokens; neither can be
downloaded here, so the lab fits its own codebook on the training images before step 0 (seeded,
deterministic). Per-patch normalisation makes a token describe local structure (edges, texture),
not colour, which is what a dVAE token mostly carries too.
"""

from __future__ import annotations

import torch
from torch import nn

from partaware.lab.augment import ViewRecipe, normalise
from partaware.lab.backbone import LAB_MEAN, LAB_PATCH, LAB_STD
from partaware.lab.objectives.base import Objective, block_masking
from partaware.lab.objectives.mae import normalised_patches


class KMeansTokenizer(nn.Module):
    """``tokens(images) -> B x N`` codebook ids; the codebook is a buffer (checkpointed)."""

    def __init__(self, num_tokens: int = 64, patch_dim: int = LAB_PATCH * LAB_PATCH * 3):
        super().__init__()
        self.register_buffer("codebook", torch.zeros(num_tokens, patch_dim))

    @property
    def num_tokens(self) -> int:
        return int(self.codebook.shape[0])

    @torch.no_grad()
    def fit(self, images_u8: torch.Tensor, gen: torch.Generator, *, max_patches: int = 20000, iters: int = 15) -> None:
        """Lloyd's k-means (k-means++-style seeding from random patches) on the training images."""
        patches = normalised_patches(normalise(images_u8, mean=LAB_MEAN, std=LAB_STD)).reshape(
            -1, self.codebook.shape[1]
        )
        if patches.shape[0] > max_patches:
            patches = patches[torch.randperm(patches.shape[0], generator=gen)[:max_patches]]
        k = self.num_tokens
        centres = patches[torch.randperm(patches.shape[0], generator=gen)[:k]].clone()
        for _ in range(iters):
            assign = torch.cdist(patches, centres).argmin(dim=1)
            sums = torch.zeros_like(centres).index_add_(0, assign, patches)
            counts = torch.bincount(assign, minlength=k).unsqueeze(1)
            empty = counts.squeeze(1) == 0
            centres = torch.where(counts > 0, sums / counts.clamp_min(1), centres)
            if bool(empty.any()):  # re-seed dead codes from random patches
                centres[empty] = patches[torch.randint(0, patches.shape[0], (int(empty.sum()),), generator=gen)]
        self.codebook.copy_(centres)

    @torch.no_grad()
    def tokens(self, images: torch.Tensor) -> torch.Tensor:
        """Token ids ``B x N`` of normalised images."""
        p = normalised_patches(images)
        b, n, d = p.shape
        return torch.cdist(p.reshape(b * n, d), self.codebook).argmin(dim=1).view(b, n)


class VisualTokenObjective(Objective):
    """What BEiT and CAE share: blockwise masks of a fixed size, a learned mask token, their augmentation,
    and targets from a ``KMeansTokenizer`` fitted on the training images before step 0."""

    def __init__(self, *, num_tokens: int = 64, mask_ratio: float = 0.4, **kw):
        super().__init__(**kw)
        self.grid = self.backbone.patch_embed.grid_size[0]
        self.num_masked = int(round(mask_ratio * self.grid * self.grid))
        self.tokenizer = KMeansTokenizer(num_tokens)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, self.backbone.embed_dim))
        nn.init.normal_(self.mask_token, std=0.02)
        self.recipe = ViewRecipe(self.input_size, scale=(0.25, 1.0), jitter_p=0.8, jitter=0.4)

    def setup(self, images: torch.Tensor, gen: torch.Generator) -> None:
        self.tokenizer.fit(images, gen)

    def draw_mask(self, n: int, gen: torch.Generator, device: torch.device) -> torch.Tensor:
        """``n x N`` bool, exactly ``num_masked`` patches per image."""
        return block_masking(n, self.grid, self.num_masked, gen).to(device)
