"""BEiT ViT-B/16 (MIM, ImageNet-1k, 800 epochs; the authors' own run): the pretrained encoder.

Architecture: no absolute position embedding, one relative position bias shared by all blocks
(``rel_pos_bias.relative_position_bias_table``), layer scale (``gamma_1``/``gamma_2``, init 0.1), split
q/v biases (k has none). timm's ``Beit`` built with ``use_shared_rel_pos_bias=True,
use_abs_pos_emb=False`` and a token-pooled final ``norm`` has exactly these parameters under the same
names, so the conversion only drops keys: ``mask_token`` and ``lm_head.*`` (pretraining only),
``cls_pt_layers.*`` (BEiT v2 layouts), and the derived ``relative_position_index`` buffers, after checking
they equal the index timm derives (a different index would be a different function).
"""

from __future__ import annotations

from typing import Any

from partaware.encoders.registry import CONVERTERS, register_encoder
from partaware.encoders.specs import EncoderSpec, WeightsSource

DROPPED = ("mask_token", "lm_head.*", "cls_pt_layers.*")
_INDEX_KEYS = ("rel_pos_bias.relative_position_index", "blocks.*.attn.relative_position_index")


def convert_beit(checkpoint: dict[str, Any]):
    import fnmatch

    import torch
    from timm.models.beit import gen_relative_position_index

    from partaware.encoders.convert import CheckpointMismatchError, drop, take

    state = drop(take(checkpoint, "model", what="BEiT checkpoint"), DROPPED)
    for key in [k for k in state if any(fnmatch.fnmatchcase(k, p) for p in _INDEX_KEYS)]:
        index = state.pop(key)
        side = round((index.shape[0] - 1) ** 0.5)
        expected = gen_relative_position_index((side, side))
        if index.shape != expected.shape or not torch.equal(index.long(), expected):
            raise CheckpointMismatchError(f"BEiT checkpoint: {key} is not the standard relative position index")
    return state, None


CONVERTERS.register("beit", convert_beit)

BEIT_B = register_encoder(
    EncoderSpec(
        name="beit_base_p16_in1k_800ep",
        aliases=("beit",),
        family="mim",
        zoo="paper",
        arch="beit_base_patch16_224",
        arch_kwargs={
            "use_abs_pos_emb": False,
            "use_rel_pos_bias": False,
            "use_shared_rel_pos_bias": True,
            "init_values": 0.1,
            "global_pool": "token",
        },
        weights=WeightsSource(
            kind="url",
            # the authors' Google-Drive folder (protocol §6): no plain-GET download; stage the file
            location="https://drive.google.com/drive/folders/1JSNzbxc9MBpNIhMRP8Vd0FFk7K5hC65q",
            filename="beit_base_standard_epoch800_checkpoint-799.pth",
            downloadable=False,
            converter="beit",
        ),
        description="BEiT ViT-B/16, ImageNet-1k, 800 epochs (authors' run); shared rel-pos bias, layer scale",
    )
)
