"""The lab's one backbone: a tiny timm ``VisionTransformer`` with a convolutional stem, shared by every objective.

Why these numbers (measured, docs/lab.md): the lab's images are 64 px object crops; 8-px patches give
an 8 x 8 token grid (a part covers one to a few patches). A plain 8-px linear patch embedding did not
learn object classes at all within a CPU budget (about 10 epochs of 840 images: chance), while a
convolutional stem (three stride-2 3x3 convs with BatchNorm, then a 1x1 projection: Xiao et al., "Early
Convolutions Help Transformers See Better", 2021) with the same token grid did. Width 96 and depth 6
keep a step cheap on a laptop CPU; the paper's segmentation taps map to blocks 4 and 6.

The model is registered in timm as ``partaware_lab_vit`` when this module is imported, so the exported
state dict loads strictly into ``timm.create_model(LAB_ARCH, num_classes=0, **LAB_ARCH_KWARGS)``;
``partaware.lab.zoo`` lists it in ``TIMM_ARCHS``, so ``build_model`` imports this module before it builds
a lab spec (also in a Ray worker that only unpickled the spec), and listing encoders never does.

The token-level forwards below reuse the model's own modules (stem, position embedding, blocks, final
norm) so objectives can mask, drop or replace tokens (MAE, BEiT, iBOT, CAE) without any parameter
outside the exported backbone. A convolution sees across patch borders, so every masked forward first
blanks the masked patches' pixels (0 after normalisation, the mean colour): no masked pixel reaches a
visible token, as in ConvMAE's masked convolutions.
"""

from __future__ import annotations

import math
from functools import partial
from typing import Any

import torch
from timm.layers import PatchEmbed
from timm.models import register_model
from timm.models.vision_transformer import VisionTransformer
from torch import nn

from partaware.lab.arch import (  # noqa: F401  (re-exported: the lab's modules import them from here)
    LAB_ARCH,
    LAB_ARCH_KWARGS,
    LAB_INPUT_SIZE,
    LAB_MEAN,
    LAB_PATCH,
    LAB_STD,
)

#: bump when the backbone, augmentations or data change: it enters the budget key. A change to one objective's
#: recipe raises that objective's ``recipe_version`` instead, so the other objectives keep their weights.
LAB_VERSION = "3"


class ConvStemPatchEmbed(PatchEmbed):
    """timm's ``PatchEmbed`` with ``proj`` replaced by a conv stem of the same total stride (the patch
    size): ``log2(patch)`` stride-2 3x3 conv + BN + ReLU layers doubling ``stem_width``, then a 1x1 conv."""

    def __init__(self, *args: Any, stem_width: int = 16, **kwargs: Any):
        super().__init__(*args, **kwargs)
        stride = self.patch_size[0]
        if self.patch_size[0] != self.patch_size[1] or stride < 2 or stride & (stride - 1):
            raise ValueError(f"a conv stem needs a square power-of-two patch size, got {self.patch_size}")
        in_chans, embed_dim = self.proj.in_channels, self.proj.out_channels
        layers: list[nn.Module] = []
        width = stem_width
        for _ in range(int(math.log2(stride))):
            layers += [nn.Conv2d(in_chans, width, 3, 2, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True)]
            in_chans, width = width, width * 2
        layers.append(nn.Conv2d(in_chans, embed_dim, 1))
        self.proj = nn.Sequential(*layers)


@register_model
def partaware_lab_vit(pretrained: bool = False, stem_width: int = 16, **kwargs: Any) -> VisionTransformer:
    """The lab ViT (never pretrained: its weights come from ``partctl pretrain``)."""
    if pretrained:
        raise ValueError("partaware_lab_vit has no published weights: train them with `partctl pretrain`")
    for key in ("pretrained_cfg", "pretrained_cfg_overlay", "cache_dir"):
        kwargs.pop(key, None)
    return VisionTransformer(embed_layer=partial(ConvStemPatchEmbed, stem_width=stem_width), **kwargs)


def create_backbone() -> nn.Module:
    """A freshly initialised lab ViT (timm's own init; seed the global RNG first for determinism)."""
    import timm

    return timm.create_model(LAB_ARCH, pretrained=False, num_classes=0, **LAB_ARCH_KWARGS)


def backbone_config() -> dict[str, Any]:
    """What the budget records about the architecture."""
    return {"arch": LAB_ARCH, **LAB_ARCH_KWARGS, "mean": list(LAB_MEAN), "std": list(LAB_STD)}


def embed_dim(model: nn.Module) -> int:
    return int(model.embed_dim)


def blank_patches(images: torch.Tensor, hidden: torch.Tensor, patch: int = LAB_PATCH) -> torch.Tensor:
    """``images`` with the pixels of the patches where ``hidden`` (``B x N`` bool, row-major) is set
    replaced by 0 (the mean colour after normalisation), so the stem cannot see them."""
    b, _, h, w = images.shape
    grid = hidden.view(b, 1, h // patch, w // patch)
    pixels = grid.repeat_interleave(patch, dim=2).repeat_interleave(patch, dim=3)
    return images.masked_fill(pixels, 0.0)


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
    patch's pixels are blanked and its embedding is replaced by ``mask_token`` before the position is
    added (BEiT / iBOT). Without a mask this equals ``model.forward_features`` at the model's input size."""
    if mask is not None:
        images = blank_patches(images, mask)
    x, grid = patchify_embed(model, images)
    if mask is not None:
        x = torch.where(mask.unsqueeze(-1), mask_token.to(x.dtype).expand_as(x), x)
    cls_pos, patch_pos = position_embeddings(model, grid)
    cls = model.cls_token.expand(x.shape[0], -1, -1) + cls_pos
    return run_blocks(model, torch.cat([cls, x + patch_pos], dim=1))


def forward_visible(model: nn.Module, images: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """CLS + the kept patches only (MAE / CAE encoders): ``keep`` is ``B x K`` patch indices.
    The other patches' pixels are blanked first. Returns ``B x (1+K) x D`` after the final norm."""
    n = (images.shape[-2] // LAB_PATCH) * (images.shape[-1] // LAB_PATCH)
    hidden = torch.ones(images.shape[0], n, dtype=torch.bool, device=images.device).scatter(1, keep, False)
    x, grid = patchify_embed(model, blank_patches(images, hidden))
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
