"""MoCo v3 ViT-B/16 (contrastive, ImageNet-1k, 300 epochs): base (online) encoder plus its projector.

Official layout: ``{'state_dict': ...}`` (plus epoch/arch/optimizer/scaler) of the DDP-wrapped MoCo
model: ``module.base_encoder.*`` (a timm ViT: fixed 2-D sin-cos ``pos_embed`` stored as a frozen
parameter, qkv bias), ``module.momentum_encoder.*`` and ``module.predictor.*``. We keep the base
encoder; its ``head.*`` is the 3-layer BN projector (the ``proj`` tap); momentum encoder and predictor
are dropped (the paper uses neither).
"""

from __future__ import annotations

from typing import Any

from partaware.encoders.registry import CONVERTERS, HEAD_BUILDERS, register_encoder
from partaware.encoders.specs import EncoderSpec, WeightsSource

PREFIX = "module.base_encoder."
DROPPED = ("module.momentum_encoder.*", "module.predictor.*")


def convert_mocov3(checkpoint: dict[str, Any]):
    from partaware.encoders.convert import CheckpointMismatchError, drop, keep_prefix, split, take

    state = take(checkpoint, "state_dict", what="MoCo v3 checkpoint")
    state = drop(state, DROPPED)
    foreign = sorted(k for k in state if not k.startswith(PREFIX))
    if foreign:
        raise CheckpointMismatchError(f"MoCo v3 checkpoint: unexpected keys {foreign} (expected {PREFIX}*)")
    backbone, head = split(keep_prefix(state, PREFIX), "head.")
    return backbone, head


CONVERTERS.register("mocov3", convert_mocov3)
HEAD_BUILDERS.register("mocov3", "partaware.encoders.heads:build_mocov3_head")

MOCOV3_B = register_encoder(
    EncoderSpec(
        name="mocov3_base_p16_in1k_300ep",
        aliases=("mocov3", "moco"),
        family="contrastive",
        zoo="paper",
        arch="vit_base_patch16_224",
        weights=WeightsSource(
            kind="url",
            location="https://dl.fbaipublicfiles.com/moco-v3/vit-b-300ep/vit-b-300ep.pth.tar",
            converter="mocov3",
        ),
        has_projection=True,
        description="MoCo v3 ViT-B/16, ImageNet-1k, 300 epochs; base encoder + 3-layer BN projector (256-d)",
    )
)
