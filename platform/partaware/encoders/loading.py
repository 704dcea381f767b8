"""Build an encoder from its spec: timm architecture, weights resolved and converted, strict load.

Converters are pure ``checkpoint -> (backbone_state_dict, head_state_dict | None)`` functions
registered in ``CONVERTERS`` by the module of their family; a spec names its converter (no sniffing).
Weights come from ``WEIGHT_RESOLVERS[spec.weights.kind]`` (``weights.py``: official URL, timm tag, any
fsspec URI; the lab adds ``lab``). Checkpoints are read with ``torch.load(..., weights_only=True)`` or
safetensors only. Protocol variants (``spec.variant``) install their quirk through ``VARIANTS``. All of
these registries live in ``registry.py`` and fill themselves on first use.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from partaware.encoders.base import EncoderSpec, LoadedEncoder, load_strict, state_dict_digest
from partaware.encoders.registry import (  # noqa: F401  (_identity, the resolvers and variants re-exported)
    CONVERTERS,
    ENCODERS,
    HEAD_BUILDERS,
    TIMM_ARCHS,
    VARIANTS,
    WEIGHT_RESOLVERS,
    _identity,
)
from partaware.encoders.weights import read_checkpoint
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
    """The timm model of ``spec``; a project architecture (``TIMM_ARCHS``: the lab's ``partaware_lab_vit``)
    is registered in timm first by importing its module (a Ray worker that only unpickled a spec has not)."""
    import timm

    if spec.arch in TIMM_ARCHS:
        TIMM_ARCHS.get(spec.arch)
    return timm.create_model(spec.arch, pretrained=False, num_classes=0, **spec.arch_kwargs)


def build_head(spec: EncoderSpec, head_state: StateDict | None) -> torch.nn.Module | None:
    """The projection head, from the builder registered under the spec's converter name."""
    if not spec.has_projection:
        return None
    builder = HEAD_BUILDERS.get(spec.weights.converter)
    head = builder(spec, head_state)
    return head.eval()


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


def load_encoder(
    name_or_spec: str | EncoderSpec,
    *,
    root: StorageRoot | None = None,
    device: str | torch.device = "cpu",
    seed: int = 0,
) -> LoadedEncoder:
    """Build, load (strictly) and freeze an encoder. Random weights only when the spec says so.

    The registries it reads (resolvers, converters, heads, variants) fill themselves on first use, also
    in a Ray worker that was handed a spec and has imported none of the family modules."""
    spec = name_or_spec if isinstance(name_or_spec, EncoderSpec) else ENCODERS.get(name_or_spec)
    if spec.variant and spec.variant not in VARIANTS:
        raise SpecError(f"encoder {spec.name!r}: unknown variant {spec.variant!r}; valid: {VARIANTS.names()}")
    head_state = None
    if spec.weights.kind == "random":
        torch.manual_seed(seed)
        model = build_model(spec)
        digest = f"random:{seed}"
    else:
        if spec.weights.kind not in WEIGHT_RESOLVERS:
            raise SpecError(f"encoder {spec.name!r}: weights kind {spec.weights.kind!r} has no resolver installed")
        checkpoint = WEIGHT_RESOLVERS.get(spec.weights.kind)(spec, root)
        backbone, head_state = CONVERTERS.get(spec.weights.converter)(checkpoint)
        model = build_model(spec)
        load_strict(model, backbone, what=f"encoder {spec.name!r} backbone")
        digest = state_dict_digest(backbone)
    head = build_head(spec, head_state)
    token_transform = VARIANTS.get(spec.variant)(model, seed) if spec.variant else None
    model.eval().requires_grad_(False).to(device)
    if head is not None:
        head.requires_grad_(False).to(device)
    return LoadedEncoder(spec=spec, model=model, head=head, weights_digest=digest, token_transform=token_transform)
