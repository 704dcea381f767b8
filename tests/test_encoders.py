"""Converters from each official checkpoint layout: the timm model they feed must compute what an
independent reference forward of the official architecture computes (``_encoder_refs``), every tap
included; a renamed or missing key must fail naming it; ViT-B shapes once per layout for key coverage."""

from __future__ import annotations

import pytest
import torch

from _encoder_refs import (
    BACKBONE_OF,
    FABRICATORS,
    HEAD_OF,
    REF_HEADS,
    TINY,
    VIT_B,
    Dims,
    ref_vit,
    sub,
)
from partaware.encoders.base import CheckpointMismatchError, EncoderSpec
from partaware.encoders.loading import CONVERTERS, build_head, build_model, load_encoder
from partaware.encoders.registry import ENCODERS

PAPER = {
    "deit": "deit_base_p16_in1k",
    "mocov3": "mocov3_base_p16_in1k_300ep",
    "dino_teacher": "dino_base_p16_in1k_teacher",
    "ibot_teacher": "ibot_base_p16_in1k_teacher",
    "beit": "beit_base_p16_in1k_800ep",
    "mae": "mae_base_p16_in1k",
    "cae": "cae_base_p16_in1k_1600ep",
}
TOL = dict(rtol=1e-4, atol=1e-4)


def staged_spec(name: str, checkpoint: dict, tmp_path, d: Dims = TINY) -> EncoderSpec:
    """The registered spec at width ``d``, reading ``checkpoint`` saved as a file (kind ``uri``)."""
    path = tmp_path / f"{name}.pth"
    torch.save(checkpoint, path)
    spec = ENCODERS.get(name)
    return spec.model_copy(
        update={
            "arch_kwargs": {**spec.arch_kwargs, **d.arch_kwargs()},
            "weights": spec.weights.model_copy(update={"kind": "uri", "location": str(path), "sha256": None}),
        }
    )


@pytest.mark.parametrize("converter", sorted(PAPER))
def test_converted_model_matches_official_forward(converter, tmp_path):
    checkpoint = FABRICATORS[converter](TINY, seed=1)
    spec = staged_spec(PAPER[converter], checkpoint, tmp_path)
    enc = load_encoder(spec, root=None)
    taps = spec.taps(TINY.depth)
    images = torch.randn(3, 3, TINY.img, TINY.img, generator=torch.Generator().manual_seed(2))
    got = enc.encode(images, taps)

    final, blocks = ref_vit(sub(checkpoint, BACKBONE_OF[converter]), images, TINY.heads)
    torch.testing.assert_close(got["cls"], final[:, 0], **TOL)
    torch.testing.assert_close(got["mean"], final[:, 1:].mean(1), **TOL)
    for k, block in enumerate(blocks, start=1):
        fmap = block[:, 1:].transpose(1, 2).reshape(3, TINY.dim, TINY.grid, TINY.grid)
        torch.testing.assert_close(got[f"patch:{k}"], fmap, **TOL)
    if converter in HEAD_OF:
        expected = REF_HEADS[converter](sub(checkpoint, HEAD_OF[converter]), final[:, 0])
        torch.testing.assert_close(got["proj"], expected, **TOL)
    else:
        assert "proj" not in taps


def test_mae_shufflebug_shuffles_tokens_before_position_embedding(tmp_path):
    checkpoint = FABRICATORS["mae"](TINY, seed=3)
    spec = staged_spec("mae_base_p16_in1k_shufflebug", checkpoint, tmp_path)
    assert spec.variant == "shufflebug" and spec.zoo != "paper"
    images = torch.randn(4, 3, TINY.img, TINY.img, generator=torch.Generator().manual_seed(4))
    got = load_encoder(spec, seed=7).encode(images, ["cls", "mean"])
    # the same permutations the variant draws: one uniform order per image from a generator seeded 7
    order = torch.rand(4, TINY.tokens, generator=torch.Generator().manual_seed(7)).argsort(dim=1)
    assert not torch.equal(order, torch.arange(TINY.tokens).expand(4, -1))
    state = sub(checkpoint, BACKBONE_OF["mae"])
    final, _ = ref_vit(state, images, TINY.heads, order=order)
    torch.testing.assert_close(got["cls"], final[:, 0], **TOL)
    torch.testing.assert_close(got["mean"], final[:, 1:].mean(1), **TOL)
    correct, _ = ref_vit(state, images, TINY.heads)
    assert not torch.allclose(got["cls"], correct[:, 0], atol=1e-3)  # the quirk changes the features
    again = load_encoder(spec, seed=7).encode(images, ["cls"])["cls"]
    torch.testing.assert_close(again, got["cls"])  # and is reproducible for a seed


