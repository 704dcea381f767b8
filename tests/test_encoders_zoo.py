"""Every registered encoder loads (tiny width, weights staged in the storage root's weight cache as its
layout requires) and encodes every tap; selection grammar; modern timm encoders; custom encoders from
Python and from a job spec; ``partctl encoders list``."""

from __future__ import annotations

import io
import re

import pytest
import torch

from _encoder_refs import FABRICATORS, TINY
from partaware.encoders.base import EncoderSpec, WeightsSource
from partaware.encoders.loading import load_encoder
from partaware.encoders.registry import (
    ENCODERS,
    register_encoder,
    select_encoders,
)
from partaware.encoders.weights import WeightsUnavailableError, cache_relpath
from partaware.errors import SpecError, UnknownNameError

#: ``lab`` encoders get their weights from the lab's own runs, ``lab-release`` ones from the package:
#: both are tested with the lab
TESTED_HERE = [n for n in ENCODERS.names() if ENCODERS.get(n).weights.kind not in ("lab", "lab-release")]
PAPER_SEVEN = {
    "deit_base_p16_in1k",
    "mocov3_base_p16_in1k_300ep",
    "dino_base_p16_in1k_teacher",
    "beit_base_p16_in1k_800ep",
    "mae_base_p16_in1k",
    "cae_base_p16_in1k_1600ep",
    "ibot_base_p16_in1k_teacher",
}


def _patch(spec: EncoderSpec) -> int:
    m = re.search(r"patch(\d+)", spec.arch)
    return int(m.group(1)) if m else 16


def tiny(spec: EncoderSpec) -> EncoderSpec:
    """The spec at test width (same name, so it resolves the same weight-cache path)."""
    kwargs = {**spec.arch_kwargs, **TINY.arch_kwargs(), "img_size": 2 * _patch(spec)}
    weights = spec.weights.model_copy(update={"sha256": None})
    return spec.model_copy(update={"arch_kwargs": kwargs, "weights": weights})


def stage_timm(spec: EncoderSpec, store, seed: int = 0) -> torch.nn.Module:
    """A tiny random model of the tag's architecture (classifier included), staged as the hub file."""
    import timm
    from safetensors.torch import save

    cfg = timm.models.get_pretrained_cfg(spec.weights.location)
    torch.manual_seed(seed)
    source = timm.create_model(spec.weights.location, num_classes=cfg.num_classes, **spec.arch_kwargs).eval()
    state = {k: v.contiguous() for k, v in source.state_dict().items()}
    store.write_bytes(save(state), *cache_relpath(spec))
    return source


def stage(spec: EncoderSpec, store) -> None:
    if spec.weights.kind == "timm":
        stage_timm(spec, store)
    elif spec.weights.kind in ("url", "uri"):
        fabricate = FABRICATORS.get(spec.weights.converter)
        assert fabricate is not None, f"no official-layout fabricator for converter {spec.weights.converter!r}"
        buf = io.BytesIO()
        torch.save(fabricate(TINY), buf)
        store.write_bytes(buf.getvalue(), *cache_relpath(spec))


@pytest.mark.parametrize("name", TESTED_HERE)
def test_every_registered_encoder_loads_and_encodes(name, store, monkeypatch):
    monkeypatch.setenv("PARTAWARE_OFFLINE", "1")  # staged weights only: nothing may be fetched
    spec = tiny(ENCODERS.get(name))
    stage(spec, store)
    enc = load_encoder(spec, root=store)
    taps = enc.available_taps
    size = spec.arch_kwargs["img_size"]
    out = enc.encode(torch.randn(2, 3, size, size), taps)
    assert list(out) == taps
    for tap, value in out.items():
        assert value.shape[0] == 2 and torch.isfinite(value).all(), tap
        if tap.startswith("patch:"):
            assert value.shape[1:] == (TINY.dim, 2, 2)
    assert out["cls"].shape == out["mean"].shape == (2, TINY.dim)
    assert ("proj" in taps) == spec.has_projection
    assert enc.weights_digest and not enc.weights_digest.startswith("random")


