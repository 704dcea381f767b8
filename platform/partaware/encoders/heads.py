"""Projection heads of the contrastive encoders, rebuilt from their checkpoint entries (the ``proj`` tap).

- MoCo v3: ``base_encoder.head``, a 3-layer MLP of bias-free Linears, each followed by BatchNorm1d (the
  last one without affine), ReLU between; BN uses its running statistics (eval mode). Output 256-d.
- DINO / iBOT: ``head.mlp`` (Linear-GELU-Linear-GELU-Linear to the 256-d bottleneck), L2-normalise, then
  ``head.last_layer``, a weight-normalised bias-free Linear (``weight_g``, ``weight_v``). The released DINO
  code's plain Linear cannot load ``weight_g``/``weight_v``; here the layer computes
  ``W = g * v / ||v||`` row-wise, exactly what ``nn.utils.weight_norm`` computed in training.

Widths come from the checkpoint's shapes (so small fabricated heads work); the layer order comes from
the indices in the key names, the gaps being the activation functions the official code puts there.
"""

from __future__ import annotations

import re

import torch
import torch.nn.functional as F
from torch import nn

from partaware.encoders.base import load_strict
from partaware.encoders.convert import CheckpointMismatchError, keep_prefix
from partaware.encoders.specs import EncoderSpec

StateDict = dict[str, torch.Tensor]
_INDEXED = re.compile(r"^(\d+)\.(weight|bias|running_mean|running_var|num_batches_tracked)$")


def mlp_from_state(state: StateDict, activation: type[nn.Module], *, what: str) -> nn.Sequential:
    """An ``nn.Sequential`` whose Linear/BatchNorm1d layers sit at the indices the keys name."""
    by_index: dict[int, set[str]] = {}
    for key in state:
        m = _INDEXED.match(key)
        if not m:
            raise CheckpointMismatchError(f"{what}: unexpected key {key!r} in an MLP")
        by_index.setdefault(int(m.group(1)), set()).add(m.group(2))
    if not by_index:
        raise CheckpointMismatchError(f"{what}: no MLP layers in the checkpoint")
    layers: list[nn.Module] = []
    for i in range(max(by_index) + 1):
        names = by_index.get(i)
        if names is None:
            layers.append(activation())
        elif "running_mean" in names:
            dim = state[f"{i}.running_mean"].shape[0]
            layers.append(nn.BatchNorm1d(dim, affine="weight" in names))
        else:
            out_dim, in_dim = state[f"{i}.weight"].shape
            layers.append(nn.Linear(in_dim, out_dim, bias="bias" in names))
    mlp = nn.Sequential(*layers)
    load_strict(mlp, state, what=what)
    return mlp


class WeightNormLinear(nn.Module):
    """``nn.utils.weight_norm(nn.Linear(in, out, bias=False))`` as a plain module: ``W = g * v / ||v||_row``."""

    def __init__(self, in_dim: int, out_dim: int):
        super().__init__()
        self.weight_g = nn.Parameter(torch.ones(out_dim, 1))
        self.weight_v = nn.Parameter(torch.empty(out_dim, in_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight_g * self.weight_v / self.weight_v.norm(dim=1, keepdim=True)
        return F.linear(x, w)


class DINOHead(nn.Module):
    """DINO/iBOT projection head (CLS branch): MLP, L2-normalise, weight-normalised last layer."""

    def __init__(self, mlp: nn.Sequential, last_layer: WeightNormLinear):
        super().__init__()
        self.mlp = mlp
        self.last_layer = last_layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.last_layer(F.normalize(self.mlp(x), dim=-1, p=2))


def _need(spec: EncoderSpec, state: StateDict | None, where: str) -> StateDict:
    if not state:
        raise CheckpointMismatchError(
            f"encoder {spec.name!r} has a projection tap but its checkpoint has no projection head ({where})"
        )
    return state


def build_mocov3_head(spec: EncoderSpec, state: StateDict | None) -> nn.Module:
    state = _need(spec, state, "module.base_encoder.head.*")
    return mlp_from_state(state, nn.ReLU, what=f"encoder {spec.name!r} projector")


def build_dino_head(spec: EncoderSpec, state: StateDict | None) -> nn.Module:
    state = _need(spec, state, "teacher head.*")
    what = f"encoder {spec.name!r} head"
    rest = {k: v for k, v in state.items() if not k.startswith(("mlp.", "last_layer."))}
    if rest:
        raise CheckpointMismatchError(f"{what}: unexpected keys {sorted(rest)}")
    mlp = mlp_from_state(keep_prefix(state, "mlp."), nn.GELU, what=what)
    last_state = keep_prefix(state, "last_layer.")
    v = last_state.get("weight_v")
    if v is None:
        raise CheckpointMismatchError(f"{what}: missing keys ['last_layer.weight_v']")
    last = WeightNormLinear(v.shape[1], v.shape[0])
    load_strict(last, last_state, what=f"{what} last_layer")
    return DINOHead(mlp, last)
