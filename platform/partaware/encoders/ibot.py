"""iBOT ViT-B/16 (contrastive + MIM, ImageNet-1k, 400 epochs, random-mask): the **teacher**, with its head.

iBOT releases two files per model: the "backbone (t)" ``checkpoint_teacher.pth`` (``{'state_dict': ...}``,
the teacher backbone under timm names, no head: converter ``ibot_backbone``) and the "full ckpt"
``checkpoint.pth`` (student and teacher with their heads). The paper's ``projection`` needs the head, so
the registered encoder reads the full checkpoint (its URL follows the release's file layout beside
``checkpoint_teacher.pth``).

Full layout: ``{'teacher': ...}`` with ``backbone.*`` (timm key names plus ``masked_embed``, the
learned mask token, dropped: a frozen encoder never masks) and ``head.*``: the DINO-style CLS branch
(``mlp``, ``last_layer``, 8192-d) plus the patch branch ``last_layer2`` (a second copy of ``last_layer``
when the head is shared, as for ViT-B) and ``last_norm*``; the paper's ``projection`` is the CLS branch
``head(x)[0]``, so the patch branch is dropped by name.
"""

from __future__ import annotations

from typing import Any

from partaware.encoders.dino import convert_teacher
from partaware.encoders.registry import CONVERTERS, HEAD_BUILDERS, register_encoder
from partaware.encoders.specs import EncoderSpec, WeightsSource

DROPPED = ("masked_embed", "backbone.masked_embed", "head.last_layer2.*", "head.last_norm.*", "head.last_norm2.*")


def convert_ibot(checkpoint: dict[str, Any]):
    return convert_teacher(checkpoint, what="iBOT checkpoint", dropped=DROPPED)


def convert_ibot_backbone(checkpoint: dict[str, Any]):
    """``checkpoint_teacher.pth``: ``{'state_dict': backbone}`` (timm names; ``masked_embed`` dropped)."""
    from partaware.encoders.convert import drop, strip_prefix, take

    return drop(strip_prefix(take(checkpoint, "state_dict", what="iBOT backbone file"), "module."), DROPPED), None


CONVERTERS.register("ibot_teacher", convert_ibot)
CONVERTERS.register("ibot_backbone", convert_ibot_backbone)
HEAD_BUILDERS.register("ibot_teacher", "partaware.encoders.heads:build_dino_head")

IBOT_B = register_encoder(
    EncoderSpec(
        name="ibot_base_p16_in1k_teacher",
        aliases=("ibot",),
        family="contrastive+mim",
        zoo="paper",
        arch="vit_base_patch16_224",
        weights=WeightsSource(
            kind="url",
            location=(
                "https://lf3-nlp-opensource.bytetos.com/obj/nlp-opensource/archive/2022/ibot/"
                "vitb_16_rand_mask/checkpoint.pth"
            ),
            converter="ibot_teacher",
        ),
        has_projection=True,
        description="iBOT ViT-B/16 teacher (random mask), ImageNet-1k, 400 epochs; CLS head to 8192-d",
    )
)
