"""CAE (Chen et al. 2023, "Context Autoencoder") at lab scale.

The encoder sees only the visible patches (about half are masked blockwise); a latent contextual
regressor (cross-attention: queries are mask tokens at the masked positions, keys/values the visible
latents and the queries) predicts the latents of the masked patches; an *alignment* loss pulls those
predictions towards the encoder's own latents of the masked patches (computed without gradient);
a decoder (self-attention over the predicted latents) predicts the masked patches' visual tokens
(the lab's k-means tokenizer standing in for DALL-E's). Loss = token CE + 2 * alignment MSE.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from timm.models.vision_transformer import Block, Mlp
from torch import nn

from partaware.lab.backbone import forward_visible, position_embeddings
from partaware.lab.objectives.base import Metrics
from partaware.lab.objectives.tokenizer import VisualTokenObjective


class CrossBlock(nn.Module):
    """Pre-norm cross-attention (queries attend to keys/values) followed by an MLP."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.norm_q, self.norm_kv, self.norm_mlp = nn.LayerNorm(dim), nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.mlp = Mlp(dim, dim * 4)

    def forward(self, q: torch.Tensor, kv: torch.Tensor) -> torch.Tensor:
        kv = self.norm_kv(kv)
        q = q + self.attn(self.norm_q(q), kv, kv, need_weights=False)[0]
        return q + self.mlp(self.norm_mlp(q))


class CAE(VisualTokenObjective):
    name, family = "cae", "mim"
    views_per_image = 1.0  # visible half + the masked half (target latents, no gradient)

    def __init__(
        self,
        *,
        num_tokens: int = 64,
        mask_ratio: float = 0.5,
        regressor_depth: int = 2,
        decoder_depth: int = 2,
        align_weight: float = 2.0,
        **kw,
    ):
        super().__init__(num_tokens=num_tokens, mask_ratio=mask_ratio, **kw)
        d = self.backbone.embed_dim
        self.regressor = nn.ModuleList([CrossBlock(d, 3) for _ in range(regressor_depth)])
        self.regressor_norm = nn.LayerNorm(d)
        self.decoder = nn.Sequential(*[Block(d, num_heads=3) for _ in range(decoder_depth)])
        self.decoder_norm = nn.LayerNorm(d)
        self.decoder_head = nn.Linear(d, num_tokens)
        self.align_weight = align_weight

    def loss(self, images, labels, gen, step) -> tuple[torch.Tensor, Metrics]:
        x = self.view(images, self.recipe, gen)
        b = x.shape[0]
        mask = self.draw_mask(b, gen, x.device)
        order = torch.argsort(mask.int(), dim=1, stable=True)  # visible first, then masked (sorted)
        n_vis = mask.shape[1] - self.num_masked
        visible, masked = order[:, :n_vis], order[:, n_vis:]
        latent = forward_visible(self.backbone, x, visible)[:, 1:]  # B x V x D
        _, pos = position_embeddings(self.backbone, (self.grid, self.grid))
        pos = pos.expand(b, -1, -1)
        gather = lambda t, idx: torch.gather(t, 1, idx.unsqueeze(-1).expand(-1, -1, t.shape[-1]))  # noqa: E731
        pos_m, pos_v = gather(pos, masked), gather(pos, visible)
        q = self.mask_token.expand(b, self.num_masked, -1) + pos_m
        for blk in self.regressor:
            q = blk(q, torch.cat([latent + pos_v, q], dim=1))
        predicted = self.regressor_norm(q)
        with torch.no_grad():
            target_latent = forward_visible(self.backbone, x, masked)[:, 1:]
        align = F.mse_loss(predicted, target_latent)
        logits = self.decoder_head(self.decoder_norm(self.decoder(predicted + pos_m)))
        targets = gather(self.tokenizer.tokens(x).unsqueeze(-1), masked).squeeze(-1)
        ce = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))
        loss = ce + self.align_weight * align
        return loss, {"token_ce": ce.item(), "align": align.item()}
