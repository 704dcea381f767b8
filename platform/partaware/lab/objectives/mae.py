"""MAE (He et al. 2022) at lab scale: masked autoencoding of normalised pixels.

The encoder sees only a random 25% of the patches (75% masked per image); a light decoder (its own
width, fixed sin-cos positions, a shared learned mask token) reconstructs every patch; the loss is
the mean squared error on the *masked* patches of per-patch normalised pixels (``norm_pix_loss``).
Augmentation is crop + flip only, as in MAE. The lab encoder is the encoder.
"""

from __future__ import annotations

import torch
from timm.models.vision_transformer import Block
from torch import nn

from partaware.lab.augment import ViewRecipe
from partaware.lab.backbone import LAB_PATCH, forward_visible, patchify_pixels, sincos_pos_embed
from partaware.lab.objectives.base import Metrics, Objective, random_masking


def normalised_patches(images: torch.Tensor, patch: int = LAB_PATCH) -> torch.Tensor:
    """Per-patch normalised pixels, MAE's ``norm_pix_loss`` target."""
    target = patchify_pixels(images, patch)
    mean, var = target.mean(dim=-1, keepdim=True), target.var(dim=-1, keepdim=True)
    return (target - mean) / (var + 1e-6) ** 0.5


class MAE(Objective):
    name, family = "mae", "mim"
    views_per_image = 0.25  # the encoder runs on a quarter of the tokens

    def __init__(self, *, mask_ratio: float = 0.75, decoder_dim: int = 64, decoder_depth: int = 2, **kw):
        super().__init__(**kw)
        d = self.backbone.embed_dim
        self.grid = self.backbone.patch_embed.grid_size[0]
        self.num_patches = self.grid * self.grid
        self.mask_ratio = mask_ratio
        self.decoder_embed = nn.Linear(d, decoder_dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, decoder_dim))
        nn.init.normal_(self.mask_token, std=0.02)
        self.register_buffer("decoder_pos", sincos_pos_embed(decoder_dim, self.grid), persistent=False)
        self.decoder = nn.Sequential(*[Block(decoder_dim, num_heads=2, mlp_ratio=4.0) for _ in range(decoder_depth)])
        self.decoder_norm = nn.LayerNorm(decoder_dim)
        self.decoder_pred = nn.Linear(decoder_dim, LAB_PATCH * LAB_PATCH * 3)
        self.recipe = ViewRecipe(self.input_size, scale=(0.2, 1.0))

    def reconstruct(self, x: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """(predicted normalised patches ``B x N x P``, masked indices ``B x M``) for normalised images."""
        b = x.shape[0]
        keep, masked = (t.to(x.device) for t in random_masking(b, self.num_patches, self.mask_ratio, gen))
        latent = forward_visible(self.backbone, x, keep)  # B x (1+K) x D
        y = self.decoder_embed(latent)
        full = self.mask_token.expand(b, self.num_patches, -1).clone()
        full = full.scatter(1, keep.unsqueeze(-1).expand(-1, -1, y.shape[-1]), y[:, 1:])
        full = full + self.decoder_pos
        tokens = torch.cat([y[:, :1], full], dim=1)
        pred = self.decoder_pred(self.decoder_norm(self.decoder(tokens)))[:, 1:]
        return pred, masked

    def masked_error(self, x: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(per-masked-patch MSE of the model, the masked targets ``B x M x P``, masked indices)."""
        pred, masked = self.reconstruct(x, gen)
        target = normalised_patches(x)
        idx = masked.unsqueeze(-1).expand(-1, -1, target.shape[-1])
        t = torch.gather(target, 1, idx)
        p = torch.gather(pred, 1, idx)
        return ((p - t) ** 2).mean(dim=-1), t, masked

    def loss(self, images, labels, gen, step) -> tuple[torch.Tensor, Metrics]:
        err, _, _ = self.masked_error(self.view(images, self.recipe, gen), gen)
        return err.mean(), {}