def test_all_means_the_papers_seven():
    assert set(select_encoders(["all"])) == PAPER_SEVEN
    for name in PAPER_SEVEN:
        spec = ENCODERS.get(name)
        assert spec.arch.startswith(("vit_base_patch16_224", "beit_base_patch16_224")) and spec.input_size == 224
    assert set(select_encoders(["family:mim"])) == {
        "beit_base_p16_in1k_800ep",
        "mae_base_p16_in1k",
        "cae_base_p16_in1k_1600ep",
    }
    assert select_encoders(["family:contrastive+mim"]) == ["ibot_base_p16_in1k_teacher"]
    assert select_encoders(["dino", "mae_shufflebug", "dinov2"]) == [
        "dino_base_p16_in1k_teacher",
        "mae_base_p16_in1k_shufflebug",
        "dinov2_base_p14_lvd142m",
    ]
    assert len(select_encoders(["all"], zoo="modern")) == 6
    with pytest.raises(UnknownNameError, match=r"unknown encoder 'dinno'.*Did you mean 'dino'"):
        select_encoders(["dinno"])


def test_modern_preprocessing_matches_timm_pretrained_cfg():
    import timm

    for name in select_encoders(["all"], zoo="modern"):
        spec = ENCODERS.get(name)
        cfg = timm.models.get_pretrained_cfg(spec.weights.location)
        assert (spec.mean, spec.std, spec.interpolation) == (tuple(cfg.mean), tuple(cfg.std), cfg.interpolation), name
        assert cfg.hf_hub_id == f"timm/{spec.weights.location}"  # what `encoders list` checks in the hub cache
        assert spec.model_dump()["mean"] is None  # read from timm, never copied into the row


def test_paper_encoders_keep_imagenet_normalisation_and_null_needs_timm_weights():
    from partaware.encoders.specs import IMAGENET_MEAN, IMAGENET_STD

    for name in PAPER_SEVEN:
        assert (ENCODERS.get(name).mean, ENCODERS.get(name).std) == (IMAGENET_MEAN, IMAGENET_STD)
    with pytest.raises(ValueError, match="only for weights.kind 'timm'"):
        _custom("null_norm", "x.pth", mean=None)


def test_encoder_registries_fill_themselves_and_check_types():
    from partaware.encoders.loading import VARIANTS, WEIGHT_RESOLVERS  # the public names of the old dicts

    assert set(WEIGHT_RESOLVERS.names()) == {"lab", "lab-release", "timm", "uri", "url"}
    assert VARIANTS.names() == ["shufflebug"]
    assert callable(WEIGHT_RESOLVERS["lab"]) and callable(VARIANTS["shufflebug"])
    with pytest.raises(TypeError, match=r"encoder 'not_a_spec' must be a EncoderSpec, got dict"):
        ENCODERS.register("not_a_spec", {"name": "not_a_spec"})


@pytest.mark.parametrize("name", select_encoders(["all"], zoo="modern"))
def test_timm_encoder_computes_what_the_staged_model_computes(name, store, monkeypatch):
    monkeypatch.setenv("PARTAWARE_OFFLINE", "1")
    spec = tiny(ENCODERS.get(name))
    source = stage_timm(spec, store, seed=5)
    enc = load_encoder(spec, root=store)
    size = spec.arch_kwargs["img_size"]
    images = torch.randn(2, 3, size, size)
    with torch.no_grad():
        feats = source.forward_features(images)
        expected = feats[:, 0] if source.cls_token is not None else source.forward_head(feats, pre_logits=True)
        patches = feats[:, source.num_prefix_tokens :].mean(1)
    got = enc.encode(images, ["cls", "mean"])
    torch.testing.assert_close(got["cls"], expected)
    torch.testing.assert_close(got["mean"], patches)


def test_timm_offline_with_nothing_staged_names_the_file_and_place(store):
    spec = tiny(ENCODERS.get("clip"))
    with pytest.raises(WeightsUnavailableError) as e:
        load_encoder(spec, root=store)
    msg = str(e.value)
    assert "model.safetensors" in msg and store.uri_of("weights", spec.name, "model.safetensors") in msg
    assert "huggingface.co/timm/vit_base_patch16_clip_224.openai" in msg


def _custom(name: str, location: str, **update) -> EncoderSpec:
    return EncoderSpec(
        name=name,
        family="supervised",
        arch="vit_tiny_patch16_224",
        arch_kwargs={"img_size": 32, "depth": 2},
        weights=WeightsSource(kind="uri", location=location),
        **update,
    )


