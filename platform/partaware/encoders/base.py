"""What an encoder is to the rest of the platform: a spec (what to build and load) and a loaded
encoder (a frozen timm model plus an optional projection head) that turns normalised image batches
into named feature *taps*.

Taps (names are stable; they enter the feature key):
- ``cls``: the CLS token after the final norm (the paper's ``cls_token``); for a model without a class
  token (SigLIP) its own pooled output (attention pool), since that is what stands for the image;
- ``mean``: the mean of the patch tokens after the final norm (the paper's ``embedding``);
- ``proj``: the projection head applied to the CLS token (the paper's ``projection``; contrastive
  encoders with a head only);
- ``tokens``: every token (prefix tokens first, then patches) after the final norm, ``B x T x D`` (the
  attentive probe's input, protocol §3.4: all 197 tokens of a ViT-B/16 after the final LayerNorm);
- ``patch:<k>``: the patch-token map of block ``k`` (1-based), no final norm, ``B x D x h x w`` (the
  segmentation protocol's blocks 4/6/8/12).

Families register their specs (and converters) in their own module; ``load_encoder`` builds any of
them. Nothing here imports Ray.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from partaware.encoders.convert import CheckpointMismatchError  # noqa: F401  (re-exported)
from partaware.encoders.specs import (  # noqa: F401  (re-exported: the public names live here too)
    IMAGENET_MEAN,
    IMAGENET_STD,
    EncoderSpec,
    WeightsSource,
    Zoo,
    parse_patch_tap,
)
from partaware.errors import SpecError

PREPROCESS_VERSION = "1"  # bump when crop/resize/normalise code changes: it enters every feature key


@dataclass
class LoadedEncoder:
    """A frozen encoder ready to encode normalised ``B x 3 x H x W`` batches into taps."""

    spec: EncoderSpec
    model: torch.nn.Module  # timm VisionTransformer / Beit, eval mode, no grad
    head: torch.nn.Module | None  # projection head (``proj`` tap), if any
    weights_digest: str  # sha256 of the converted state dict (or "random:<seed>")
    token_transform: Callable[[torch.Tensor], torch.Tensor] | None = None  # a protocol quirk, e.g. MAE shuffle

    @property
    def depth(self) -> int:
        return len(self.model.blocks)

    @property
    def available_taps(self) -> list[str]:
        return self.spec.taps(self.depth)

    def check_taps(self, taps: Sequence[str]) -> None:
        bad = [t for t in taps if t not in self.available_taps]
        if bad:
            raise SpecError(
                f"encoder {self.spec.name!r} has no tap(s) {bad}; available: "
                f"cls, mean, tokens{', proj' if self.spec.has_projection else ''}, patch:1..patch:{self.depth}"
            )

    @torch.inference_mode()
    def encode(self, images: torch.Tensor, taps: Sequence[str]) -> dict[str, torch.Tensor]:
        """Taps for a batch of normalised images (float32 on the model's device)."""
        self.check_taps(taps)
        blocks = sorted({parse_patch_tap(t) for t in taps} - {None})
        needs_final = any(parse_patch_tap(t) is None for t in taps)
        indices = [b - 1 for b in blocks]
        model = self.model
        n_prefix = getattr(model, "num_prefix_tokens", 1)
        if needs_final:
            final, inter = model.forward_intermediates(
                images, indices=indices or [self.depth - 1], norm=False, output_fmt="NCHW"
            )
            inter = inter if indices else []
        else:
            final, inter = (
                None,
                model.forward_intermediates(
                    images, indices=indices, norm=False, output_fmt="NCHW", intermediates_only=True
                ),
            )
        out: dict[str, torch.Tensor] = {}
        for block, fmap in zip(blocks, inter, strict=True):
            out[f"patch:{block}"] = fmap
        if final is not None:
            patches = final[:, n_prefix:]
            if getattr(model, "cls_token", None) is not None:
                cls = final[:, 0]
            else:  # no class token (SigLIP): the model's own pooled output stands in for it
                cls = model.forward_head(final, pre_logits=True)
            if "cls" in taps:
                out["cls"] = cls
            if "tokens" in taps:
                out["tokens"] = final
            if "mean" in taps:
                out["mean"] = patches.mean(dim=1)
            if "proj" in taps:
                out["proj"] = self.head(cls)
        return {t: out[t] for t in taps}


def state_dict_digest(state_dict: dict[str, torch.Tensor]) -> str:
    """sha256 over sorted keys, shapes and bytes: names the weights independently of file layout."""
    h = hashlib.sha256()
    for key in sorted(state_dict):
        t = state_dict[key].detach().cpu().contiguous()
        h.update(f"{key}:{tuple(t.shape)}:{t.dtype}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def load_strict(model: torch.nn.Module, state_dict: dict[str, torch.Tensor], *, what: str) -> None:
    """``load_state_dict(strict=True)`` with an error that names every missing/unexpected/misshapen key."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(expected))
    shapes = sorted(k for k in set(expected) & set(state_dict) if expected[k].shape != state_dict[k].shape)
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"missing keys {missing}")
        if unexpected:
            parts.append(f"unexpected keys {unexpected}")
        if shapes:
            parts.append(
                "shape mismatch "
                + ", ".join(
                    f"{k}: checkpoint {tuple(state_dict[k].shape)} vs model {tuple(expected[k].shape)}" for k in shapes
                )
            )
        raise CheckpointMismatchError(f"{what}: " + "; ".join(parts))
    model.load_state_dict(state_dict, strict=True)
