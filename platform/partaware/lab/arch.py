"""The lab backbone's architecture constants, with no torch: the ``lab/<objective>`` encoder specs name
them at listing time (``partctl encoders list``, job validation), long before a model is built.

``backbone`` builds the model from these and registers ``partaware_lab_vit`` in timm; the numbers are
explained there and in docs/lab.md.
"""

from __future__ import annotations

from typing import Any

from partaware.encoders.specs import IMAGENET_MEAN, IMAGENET_STD

LAB_ARCH = "partaware_lab_vit"
LAB_INPUT_SIZE = 64
LAB_PATCH = 8
LAB_ARCH_KWARGS: dict[str, Any] = {
    "img_size": LAB_INPUT_SIZE,
    "patch_size": LAB_PATCH,
    "embed_dim": 96,
    "depth": 6,
    "num_heads": 3,
    "stem_width": 16,
}
LAB_MEAN = IMAGENET_MEAN
LAB_STD = IMAGENET_STD