def test_custom_encoder_from_python(tmp_path):
    import timm

    path = tmp_path / "mine.pth"
    torch.save(
        {"model": timm.create_model("vit_tiny_patch16_224", num_classes=0, img_size=32, depth=2).state_dict()}, path
    )
    register_encoder(_custom("py_custom_vit", str(path)), aliases=["pycv"])
    assert select_encoders(["pycv"]) == ["py_custom_vit"]
    assert "py_custom_vit" in select_encoders(["all"], zoo="custom")
    out = load_encoder("pycv").encode(torch.randn(1, 3, 32, 32), ["cls", "patch:2"])
    assert out["cls"].shape == (1, 192) and out["patch:2"].shape == (1, 192, 2, 2)
    register_encoder(_custom("py_custom_vit", str(path)))  # the same spec again: fine
    with pytest.raises(SpecError, match="already registered with a different spec"):
        register_encoder(_custom("py_custom_vit", str(path), description="other"))


def test_custom_encoder_from_a_job_spec(tmp_path):
    from partaware.spec import parse_spec

    custom = _custom("job_custom_vit", str(tmp_path / "w.pth")).model_dump(mode="json")
    data = {
        "name": "j",
        "datasets": [{"name": "synthetic"}],
        "custom_encoders": [custom],
        "encoders": ["job_custom_vit", "dino"],
    }
    job = parse_spec(data)
    assert job.resolved_encoders() == ["job_custom_vit", "dino_base_p16_in1k_teacher"]
    assert parse_spec(data).custom_encoders[0].name == "job_custom_vit"  # validating twice is fine
    bad = {**custom, "name": "job_custom_bad", "weights": {**custom["weights"], "converter": "nope"}}
    with pytest.raises(
        SpecError, match=r"custom_encoders: .*unknown checkpoint converter 'nope'.*Valid: .*dino_teacher"
    ):
        parse_spec({**data, "custom_encoders": [bad], "encoders": ["dino"]})
    headless = {**custom, "name": "job_custom_headless", "has_projection": True}
    with pytest.raises(SpecError, match=r"has_projection needs a converter with a projection head \(dino_teacher"):
        parse_spec({**data, "custom_encoders": [headless], "encoders": ["dino"]})
    paper = {**custom, "name": "job_custom_paper", "zoo": "paper"}
    with pytest.raises(SpecError, match="zoo 'paper' is reserved"):
        parse_spec({**data, "custom_encoders": [paper], "encoders": ["all"]})
    assert set(select_encoders(["all"])) == PAPER_SEVEN
    with pytest.raises(SpecError, match="encoders: unknown encoder 'job_custom_missing'"):
        parse_spec({**data, "encoders": ["job_custom_missing"]})


def test_partctl_encoders_list(store):
    from typer.testing import CliRunner

    from partaware.cli import app

    stage(tiny(ENCODERS.get("mae")), store)
    result = CliRunner().invoke(app, ["encoders", "list", "--storage", store.uri], env={"COLUMNS": "400"})
    assert result.exit_code == 0, result.output
    rows = {line.split("│")[1].strip(): line for line in result.output.splitlines() if line.count("│") > 5}
    for name in PAPER_SEVEN | set(select_encoders(["all"], zoo="modern")):
        assert name in rows, name
    assert "mim" in rows["mae_base_p16_in1k"] and "cached" in rows["mae_base_p16_in1k"]
    assert "cached" in rows["mae_base_p16_in1k_shufflebug"]  # the variant shares the base's file
    assert "cached" not in rows["deit_base_p16_in1k"] and "supervised" in rows["deit_base_p16_in1k"]
    assert "stage by hand" in rows["beit_base_p16_in1k_800ep"]
    assert "vit_base_patch14_dinov2.lvd142m" in rows["dinov2_base_p14_lvd142m"]
    bad = CliRunner().invoke(app, ["encoders", "list", "--zoo", "zoo9"])
    assert bad.exit_code != 0 and "valid: paper" in str(bad.exception)


def test_timm_file_at_another_resolution_is_resampled_by_timms_filter(store, monkeypatch):
    """DINOv2 ships at 518 px and runs here at 224: timm's filter resamples ``pos_embed`` to the grid."""
    monkeypatch.setenv("PARTAWARE_OFFLINE", "1")
    spec = tiny(ENCODERS.get("dinov2"))  # runs at 2x2 patches
    stage_timm(spec.model_copy(update={"arch_kwargs": {**spec.arch_kwargs, "img_size": 56}}), store)  # 4x4
    enc = load_encoder(spec, root=store)
    assert enc.model.pos_embed.shape[1] == 1 + 4
    assert enc.encode(torch.randn(1, 3, 28, 28), ["patch:2"])["patch:2"].shape == (1, TINY.dim, 2, 2)
