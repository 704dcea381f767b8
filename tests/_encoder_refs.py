"""Test helpers for the encoder zoo: checkpoints fabricated in each *official* layout (the real
container structure and key names, random values, any width/depth), and an independent reference
forward of the official architectures, written from the papers' code descriptions, never from timm.

The reference reads the official (unconverted) keys: split q/v biases, ``gamma_1``/``gamma_2`` layer
scale, BEiT's shared relative position bias with its own index, fixed sin-cos tables. A converter is right
when the timm model it feeds computes what this reference computes.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

import torch
import torch.nn.functional as F

StateDict = dict[str, torch.Tensor]


@dataclass(frozen=True)
class Dims:
    dim: int = 32
    depth: int = 2
    heads: int = 2
    img: int = 32
    patch: int = 16
    mlp_ratio: int = 4

    @property
    def grid(self) -> int:
        return self.img // self.patch

    @property
    def tokens(self) -> int:
        return self.grid * self.grid

    def arch_kwargs(self) -> dict:
        return {"embed_dim": self.dim, "depth": self.depth, "num_heads": self.heads, "img_size": self.img}


TINY = Dims()
VIT_B = Dims(dim=768, depth=12, heads=12, img=224, patch=16)


def _rand(g: torch.Generator, *shape: int, std: float = 0.05) -> torch.Tensor:
    return torch.randn(*shape, generator=g) * std


def sincos_table(dim: int, grid: int, temperature: float = 10000.0) -> torch.Tensor:
    """MoCo v3 / CAE-style 2-D sin-cos position table with a zero CLS row: 1 x (1 + grid^2) x dim."""
    gw, gh = torch.meshgrid(
        torch.arange(grid, dtype=torch.float32), torch.arange(grid, dtype=torch.float32), indexing="ij"
    )
    omega = 1.0 / temperature ** (torch.arange(dim // 4, dtype=torch.float32) / (dim // 4))
    ow, oh = gw.flatten()[:, None] * omega, gh.flatten()[:, None] * omega
    table = torch.cat([ow.sin(), ow.cos(), oh.sin(), oh.cos()], dim=1)
    return torch.cat([torch.zeros(1, dim), table])[None]


def beit_relative_position_index(grid: int) -> torch.Tensor:
    """BEiT's index into its (2g-1)^2 + 3 bias table: token pairs by offset, plus cls->tok, tok->cls, cls->cls."""
    ys, xs = torch.meshgrid(torch.arange(grid), torch.arange(grid), indexing="ij")
    coords = torch.stack([ys.flatten(), xs.flatten()])
    rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0)
    rel[..., 0] += grid - 1
    rel[..., 1] += grid - 1
    rel[..., 0] *= 2 * grid - 1
    n_rel = (2 * grid - 1) ** 2 + 3
    index = torch.zeros(grid * grid + 1, grid * grid + 1, dtype=torch.long)
    index[1:, 1:] = rel.sum(-1)
    index[0, :] = n_rel - 3
    index[:, 0] = n_rel - 2
    index[0, 0] = n_rel - 1
    return index


def official_vit(
    d: Dims,
    g: torch.Generator,
    *,
    bias: str = "qkv",  # "qkv" (one bias) or "qv" (q and v biases, none for k)
    layer_scale: bool = False,
    pos: str = "learned",  # "learned", "sincos" or "none"
) -> StateDict:
    """A ViT encoder state dict under the official (DeiT/DINO/MoCo/MAE/BEiT/CAE) key names."""
    D, H = d.dim, d.dim * d.mlp_ratio
    s: StateDict = {"cls_token": _rand(g, 1, 1, D, std=0.5)}
    if pos == "learned":
        s["pos_embed"] = _rand(g, 1, d.tokens + 1, D, std=0.5)
    elif pos == "sincos":
        s["pos_embed"] = sincos_table(D, d.grid)
    s["patch_embed.proj.weight"] = _rand(g, D, 3, d.patch, d.patch)
    s["patch_embed.proj.bias"] = _rand(g, D)
    for i in range(d.depth):
        p = f"blocks.{i}."
        s[p + "norm1.weight"], s[p + "norm1.bias"] = 1 + _rand(g, D), _rand(g, D)
        s[p + "attn.qkv.weight"] = _rand(g, 3 * D, D, std=0.2)
        if bias == "qkv":
            s[p + "attn.qkv.bias"] = _rand(g, 3 * D, std=0.3)
        else:
            s[p + "attn.q_bias"], s[p + "attn.v_bias"] = _rand(g, D, std=0.3), _rand(g, D, std=0.3)
        s[p + "attn.proj.weight"], s[p + "attn.proj.bias"] = _rand(g, D, D, std=0.2), _rand(g, D)
        s[p + "norm2.weight"], s[p + "norm2.bias"] = 1 + _rand(g, D), _rand(g, D)
        s[p + "mlp.fc1.weight"], s[p + "mlp.fc1.bias"] = _rand(g, H, D, std=0.2), _rand(g, H)
        s[p + "mlp.fc2.weight"], s[p + "mlp.fc2.bias"] = _rand(g, D, H, std=0.2), _rand(g, D)
        if layer_scale:
            s[p + "gamma_1"], s[p + "gamma_2"] = 0.1 + _rand(g, D), 0.1 + _rand(g, D)
    s["norm.weight"], s["norm.bias"] = 1 + _rand(g, D), _rand(g, D)
    return s


