"""The lab's one backbone: a tiny timm ``VisionTransformer`` shared by every objective.

Why these numbers: the synthetic images are downscaled to 64 px once; 8-px patches give an 8 x 8
token grid (a part covers one to a few patches); width 96 keeps a training step cheap on a laptop
CPU, and depth 12 keeps the paper's segmentation taps (blocks 4/6/8/12) meaningful. The exported
state dict loads strictly into ``timm.create_model(LAB_ARCH, num_classes=0, **LAB_ARCH_KWARGS)``,
which is exactly what ``partaware.encoders.loading.build_model`` builds from a lab spec.

The token-level forwards below reuse the model's own modules (patch projection, position
embedding, blocks, final norm) so objectives can mask, drop or replace tokens (MAE, BEiT, iBOT,
CAE) without any parameter outside the exported backbone.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from partaware.encoders.base import IMAGENET_MEAN, IMAGENET_STD

LAB_ARCH = "vit_tiny_patch16_224"
LAB_INPUT_SIZE = 64
LAB_PATCH = 8
LAB_ARCH_KWARGS: dict[str, Any] = {
    "img_size": LAB_INPUT_SIZE,
    "patch_size": LAB_PATCH,
    "embed_dim": 96,
    "depth": 12,
    "num_heads": 3,
}
LAB_MEAN = IMAGENET_MEAN
LAB_STD = IMAGENET_STD
#: bump when the backbone, augmentations or any objective's code changes: it enters the budget key.
LAB_VERSION = "1"


def create_backbone() -> nn.Module:
    """A freshly initialised lab ViT (timm's own init; seed the global RNG first for determinism)."""
    import timm

    return timm.create_model(LAB_ARCH, pretrained=False, num_classes=0, **LAB_ARCH_KWARGS)


def backbone_config() -> dict[str, Any]:
    """What the budget records about the architecture."""
    return {"arch": LAB_ARCH, **LAB_ARCH_KWARGS, "mean": list(LAB_MEAN), "std": list(LAB_STD)}


def embed_dim(model: nn.Module) -> int:
    return int(model.embed_dim)


def patchify_embed(model: nn.Module, images: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
    """Patch embeddings ``B x N x D`` (no position yet) and the grid; any multiple of the patch size."""
    x = model.patch_embed.proj(images)
    grid = (x.shape[-2], x.shape[-1])
    x = x.flatten(2).transpose(1, 2)
    return model.patch_embed.norm(x), grid


def position_embeddings(model: nn.Module, grid: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """(CLS position ``1 x 1 x D``, patch positions ``1 x N x D``), resampled for a smaller grid
    (DINO's local crops), as DINO's ``interpolate_pos_encoding`` does."""
    from timm.layers import resample_abs_pos_embed

    pos = model.pos_embed
    if tuple(grid) != tuple(model.patch_embed.grid_size):
        pos = resample_abs_pos_embed(pos, new_size=grid, old_size=model.patch_embed.grid_size, num_prefix_tokens=1)
    return pos[:, :1], pos[:, 1:]


def run_blocks(model: nn.Module, tokens: torch.Tensor) -> torch.Tensor:
    """Pre-norm, the transformer blocks and the final norm (as ``forward_features`` does)."""
    return model.norm(model.blocks(model.norm_pre(tokens)))


def forward_tokens(
    model: nn.Module,
    images: torch.Tensor,
    *,
    mask: torch.Tensor | None = None,
    mask_token: torch.Tensor | None = None,
) -> torch.Tensor:
    """All tokens ``B x (1+N) x D`` after the final norm; where ``mask`` (``B x N`` bool) is set the
    patch embedding is replaced by ``mask_token`` before the position is added (BEiT / iBOT).
    Without a mask this equals ``model.forward_features`` at the model's own input size."""
    x, grid = patchify_embed(model, images)
    if mask is not None:
        x = torch.where(mask.unsqueeze(-1), mask_token.to(x.dtype).expand_as(x), x)
    cls_pos, patch_pos = position_embeddings(model, grid)
    cls = model.cls_token.expand(x.shape[0], -1, -1) + cls_pos
    return run_blocks(model, torch.cat([cls, x + patch_pos], dim=1))


def forward_visible(model: nn.Module, images: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """CLS + the kept patches only (MAE / CAE encoders): ``keep`` is ``B x K`` patch indices.
    Returns ``B x (1+K) x D`` after the final norm."""
    x, grid = patchify_embed(model, images)
    cls_pos, patch_pos = position_embeddings(model, grid)
    x = x + patch_pos
    x = torch.gather(x, 1, keep.unsqueeze(-1).expand(-1, -1, x.shape[-1]))
    cls = model.cls_token.expand(x.shape[0], -1, -1) + cls_pos
    return run_blocks(model, torch.cat([cls, x], dim=1))


def patchify_pixels(images: torch.Tensor, patch: int = LAB_PATCH) -> torch.Tensor:
    """``B x 3 x H x W`` -> ``B x N x (patch*patch*3)`` in the patch order of the ViT (row-major)."""
    b, c, h, w = images.shape
    x = images.reshape(b, c, h // patch, patch, w // patch, patch)
    return x.permute(0, 2, 4, 3, 5, 1).reshape(b, (h // patch) * (w // patch), patch * patch * c)


def sincos_pos_embed(dim: int, grid: int) -> torch.Tensor:
    """Fixed 2-D sine-cosine position embedding ``1 x grid*grid x dim`` (MAE's decoder positions)."""
    if dim % 4:
        raise ValueError(f"sin-cos position embedding needs a dim divisible by 4, got {dim}")
    ys, xs = torch.meshgrid(
        torch.arange(grid, dtype=torch.float32), torch.arange(grid, dtype=torch.float32), indexing="ij"
    )
    omega = 1.0 / 10000 ** (torch.arange(dim // 4, dtype=torch.float32) / (dim // 4))
    parts = []
    for coord in (ys.flatten(), xs.flatten()):
        out = coord[:, None] * omega[None]
        parts += [out.sin(), out.cos()]
    return torch.cat(parts, dim=1).unsqueeze(0)
