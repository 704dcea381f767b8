"""Modern encoders through timm pretrained tags (``zoo="modern"``): weights resolve through timm's
pretrained config (Hugging Face hub file, or a file staged under ``<root>/weights/<name>/``), loaded with
``weights_only``/safetensors, passed through timm's own ``checkpoint_filter_fn`` for the architecture, and
loaded strictly (see ``weights.resolve_timm``).

All run at 224 px so that every encoder sees the same crops; timm resamples the position embeddings of
the 518-px DINOv2 to the 16x16 grid of a 224-px input with patch 14. SigLIP has no class token: its ``cls``
tap is the model's attention-pool output. Mean/std are each model's own (CLIP, SigLIP, EVA-02 differ
from ImageNet's), read from timm's pretrained config of the tag when first needed (``mean=None``), never
copied here and never read at listing time (that would import timm).
"""

from __future__ import annotations

from partaware.encoders.registry import register_encoder
from partaware.encoders.specs import EncoderSpec, WeightsSource


def _timm(name, aliases, family, tag, description, *, arch_kwargs=None) -> EncoderSpec:
    return register_encoder(
        EncoderSpec(
            name=name,
            aliases=aliases,
            family=family,
            zoo="modern",
            arch=tag,
            arch_kwargs=arch_kwargs or {},
            weights=WeightsSource(kind="timm", location=tag, filename="model.safetensors"),  # the hub file
            description=description,
            mean=None,  # timm's pretrained config of the tag
            std=None,
        )
    )


MODERN = [
    _timm(
        "dinov2_base_p14_lvd142m",
        ("dinov2",),
        "contrastive+mim",
        "vit_base_patch14_dinov2.lvd142m",
        "DINOv2 ViT-B/14 (LVD-142M), run at 224 px",
        arch_kwargs={"img_size": 224},
    ),
    _timm(
        "clip_base_p16_openai",
        ("clip",),
        "contrastive",
        "vit_base_patch16_clip_224.openai",
        "CLIP ViT-B/16 image tower (OpenAI)",
    ),
    _timm(
        "siglip_base_p16_webli",
        ("siglip",),
        "contrastive",
        "vit_base_patch16_siglip_224.webli",
        "SigLIP ViT-B/16 (WebLI); no class token: cls = attention-pool output",
    ),
    _timm(
        "eva02_base_p14_in22k_mim",
        ("eva02",),
        "mim",
        "eva02_base_patch14_224.mim_in22k",
        "EVA-02 ViT-B/14, MIM-pretrained on ImageNet-22k (CLIP-feature targets)",
    ),
    _timm(
        "deit3_base_p16_in1k",
        ("deit3",),
        "supervised",
        "deit3_base_patch16_224.fb_in1k",
        "DeiT III ViT-B/16, supervised on ImageNet-1k",
    ),
    _timm(
        "mae_large_p16_in1k",
        ("mae_large",),
        "mim",
        "vit_large_patch16_224.mae",
        "MAE ViT-L/16 encoder, ImageNet-1k",
    ),
]
