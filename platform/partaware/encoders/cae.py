"""CAE ViT-B/16 (MIM, ImageNet-1k, 1600 epochs): the encoder.

Official layout: ``{'model': ...}`` of the whole pretraining model: ``encoder.*`` (kept, prefix
stripped), and ``teacher.*`` (the momentum copy for the alignment loss), ``pretext_neck.*`` (regressor
and decoder), ``encoder_to_decoder*``, ``mask_token`` (dropped by name). The encoder differs from timm's
ViT in two ways that the conversion makes exact:
- split q/v biases (``attn.q_bias``, ``attn.v_bias``; k has none) -> ``attn.qkv.bias = [q, 0, v]``;
- layer scale ``gamma_1``/``gamma_2`` (init 0.1) -> ``ls1.gamma``/``ls2.gamma``.
Its fixed 2-D sin-cos position table (with a zero row for the CLS token) is stored in the checkpoint and
is copied as is into ``pos_embed`` (frozen, like every weight here).
"""

from __future__ import annotations

from typing import Any

from partaware.encoders.registry import CONVERTERS, register_encoder
from partaware.encoders.specs import EncoderSpec, WeightsSource

DROPPED = ("teacher.*", "pretext_neck.*", "encoder_to_decoder.*", "encoder_to_decoder_norm.*", "mask_token")


def convert_cae(checkpoint: dict[str, Any]):
    from partaware.encoders.convert import (
        CheckpointMismatchError,
        drop,
        keep_prefix,
        layer_scale_to_timm,
        qv_bias_to_qkv,
        take,
    )

    state = drop(take(checkpoint, "model", what="CAE checkpoint"), DROPPED)
    foreign = sorted(k for k in state if not k.startswith("encoder."))
    if foreign:
        raise CheckpointMismatchError(f"CAE checkpoint: unexpected keys {foreign} (expected encoder.*)")
    return layer_scale_to_timm(qv_bias_to_qkv(keep_prefix(state, "encoder."))), None


CONVERTERS.register("cae", convert_cae)

CAE_B = register_encoder(
    EncoderSpec(
        name="cae_base_p16_in1k_1600ep",
        aliases=("cae",),
        family="mim",
        zoo="paper",
        arch="vit_base_patch16_224",
        arch_kwargs={"init_values": 0.1},
        weights=WeightsSource(
            kind="url",
            # the CAE authors' Google-Drive folder: no plain-GET download; stage the file
            location="https://drive.google.com/drive/folders/1wwhg7nj2GQuU9uthVuQLkEEXEjx90G7g",
            filename="cae_base_1600ep.pth",
            downloadable=False,
            converter="cae",
        ),
        description="CAE ViT-B/16 encoder, ImageNet-1k, 1600 epochs; q/v bias, layer scale, sin-cos positions",
    )
)
