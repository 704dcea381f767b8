"""Build an encoder from its spec: timm architecture, weights resolved and converted, strict load.

Converters are pure ``checkpoint -> (backbone_state_dict, head_state_dict | None)`` functions
registered in ``CONVERTERS`` by the module of their family; a spec names its converter (no sniffing).
Weights come from ``WEIGHT_RESOLVERS[spec.weights.kind]`` (``weights.py``: official URL, timm tag, any
fsspec URI). Checkpoints are read with ``torch.load(..., weights_only=True)`` or safetensors only.
Protocol variants (``spec.variant``) install their quirk through ``VARIANTS``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from partaware.encoders.base import EncoderSpec, LoadedEncoder, load_strict, state_dict_digest
from partaware.encoders.registry import (  # noqa: F401  (_identity re-exported)
    CONVERTERS,
    ENCODERS,
    HEAD_BUILDERS,
    _identity,
    _load_builtin_encoders,
)
from partaware.encoders.weights import read_checkpoint, resolve_timm, resolve_uri, resolve_url
from partaware.errors import SpecError
from partaware.storage import StorageRoot

__all__ = [
    "CONVERTERS",
    "HEAD_BUILDERS",
    "VARIANTS",
    "WEIGHT_RESOLVERS",
    "build_head",
    "build_model",
    "load_encoder",
    "read_checkpoint",
]

StateDict = dict[str, torch.Tensor]


def build_model(spec: EncoderSpec) -> torch.nn.Module:
    """The timm model of ``spec`` (project architectures such as ``partaware_lab_vit`` are registered in
    timm by the built-in encoder modules that ``load_encoder`` imports first)."""
    import timm

    return timm.create_model(spec.arch, pretrained=False, num_classes=0, **spec.arch_kwargs)


def build_head(spec: EncoderSpec, head_state: StateDict | None) -> torch.nn.Module | None:
    """The projection head, from the builder registered under the spec's converter name."""
    if not spec.has_projection:
        return None
    builder = HEAD_BUILDERS.get(spec.weights.converter)
    head = builder(spec, head_state)
    return head.eval()


#: weights kind -> resolver(spec, root) returning a checkpoint object. ``lab`` is added by the lab.
WEIGHT_RESOLVERS: dict[str, Callable[[EncoderSpec, StorageRoot | None], dict[str, Any]]] = {
    "uri": resolve_uri,
    "url": resolve_url,
    "timm": resolve_timm,
}


def install_patch_shuffle(model: torch.nn.Module, seed: int) -> Callable[[torch.Tensor], torch.Tensor]:
    """MAE's paper-code quirk (protocol §7.2): permute the patch tokens right after the patch embedding,
    i.e. *before* position embeddings are added, with an independent random order per image (as
    ``random_masking(x, 0.0)`` does). Seeded, so a rerun with the same batches gives the same features."""
    generator = torch.Generator().manual_seed(seed)

    def shuffle(tokens: torch.Tensor) -> torch.Tensor:
        b, n = tokens.shape[:2]
        order = torch.rand(b, n, generator=generator).argsort(dim=1).to(tokens.device)
        return torch.gather(tokens, 1, order[..., None].expand_as(tokens))

    model.patch_embed.register_forward_hook(lambda _module, _inputs, output: shuffle(output))
    return shuffle


#: spec.variant -> installer(model, seed) returning the token transform it applies.
VARIANTS: dict[str, Callable[[torch.nn.Module, int], Callable[[torch.Tensor], torch.Tensor]]] = {
    "shufflebug": install_patch_shuffle,
}


def load_encoder(
    name_or_spec: str | EncoderSpec,
    *,
    root: StorageRoot | None = None,
    device: str | torch.device = "cpu",
    seed: int = 0,
) -> LoadedEncoder:
    """Build, load (strictly) and freeze an encoder. Random weights only when the spec says so."""
    # Always: family modules install their converters and weight resolvers (lab, url, timm) on import,
    # and a Ray worker handed a spec (not a name) has imported none of them yet.
    _load_builtin_encoders()
    spec = name_or_spec if isinstance(name_or_spec, EncoderSpec) else ENCODERS.get(name_or_spec)
    if spec.variant and spec.variant not in VARIANTS:
        raise SpecError(f"encoder {spec.name!r}: unknown variant {spec.variant!r}; valid: {sorted(VARIANTS)}")
    head_state = None
    if spec.weights.kind == "random":
        torch.manual_seed(seed)
        model = build_model(spec)
        digest = f"random:{seed}"
    else:
        resolver = WEIGHT_RESOLVERS.get(spec.weights.kind)
        if resolver is None:
            raise SpecError(f"encoder {spec.name!r}: weights kind {spec.weights.kind!r} has no resolver installed")
        checkpoint = resolver(spec, root)
        backbone, head_state = CONVERTERS.get(spec.weights.converter)(checkpoint)
        model = build_model(spec)
        load_strict(model, backbone, what=f"encoder {spec.name!r} backbone")
        digest = state_dict_digest(backbone)
    head = build_head(spec, head_state)
    token_transform = VARIANTS[spec.variant](model, seed) if spec.variant else None
    model.eval().requires_grad_(False).to(device)
    if head is not None:
        head.requires_grad_(False).to(device)
    return LoadedEncoder(spec=spec, model=model, head=head, weights_digest=digest, token_transform=token_transform)
