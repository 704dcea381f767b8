"""DeiT-B/16 (supervised, ImageNet-1k, 300 epochs; non-distilled, 81.8 top-1): the paper's supervised baseline.

Official layout: ``{'model': state}`` with timm's own key names (DeiT was built on timm) plus the
ImageNet classifier ``head.weight``/``head.bias``, which a frozen encoder does not use and is dropped.
The paper's code has no DeiT loader and ``run.sh`` names the distilled DeiT, which cannot load (198
position tokens); protocol §7.4 says to use these non-distilled weights.
"""

from __future__ import annotations

from typing import Any

from partaware.encoders.registry import CONVERTERS, register_encoder
from partaware.encoders.specs import EncoderSpec, WeightsSource

DROPPED = ("head.weight", "head.bias")


def convert_deit(checkpoint: dict[str, Any]):
    from partaware.encoders.convert import drop, take

    return drop(take(checkpoint, "model", what="DeiT checkpoint"), DROPPED), None


CONVERTERS.register("deit", convert_deit)

DEIT_B = register_encoder(
    EncoderSpec(
        name="deit_base_p16_in1k",
        aliases=("deit",),
        family="supervised",
        zoo="paper",
        arch="vit_base_patch16_224",
        weights=WeightsSource(
            kind="url",
            location="https://dl.fbaipublicfiles.com/deit/deit_base_patch16_224-b5f2ef4d.pth",
            sha256="b5f2ef4d",  # the leading digits in the file name (torch.hub convention)
            converter="deit",
        ),
        description="DeiT-B/16, supervised on ImageNet-1k, 300 epochs (non-distilled, 81.8 top-1)",
    )
)