def _first_block_key(checkpoint: dict, converter: str) -> tuple[str, str]:
    key, prefix = BACKBONE_OF[converter]
    return key, prefix + "blocks.0.norm1.weight"


@pytest.mark.parametrize("converter", sorted(PAPER))
def test_renamed_key_fails_naming_it(converter):
    checkpoint = FABRICATORS[converter](TINY)
    container, key = _first_block_key(checkpoint, converter)
    state = checkpoint[container]
    state[key.replace("norm1", "norm_one")] = state.pop(key)
    spec = ENCODERS.get(PAPER[converter])
    spec = spec.model_copy(update={"arch_kwargs": {**spec.arch_kwargs, **TINY.arch_kwargs()}})
    backbone, _ = CONVERTERS.get(converter)(checkpoint)
    with pytest.raises(CheckpointMismatchError, match=r"blocks\.0\.norm1\.weight.*blocks\.0\.norm_one\.weight"):
        from partaware.encoders.base import load_strict

        load_strict(build_model(spec), backbone, what=spec.name)


@pytest.mark.parametrize("converter", sorted(PAPER))
def test_missing_key_fails_naming_it(converter, tmp_path):
    checkpoint = FABRICATORS[converter](TINY)
    container, prefix = BACKBONE_OF[converter]
    del checkpoint[container][prefix + "blocks.1.mlp.fc2.bias"]
    spec = staged_spec(PAPER[converter], checkpoint, tmp_path)
    with pytest.raises(CheckpointMismatchError, match=r"missing keys \['blocks\.1\.mlp\.fc2\.bias'\]"):
        load_encoder(spec)


def test_wrong_container_names_what_it_has():
    with pytest.raises(CheckpointMismatchError, match=r"no 'teacher' state dict.*'student'"):
        CONVERTERS.get("dino_teacher")({"student": {}, "epoch": 1})


def test_missing_projection_head_is_an_error(tmp_path):
    checkpoint = FABRICATORS["dino_teacher"](TINY)
    checkpoint["teacher"] = {k: v for k, v in checkpoint["teacher"].items() if not k.startswith("head.")}
    with pytest.raises(CheckpointMismatchError, match="no projection head"):
        load_encoder(staged_spec(PAPER["dino_teacher"], checkpoint, tmp_path))


def test_beit_rejects_a_foreign_relative_position_index():
    checkpoint = FABRICATORS["beit"](TINY)
    index = checkpoint["model"]["rel_pos_bias.relative_position_index"]
    checkpoint["model"]["rel_pos_bias.relative_position_index"] = index.flip(0)
    with pytest.raises(CheckpointMismatchError, match="relative_position_index"):
        CONVERTERS.get("beit")(checkpoint)


def test_ibot_backbone_file_converts_without_a_head(tmp_path):
    checkpoint = FABRICATORS["ibot_backbone"](TINY, seed=4)
    checkpoint["state_dict"]["masked_embed"] = torch.zeros(1, TINY.dim)
    spec = staged_spec(PAPER["ibot_teacher"], checkpoint, tmp_path)
    spec = spec.model_copy(
        update={"has_projection": False, "weights": spec.weights.model_copy(update={"converter": "ibot_backbone"})}
    )
    images = torch.randn(2, 3, TINY.img, TINY.img)
    final, _ = ref_vit(sub(checkpoint, BACKBONE_OF["ibot_backbone"]), images, TINY.heads)
    torch.testing.assert_close(load_encoder(spec).encode(images, ["cls"])["cls"], final[:, 0], **TOL)


@pytest.mark.parametrize("converter", sorted(PAPER))
def test_vit_b_shapes_load_strictly(converter):
    """Key coverage at the real ViT-B/16 shapes (and real head widths): convert, strict-load, no forward."""
    head_dims = {"mocov3": {"head_dims": (4096, 256)}, "dino_teacher": {"head_dims": (2048, 256, 65536)}}
    head_dims["ibot_teacher"] = {"head_dims": (2048, 256, 8192)}
    checkpoint = FABRICATORS[converter](VIT_B, **head_dims.get(converter, {}))
    spec = ENCODERS.get(PAPER[converter])
    backbone, head_state = CONVERTERS.get(converter)(checkpoint)
    del checkpoint
    from partaware.encoders.base import load_strict

    model = build_model(spec)
    load_strict(model, backbone, what=spec.name)
    assert sum(p.numel() for p in model.parameters()) > 85_000_000
    head = build_head(spec, head_state)
    if spec.has_projection:
        out = head(torch.randn(2, 768))
        assert out.shape[1] == {"mocov3": 256, "dino_teacher": 65536, "ibot_teacher": 8192}[converter]
