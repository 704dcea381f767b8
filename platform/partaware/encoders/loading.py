"""Build an encoder from its spec: timm architecture, weights resolved and converted, strict load.

Converters are pure ``state_dict -> (backbone_state_dict, head_state_dict | None)`` functions
registered in ``CONVERTERS`` by the module of their family; a spec names its converter (no sniffing).
Checkpoints are read with ``torch.load(..., weights_only=True)`` only.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

import torch

from partaware.encoders.base import EncoderSpec, LoadedEncoder, load_strict, state_dict_digest
from partaware.encoders.registry import ENCODERS, _load_builtin_encoders
from partaware.errors import SpecError, StorageError
from partaware.registry import Registry
from partaware.storage import StorageRoot, filesystem_for

StateDict = dict[str, torch.Tensor]
Converter = Callable[[dict[str, Any]], tuple[StateDict, StateDict | None]]
#: converter name -> function(checkpoint object) -> (backbone state dict, projection-head state dict or None)
CONVERTERS: Registry[Converter] = Registry("checkpoint converter")


def _identity(checkpoint: dict[str, Any]) -> tuple[StateDict, StateDict | None]:
    """A timm state dict as is; a ``{"model": ..., "head": ...}`` container is unwrapped."""
    if "model" in checkpoint and isinstance(checkpoint["model"], dict):
        return checkpoint["model"], checkpoint.get("head")
    return checkpoint, None


CONVERTERS.register("identity", _identity)


def read_checkpoint(uri: str) -> dict[str, Any]:
    """A checkpoint from any fsspec URI, loaded with ``weights_only=True`` (never arbitrary pickles)."""
    fs, path = filesystem_for(uri)
    try:
        data = fs.cat_file(path)
    except FileNotFoundError as e:
        raise StorageError(f"checkpoint {uri} does not exist") from e
    return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)


def build_model(spec: EncoderSpec) -> torch.nn.Module:
    import timm

    return timm.create_model(spec.arch, pretrained=False, num_classes=0, **spec.arch_kwargs)


def build_head(spec: EncoderSpec, head_state: StateDict | None) -> torch.nn.Module | None:
    """The projection head, from a registered builder named ``<converter>:head`` (families provide it)."""
    if not spec.has_projection:
        return None
    builder = HEAD_BUILDERS.get(spec.weights.converter)
    head = builder(spec, head_state)
    return head.eval()


HEAD_BUILDERS: Registry[Callable[[EncoderSpec, StateDict | None], torch.nn.Module]] = Registry("projection head")

#: weights kind -> resolver(spec, root) returning a checkpoint object. Families/zoo add ``url``/``timm``.
WEIGHT_RESOLVERS: dict[str, Callable[[EncoderSpec, StorageRoot | None], dict[str, Any]]] = {
    "uri": lambda spec, root: read_checkpoint(spec.weights.location),
}


def load_encoder(
    name_or_spec: str | EncoderSpec,
    *,
    root: StorageRoot | None = None,
    device: str | torch.device = "cpu",
    seed: int = 0,
) -> LoadedEncoder:
    """Build, load (strictly) and freeze an encoder. Random weights only when the spec says so."""
    if isinstance(name_or_spec, EncoderSpec):
        spec = name_or_spec
    else:
        _load_builtin_encoders()
        spec = ENCODERS.get(name_or_spec)
    model = build_model(spec)
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
        load_strict(model, backbone, what=f"encoder {spec.name!r} backbone")
        digest = state_dict_digest(backbone)
    head = build_head(spec, head_state)
    model.eval().requires_grad_(False).to(device)
    if head is not None:
        head.requires_grad_(False).to(device)
    return LoadedEncoder(spec=spec, model=model, head=head, weights_digest=digest)
