"""Extraction on a real local Ray: local and s3:// roots, cache hits, bad input (a killed actor and a killed
driver: tests/faults/test_faults_kills.py).

Encoders are real timm ViTs with explicitly random weights at small input sizes (no downloads). The
reference features are computed in this process with PIL + numpy + the same encoder, independently of
the pipeline's crop code. Tolerance: fp32 taps within 1e-4 (abs) + 1e-4 (rel) (batch composition and
thread count change float summation order); fp16 patch maps within fp16 rounding (1e-3 abs + 1e-3 rel).
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from PIL import Image

from _tiny_encoder import TINY
from partaware.datasets import prepare_dataset
from partaware.datasets.store import DatasetBuild
from partaware.encoders.base import EncoderSpec, WeightsSource
from partaware.encoders.loading import load_encoder
from partaware.extract.features import (
    FEATURES,
    ExtractionError,
    list_features,
    read_features,
)
from partaware.extract.pipeline import extract_features
from partaware.storage import StorageRoot

pytestmark = pytest.mark.ray

SYNTH = {"size": 24, "image_size": 64}
TAPS = ["cls", "mean", "patch:4"]


@pytest.fixture(scope="module", autouse=True)
def _register_test_encoders():
    from partaware.encoders.registry import ENCODERS, register_encoder

    if TINY.name not in ENCODERS:
        register_encoder(TINY)


def region_rows(prepared) -> list[dict]:
    """The manifest rows extraction encodes by default (kind ``regions``: a class, not a label map)."""
    return [r for r in prepared.manifest().to_pylist() if r["label_id"] >= 0]


def reference_features(root: StorageRoot, spec: EncoderSpec, taps: list[str], seed: int = 0) -> dict:
    """The paper code's way, in one process: PIL crop (black outside), resize, ToTensor, Normalize, encode."""
    from partaware.datasets.store import open_prepared

    prepared = open_prepared(root, "synthetic")
    rows = region_rows(prepared)
    size = spec.input_size
    batch = []
    for r in rows:
        with root.fs.open(f"{prepared.root.path}/{r['image_uri']}", "rb") as f:
            img = Image.open(f).convert("RGB")
        box = tuple(int(round(v)) for v in r["box"])
        crop = img.crop(box).resize((size, size), Image.Resampling.BICUBIC)
        x = (np.asarray(crop, np.float32) / 255.0 - np.array(spec.mean, np.float32)) / np.array(spec.std, np.float32)
        batch.append(x.transpose(2, 0, 1))
    encoder = load_encoder(spec, device="cpu", seed=seed)
    out = encoder.encode(torch.from_numpy(np.stack(batch)), taps)
    return {"region_ids": [r["region_id"] for r in rows], **{t: v.numpy() for t, v in out.items()}}


