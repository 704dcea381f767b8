"""Random-initialisation controls: the same architecture, input and preprocessing as an encoder, with
random weights. A job adds one per architecture so every score can be read against what the
architecture gives before any pretraining (a control is labelled as such and never ranked).
"""

from __future__ import annotations

import hashlib
import json

from partaware.encoders.specs import EncoderSpec, WeightsSource

CONTROL_PREFIX = "control/"


def _arch(spec: EncoderSpec) -> str:
    return spec.arch.split(".", 1)[0]  # a timm pretrained tag names weights, not the architecture


def _identity(spec: EncoderSpec) -> dict:
    """What makes two encoders the same architecture for a control (weights excluded)."""
    return {"arch": _arch(spec), "arch_kwargs": spec.arch_kwargs, "input_size": spec.input_size,
            "interpolation": spec.interpolation}  # fmt: skip


def control_name(spec: EncoderSpec) -> str:
    """``control/<arch>-<digest>``: stable for an architecture and input, whatever the weights."""
    digest = hashlib.sha256(json.dumps(_identity(spec), sort_keys=True, default=str).encode()).hexdigest()[:6]
    return f"{CONTROL_PREFIX}{_arch(spec)[:50]}-{digest}"


def control_spec(spec: EncoderSpec) -> EncoderSpec:
    """The control of ``spec``: its architecture with random weights and its own preprocessing."""
    return EncoderSpec(
        name=control_name(spec), family="control", zoo="control", arch=_arch(spec), arch_kwargs=spec.arch_kwargs,
        weights=WeightsSource(kind="random"), input_size=spec.input_size, mean=spec.mean, std=spec.std,
        interpolation=spec.interpolation,
    )  # fmt: skip


def register_controls(encoder_names: list[str]) -> list[str]:
    """Register the controls of ``encoder_names`` (idempotent); returns their names in order."""
    from partaware.encoders.registry import ENCODERS, register_encoder

    names = []
    for name in encoder_names:
        spec = ENCODERS.get(name)
        if spec.weights.kind == "random":
            continue
        control = control_spec(spec)
        if control.name not in ENCODERS:
            register_encoder(control)
        names.append(control.name)
    return list(dict.fromkeys(names))