def _prefixed(prefix: str, state: StateDict) -> StateDict:
    return {prefix + k: v for k, v in state.items()}


def moco_projector(g: torch.Generator, d_in: int, hidden: int, out: int) -> StateDict:
    """MoCo v3 ``_build_mlp(3, d_in, hidden, out)``: Linear/BN/ReLU x2, Linear, BN(affine=False); no biases."""
    s: StateDict = {}
    layers = ((0, d_in, hidden, True), (3, hidden, hidden, True), (6, hidden, out, False))
    for idx, i, o, affine in layers:
        s[f"{idx}.weight"] = _rand(g, o, i, std=0.2)
        bn = idx + 1
        if affine:
            s[f"{bn}.weight"], s[f"{bn}.bias"] = 1 + _rand(g, o), _rand(g, o)
        s[f"{bn}.running_mean"], s[f"{bn}.running_var"] = _rand(g, o), 0.5 + torch.rand(o, generator=g)
        s[f"{bn}.num_batches_tracked"] = torch.tensor(1000)
    return s


def dino_head(g: torch.Generator, d_in: int, hidden: int, bottleneck: int, out: int) -> StateDict:
    """DINO/iBOT head: mlp.0/2/4 Linears (GELU between), weight-normalised ``last_layer`` (g, v)."""
    return {
        "mlp.0.weight": _rand(g, hidden, d_in, std=0.2),
        "mlp.0.bias": _rand(g, hidden),
        "mlp.2.weight": _rand(g, hidden, hidden, std=0.2),
        "mlp.2.bias": _rand(g, hidden),
        "mlp.4.weight": _rand(g, bottleneck, hidden, std=0.2),
        "mlp.4.bias": _rand(g, bottleneck),
        "last_layer.weight_g": 0.5 + torch.rand(out, 1, generator=g),
        "last_layer.weight_v": _rand(g, out, bottleneck),
    }


def _args() -> argparse.Namespace:
    return argparse.Namespace(arch="vit_base", patch_size=16, epochs=400)


# --- official checkpoint layouts (container + keys), one per converter ----------------------------


