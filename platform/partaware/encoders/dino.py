"""DINO ViT-B/16 (contrastive self-distillation, ImageNet-1k, 400 epochs): the **teacher**, with its head.

Official layout (the full checkpoint): ``{'student', 'teacher', 'optimizer', 'epoch', 'args',
'dino_loss', ...}``. The README's numbers use the teacher: ``teacher`` -> ``backbone.*`` (timm key names)
and ``head.*`` (``mlp.0/2/4`` and the weight-normalised ``last_layer``, 65536-d). The paper's code loads
the *student* under its default flag (protocol §7.3); picking ``teacher`` by name avoids that trap. A
``module.`` prefix (a DDP-wrapped teacher) is stripped where present.
"""

from __future__ import annotations

from typing import Any

from partaware.encoders.registry import CONVERTERS, HEAD_BUILDERS, register_encoder
from partaware.encoders.specs import EncoderSpec, WeightsSource


def convert_teacher(checkpoint: dict[str, Any], *, what: str, dropped: tuple[str, ...] = ()):
    """``checkpoint['teacher']`` -> (``backbone.*`` stripped, ``head.*`` stripped); anything else is an error."""
    from partaware.encoders.convert import CheckpointMismatchError, drop, keep_prefix, strip_prefix, take

    state = strip_prefix(take(checkpoint, "teacher", what=what), "module.")
    state = drop(state, dropped)
    foreign = sorted(k for k in state if not k.startswith(("backbone.", "head.")))
    if foreign:
        raise CheckpointMismatchError(f"{what}: unexpected keys {foreign} (expected backbone.* and head.*)")
    return keep_prefix(state, "backbone."), keep_prefix(state, "head.") or None


def convert_dino(checkpoint: dict[str, Any]):
    return convert_teacher(checkpoint, what="DINO checkpoint")


CONVERTERS.register("dino_teacher", convert_dino)
HEAD_BUILDERS.register("dino_teacher", "partaware.encoders.heads:build_dino_head")

DINO_B = register_encoder(
    EncoderSpec(
        name="dino_base_p16_in1k_teacher",
        aliases=("dino",),
        family="contrastive",
        zoo="paper",
        arch="vit_base_patch16_224",
        weights=WeightsSource(
            kind="url",
            location=(
                "https://dl.fbaipublicfiles.com/dino/dino_vitbase16_pretrain/"
                "dino_vitbase16_pretrain_full_checkpoint.pth"
            ),
            converter="dino_teacher",
        ),
        has_projection=True,
        description="DINO ViT-B/16 teacher, ImageNet-1k, 400 epochs; head to 65536-d (weight-normalised)",
    )
)
