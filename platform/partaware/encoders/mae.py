"""MAE ViT-B/16 (MIM, ImageNet-1k, 1600 epochs): the encoder, and its bug-compatible variant.

Official layout: ``{'model': encoder state}`` with timm key names (a fixed sin-cos ``pos_embed`` stored
as a frozen parameter). Decoder keys (``decoder_*``, ``mask_token``), present only in full pretraining
checkpoints, are dropped by name.

Two encoders share these weights (and one file in the weight cache):
- ``mae_base_p16_in1k`` (``mae``): correct; position embeddings are added to patch tokens in place.
- ``mae_base_p16_in1k_shufflebug`` (``mae_shufflebug``): the paper's retrieval/classification wrapper
  calls ``random_masking(x, 0.0)``, which randomly permutes the patch tokens *before* the position
  embeddings are added (protocol §7.2), so every patch gets a random position code. This variant
  reproduces that (``variant="shufflebug"``, recorded with every result); use it only to reproduce the
  paper's Table-3 MAE numbers. Its ``patch:<k>`` maps are in shuffled order too.
"""

from __future__ import annotations

from typing import Any

from partaware.encoders.registry import CONVERTERS, VARIANTS, register_encoder
from partaware.encoders.specs import EncoderSpec, WeightsSource

DROPPED = ("mask_token", "decoder_*")
SHUFFLEBUG = "shufflebug"


def convert_mae(checkpoint: dict[str, Any]):
    from partaware.encoders.convert import drop, take

    return drop(take(checkpoint, "model", what="MAE checkpoint"), DROPPED), None


CONVERTERS.register("mae", convert_mae)
VARIANTS.register(SHUFFLEBUG, "partaware.encoders.loading:install_patch_shuffle")

_WEIGHTS = WeightsSource(
    kind="url",
    location="https://dl.fbaipublicfiles.com/mae/pretrain/mae_pretrain_vit_base.pth",
    converter="mae",
    cache_key="mae_base_p16_in1k",
)
MAE_B = register_encoder(
    EncoderSpec(
        name="mae_base_p16_in1k",
        aliases=("mae",),
        family="mim",
        zoo="paper",
        arch="vit_base_patch16_224",
        weights=_WEIGHTS,
        description="MAE ViT-B/16 encoder, ImageNet-1k, 1600 epochs (correct positions)",
    )
)
MAE_B_SHUFFLEBUG = register_encoder(
    MAE_B.model_copy(
        update={
            "name": "mae_base_p16_in1k_shufflebug",
            "aliases": ("mae_shufflebug",),
            "zoo": "variants",  # not one of the paper's seven: `all` never picks it, its name does
            "variant": SHUFFLEBUG,
            "description": "MAE ViT-B/16 with the paper code's token shuffle before position embedding (§7.2)",
        }
    )
)