def fab_deit(d: Dims, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    model = official_vit(d, g)
    model["head.weight"], model["head.bias"] = _rand(g, 10, d.dim), _rand(g, 10)
    return {"model": model}


def fab_mocov3(d: Dims, seed: int = 0, *, head_dims: tuple[int, int] = (64, 16)) -> dict:
    g = torch.Generator().manual_seed(seed)
    base = official_vit(d, g, pos="sincos")
    base.update(_prefixed("head.", moco_projector(g, d.dim, *head_dims)))
    momentum = {k: torch.zeros_like(v) for k, v in base.items()}
    predictor = {"0.weight": _rand(g, head_dims[0], head_dims[1]), "1.running_mean": _rand(g, head_dims[0])}
    state = {
        **_prefixed("module.base_encoder.", base),
        **_prefixed("module.momentum_encoder.", momentum),
        **_prefixed("module.predictor.", predictor),
    }
    return {"epoch": 300, "arch": "vit_base", "state_dict": state, "optimizer": {"state": {}, "param_groups": []}}


def fab_dino(d: Dims, seed: int = 0, *, head_dims: tuple[int, int, int] = (48, 16, 64)) -> dict:
    g = torch.Generator().manual_seed(seed)
    teacher = {**_prefixed("backbone.", official_vit(d, g)), **_prefixed("head.", dino_head(g, d.dim, *head_dims))}
    student = {"module." + k: torch.zeros_like(v) for k, v in teacher.items()}
    return {
        "student": student,
        "teacher": teacher,
        "epoch": 400,
        "args": _args(),
        "dino_loss": {"center": torch.zeros(1, head_dims[2])},
    }


def fab_ibot(d: Dims, seed: int = 0, *, head_dims: tuple[int, int, int] = (48, 16, 64)) -> dict:
    g = torch.Generator().manual_seed(seed)
    backbone = official_vit(d, g)
    backbone["masked_embed"] = _rand(g, 1, d.dim)
    head = dino_head(g, d.dim, *head_dims)
    head["last_layer2.weight_g"], head["last_layer2.weight_v"] = (
        head["last_layer.weight_g"],
        head["last_layer.weight_v"],
    )
    return {"teacher": {**_prefixed("backbone.", backbone), **_prefixed("head.", head)}, "epoch": 400}


def fab_ibot_backbone(d: Dims, seed: int = 0) -> dict:
    """iBOT's "backbone (t)" file: ``extract_backbone_weights.py --checkpoint_key teacher`` output."""
    g = torch.Generator().manual_seed(seed)
    return {"state_dict": official_vit(d, g)}


def fab_beit(d: Dims, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    model = official_vit(d, g, bias="qv", layer_scale=True, pos="none")
    model["rel_pos_bias.relative_position_bias_table"] = _rand(g, (2 * d.grid - 1) ** 2 + 3, d.heads, std=1.0)
    model["rel_pos_bias.relative_position_index"] = beit_relative_position_index(d.grid)
    model["mask_token"] = _rand(g, 1, 1, d.dim)
    model["lm_head.weight"], model["lm_head.bias"] = _rand(g, 50, d.dim), _rand(g, 50)
    return {"model": model, "epoch": 799, "args": _args()}


def fab_mae(d: Dims, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {"model": official_vit(d, g, pos="sincos")}


def fab_cae(d: Dims, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    enc = official_vit(d, g, bias="qv", layer_scale=True, pos="sincos")
    teacher = {k: torch.zeros_like(v) for k, v in enc.items()}
    neck = {
        "regressor_blocks.0.norm1_q.weight": torch.ones(d.dim),
        "regressor_blocks.0.cross_attn.q.weight": _rand(g, d.dim, d.dim),
        "decoder_blocks.0.attn.qkv.weight": _rand(g, 3 * d.dim, d.dim),
        "head.weight": _rand(g, 50, d.dim),
    }
    model = {**_prefixed("encoder.", enc), **_prefixed("teacher.", teacher), **_prefixed("pretext_neck.", neck)}
    model["mask_token"] = _rand(g, 1, 1, d.dim)
    return {"model": model, "epoch": 1599, "args": _args()}


FABRICATORS = {
    "deit": fab_deit,
    "mocov3": fab_mocov3,
    "dino_teacher": fab_dino,
    "ibot_teacher": fab_ibot,
    "ibot_backbone": fab_ibot_backbone,
    "beit": fab_beit,
    "mae": fab_mae,
    "cae": fab_cae,
}

#: converter -> (container key, prefix in it) of the backbone, for the reference forward
BACKBONE_OF = {
    "deit": ("model", ""),
    "mocov3": ("state_dict", "module.base_encoder."),
    "dino_teacher": ("teacher", "backbone."),
    "ibot_teacher": ("teacher", "backbone."),
    "ibot_backbone": ("state_dict", ""),
    "beit": ("model", ""),
    "mae": ("model", ""),
    "cae": ("model", "encoder."),
}
HEAD_OF = {
    "mocov3": ("state_dict", "module.base_encoder.head."),
    "dino_teacher": ("teacher", "head."),
    "ibot_teacher": ("teacher", "head."),
}


def sub(checkpoint: dict, where: tuple[str, str]) -> StateDict:
    key, prefix = where
    return {k[len(prefix) :]: v for k, v in checkpoint[key].items() if k.startswith(prefix)}


# --- reference forwards of the official architectures ------------------------------------------


def ref_vit(state: StateDict, x: torch.Tensor, heads: int, *, order: torch.Tensor | None = None):
    """Official ViT forward on official keys. Returns (final normed tokens, [block outputs]).

    ``order`` (B x N) permutes patch tokens before position embeddings (MAE paper-code quirk)."""
    w = state["patch_embed.proj.weight"]
    tokens = F.conv2d(x, w, state["patch_embed.proj.bias"], stride=w.shape[-1]).flatten(2).transpose(1, 2)
    if order is not None:
        tokens = torch.gather(tokens, 1, order[..., None].expand_as(tokens))
    B, N, D = tokens.shape
    cls = state["cls_token"].expand(B, -1, -1)
    if "pos_embed" in state:
        tokens = tokens + state["pos_embed"][:, 1:]
        cls = cls + state["pos_embed"][:, :1]
    h = torch.cat([cls, tokens], dim=1)
    rel_bias = None
    if "rel_pos_bias.relative_position_bias_table" in state:
        table = state["rel_pos_bias.relative_position_bias_table"]
        index = beit_relative_position_index(round(N**0.5))
        rel_bias = table[index.flatten()].view(N + 1, N + 1, -1).permute(2, 0, 1)
    outs = []
    depth = 1 + max(int(k.split(".")[1]) for k in state if k.startswith("blocks."))
    hd = D // heads
    for i in range(depth):
        p = f"blocks.{i}."
        y = F.layer_norm(h, (D,), state[p + "norm1.weight"], state[p + "norm1.bias"], eps=1e-6)
        if p + "attn.q_bias" in state:
            qb, vb = state[p + "attn.q_bias"], state[p + "attn.v_bias"]
            qkv_b = torch.cat([qb, torch.zeros_like(qb), vb])
        else:
            qkv_b = state[p + "attn.qkv.bias"]
        qkv = (y @ state[p + "attn.qkv.weight"].T + qkv_b).view(B, N + 1, 3, heads, hd).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0] * hd**-0.5, qkv[1], qkv[2]
        att = q @ k.transpose(-2, -1)
        if rel_bias is not None:
            att = att + rel_bias[None]
        y = (att.softmax(-1) @ v).transpose(1, 2).reshape(B, N + 1, D)
        y = y @ state[p + "attn.proj.weight"].T + state[p + "attn.proj.bias"]
        h = h + (state[p + "gamma_1"] * y if p + "gamma_1" in state else y)
        y = F.layer_norm(h, (D,), state[p + "norm2.weight"], state[p + "norm2.bias"], eps=1e-6)
        y = F.gelu(y @ state[p + "mlp.fc1.weight"].T + state[p + "mlp.fc1.bias"])
        y = y @ state[p + "mlp.fc2.weight"].T + state[p + "mlp.fc2.bias"]
        h = h + (state[p + "gamma_2"] * y if p + "gamma_2" in state else y)
        outs.append(h)
    final = F.layer_norm(h, (D,), state["norm.weight"], state["norm.bias"], eps=1e-6)
    return final, outs


def ref_moco_projector(s: StateDict, x: torch.Tensor) -> torch.Tensor:
    for idx in (0, 3, 6):
        x = x @ s[f"{idx}.weight"].T
        bn = idx + 1
        x = (x - s[f"{bn}.running_mean"]) / torch.sqrt(s[f"{bn}.running_var"] + 1e-5)
        if f"{bn}.weight" in s:
            x = x * s[f"{bn}.weight"] + s[f"{bn}.bias"]
        if idx < 6:
            x = F.relu(x)
    return x


def ref_dino_head(s: StateDict, x: torch.Tensor) -> torch.Tensor:
    x = F.gelu(x @ s["mlp.0.weight"].T + s["mlp.0.bias"])
    x = F.gelu(x @ s["mlp.2.weight"].T + s["mlp.2.bias"])
    x = x @ s["mlp.4.weight"].T + s["mlp.4.bias"]
    x = x / x.norm(dim=-1, keepdim=True)
    v, g = s["last_layer.weight_v"], s["last_layer.weight_g"]
    return x @ (g * v / v.norm(dim=1, keepdim=True)).T


REF_HEADS = {"mocov3": ref_moco_projector, "dino_teacher": ref_dino_head, "ibot_teacher": ref_dino_head}