def assert_matches_reference(fs, ref):
    assert list(fs.region_ids) == ref["region_ids"]
    for tap in ("cls", "mean"):
        np.testing.assert_allclose(fs.features[tap], ref[tap], rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(fs.features["patch:4"].astype(np.float32), ref["patch:4"], rtol=1e-3, atol=1e-3)


def test_local_extraction_matches_a_single_process_reference_and_then_hits_the_cache(ray_local, store):
    prepared, _ = prepare_dataset(store, "synthetic", options=SYNTH)
    n = len(region_rows(prepared))
    result = extract_features(store, "synthetic", "test/vit_tiny_rand", taps=TAPS, shard_regions=40, batch_size=16)
    assert result.status == "ran" and result.rows == n and result.errors == 0 and result.regions_encoded == n
    assert result.shards_written == result.shards_total > 1 and result.duplicates_dropped == 0
    assert set(result.timings) == {"read", "decode", "encode", "write"} and result.timings["encode"] > 0
    assert sum(w["regions"] for w in result.workers.values()) == n

    fs = read_features(store, result.key)
    assert len(fs) == n and len(set(fs.region_ids)) == n
    assert fs.features["cls"].shape == (n, 192) and fs.features["patch:4"].shape == (n, 192, 4, 4)
    assert fs.info["taps"]["patch:4"] == {"shape": [192, 4, 4], "dtype": "float16"}
    assert_matches_reference(fs, reference_features(store, TINY, TAPS))

    froot = store.sub(FEATURES, result.key)
    mtimes = {name: os.path.getmtime(froot.join(name)) for name in froot.listdir()}
    again = extract_features(store, "synthetic", TINY, taps=list(reversed(TAPS)))
    assert again.status == "cached" and again.key == result.key and again.regions_encoded == 0
    assert {name: os.path.getmtime(froot.join(name)) for name in froot.listdir()} == mtimes
    [info] = list_features(store)
    assert (info.key, info.encoder, info.dataset, info.rows) == (result.key, TINY.name, "synthetic", n)
    assert info.bytes > 0


@pytest.mark.s3
def test_extraction_reads_and_writes_s3_and_gives_the_same_features_as_local(s3_bucket, ray_local, store):
    s3 = StorageRoot.open(f"s3://{s3_bucket}/store")
    prepared, _ = prepare_dataset(s3, "synthetic", options=SYNTH)
    local_prepared, _ = prepare_dataset(store, "synthetic", options=SYNTH)
    assert prepared.version == local_prepared.version  # same content, same version
    creds = {k: os.environ[k] for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION")}
    result = extract_features(s3, "synthetic", TINY, taps=TAPS, shard_regions=64, worker_env=creds)
    assert result.uri.startswith(f"s3://{s3_bucket}/store/features/") and result.rows == len(region_rows(prepared))
    assert s3.is_complete(FEATURES, result.key)
    fs = read_features(s3, result.key)
    assert_matches_reference(fs, reference_features(store, TINY, TAPS))
    again = extract_features(s3, "synthetic", TINY, taps=TAPS, worker_env=creds)
    assert again.status == "cached" and again.regions_encoded == 0


def _broken_dataset(root: StorageRoot) -> None:
    """Two images: a good one (three regions, one fully outside it) and an undecodable one."""
    rng = np.random.default_rng(0)
    img = Image.fromarray(rng.integers(0, 255, (48, 48, 3), dtype=np.uint8))
    import io

    buf = io.BytesIO()
    img.save(buf, format="PNG")
    common = {"width": 48, "height": 48, "split": "train", "level": "object", "label": "x", "label_id": 0}
    rows = [
        {**common, "region_id": "good/whole", "image_id": "good", "image_uri": "images/good.png", "box": None},
        {
            **common,
            "region_id": "good/edge",
            "image_id": "good",
            "image_uri": "images/good.png",
            "box": [40, 40, 60, 60],
        },
        {
            **common,
            "region_id": "good/away",
            "image_id": "good",
            "image_uri": "images/good.png",
            "box": [90, 90, 99, 99],
        },
        {**common, "region_id": "bad/whole", "image_id": "bad", "image_uri": "images/bad.jpg", "box": None},
    ]
    rows = [{**r, "sample_rule": "object-box"} for r in rows]
    with DatasetBuild(root, "broken", {"v": 1}) as build:
        build.add_file("images/good.png", buf.getvalue())
        build.add_file("images/bad.jpg", b"\xff\xd8 this is not really a jpeg")
        build.publish(rows)


def test_bad_regions_go_to_the_errors_table_and_the_rate_threshold_decides(ray_local, store):
    _broken_dataset(store)
    with pytest.raises(ExtractionError, match=r"2 of 4 regions \(50.0%\)"):
        extract_features(store, "broken", TINY, taps=["cls"], max_error_rate=0.25)
    # nothing is published, but the good work is kept: raising the threshold finishes without encoding
    result = extract_features(store, "broken", TINY, taps=["cls"], max_error_rate=0.5)
    assert result.status == "ran" and result.regions_encoded == 0 and (result.rows, result.errors) == (2, 2)
    fs = read_features(store, result.key)
    assert list(fs.region_ids) == ["good/whole", "good/edge"]
    reasons = {e["region_id"]: e["reason"] for e in fs.errors}
    assert set(reasons) == {"good/away", "bad/whole"}
    assert "out-of-bounds" in reasons["good/away"] and "images/good.png" in reasons["good/away"]
    assert "undecodable image" in reasons["bad/whole"] and "images/bad.jpg" in reasons["bad/whole"]


@pytest.mark.ray
def test_a_cache_hit_reads_no_checkpoint_because_the_weights_digest_is_stored_beside_them(
    ray_local, store, tmp_path, monkeypatch
):
    """The feature key needs the weights digest; the first load stores it beside the weights, so a rerun
    finds the complete feature set without reading the checkpoint (and a re-staged file is loaded again)."""
    import timm
    import torch

    import partaware.extract.pipeline as pipeline
    from partaware.datasets import prepare_dataset
    from partaware.encoders.base import EncoderSpec
    from partaware.encoders.digests import known_weights_digest
    from partaware.extract.pipeline import extract_features

    torch.manual_seed(0)
    path = tmp_path / "tiny.pth"
    torch.save(timm.create_model("vit_tiny_patch16_224", img_size=64, num_classes=0).state_dict(), path)
    spec = EncoderSpec(name="test/vit_tiny_file", family="mim", zoo="test", arch="vit_tiny_patch16_224",
                       arch_kwargs={"img_size": 64}, input_size=64,
                       weights=WeightsSource(kind="uri", location=str(path)))  # fmt: skip
    prepare_dataset(store, "synthetic", options={"size": 8, "image_size": 64}, workers=1)
    assert known_weights_digest(spec, store) is None
    first = extract_features(store, "synthetic", spec, taps=["cls"], batch_size=16, max_actors=1, cpus_per_actor=0.5)
    assert first.status == "ran" and known_weights_digest(spec, store) is not None

    def no_loading(*args, **kwargs):
        raise AssertionError("a cache hit must not read the checkpoint")

    monkeypatch.setattr(pipeline, "load_encoder", no_loading)
    again = extract_features(store, "synthetic", spec, taps=["cls"], batch_size=16, max_actors=1, cpus_per_actor=0.5)
    assert again.status == "cached" and again.key == first.key
    torch.save({k: v + 1 for k, v in torch.load(path, weights_only=True).items()}, path)  # new weights, same name
    assert known_weights_digest(spec, store) is None  # another fingerprint: the next extraction loads them
