"""Small pure helpers that checkpoint converters are made of: pick the sub-dict by name, keep one
prefix, drop a named list of keys, rename layer scale, fold split q/v biases into timm's ``qkv.bias``.

Every helper states what it drops; none guesses. A converter then hands its result to
``base.load_strict``, which names every missing or unexpected key.
"""

from __future__ import annotations

import fnmatch
from typing import TYPE_CHECKING, Any

from partaware.errors import PartawareError

if TYPE_CHECKING:
    import torch

StateDict = dict[str, "torch.Tensor"]


class CheckpointMismatchError(PartawareError, KeyError):
    """A converted checkpoint does not match the model's keys or shapes (loading is strict)."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


def take(checkpoint: Any, key: str, *, what: str) -> StateDict:
    """``checkpoint[key]`` (the container an official release uses), or an error naming the keys it has."""
    if not isinstance(checkpoint, dict) or key not in checkpoint or not isinstance(checkpoint[key], dict):
        have = sorted(checkpoint)[:20] if isinstance(checkpoint, dict) else type(checkpoint).__name__
        raise CheckpointMismatchError(f"{what}: checkpoint has no {key!r} state dict (top-level keys: {have})")
    return dict(checkpoint[key])


def keep_prefix(state: StateDict, prefix: str) -> StateDict:
    """The entries under ``prefix``, with it stripped; everything else is dropped (say which in the caller)."""
    return {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}


def strip_prefix(state: StateDict, prefix: str) -> StateDict:
    """Remove ``prefix`` where present (e.g. a DistributedDataParallel ``module.``), keep the rest."""
    return {k.removeprefix(prefix): v for k, v in state.items()}


def drop(state: StateDict, patterns: tuple[str, ...]) -> StateDict:
    """Drop keys matching any glob in ``patterns`` (a fixed, documented list per layout)."""
    return {k: v for k, v in state.items() if not any(fnmatch.fnmatchcase(k, p) for p in patterns)}


def split(state: StateDict, prefix: str) -> tuple[StateDict, StateDict]:
    """(entries not under ``prefix``, entries under it with the prefix stripped)."""
    inside = keep_prefix(state, prefix)
    return {k: v for k, v in state.items() if not k.startswith(prefix)}, inside


def qv_bias_to_qkv(state: StateDict) -> StateDict:
    """Fold BEiT-style ``attn.q_bias``/``attn.v_bias`` (k has no bias) into timm's ``attn.qkv.bias``.

    The official attention computes ``x @ W_qkv.T + cat(q_bias, 0, v_bias)``; a timm ``Attention`` with
    ``qkv.bias = cat(q_bias, 0, v_bias)`` computes the same function.
    """
    import torch

    out = dict(state)
    for key in [k for k in state if k.endswith("attn.q_bias")]:
        stem = key[: -len("q_bias")]
        v_key = stem + "v_bias"
        if v_key not in state:
            raise CheckpointMismatchError(f"{key} has no matching {v_key}")
        q, v = out.pop(key), out.pop(v_key)
        out[stem + "qkv.bias"] = torch.cat([q, torch.zeros_like(q), v])
    return out


def layer_scale_to_timm(state: StateDict) -> StateDict:
    """``blocks.i.gamma_1``/``gamma_2`` (BEiT/CAE naming) -> timm ViT's ``blocks.i.ls1.gamma``/``ls2.gamma``."""
    out = {}
    for k, v in state.items():
        if k.endswith(".gamma_1"):
            k = k[: -len("gamma_1")] + "ls1.gamma"
        elif k.endswith(".gamma_2"):
            k = k[: -len("gamma_2")] + "ls2.gamma"
        out[k] = v
    return out
