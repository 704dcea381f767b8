"""Extraction's pure parts: crops (black fill, bad input), feature keys, shard files, the worker."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from _tiny_encoder import TINY
from partaware.errors import StorageError
from partaware.extract.crops import RegionError, crop_regions, normalise, pixel_box
from partaware.extract.features import (
    feature_key,
    list_features,
    read_features,
    shard_table,
    tap_dtype,
    write_table,
)
from partaware.extract.pipeline import RunStats, ShardWriter, plan_shards
from partaware.extract.worker import FeatureExtractor


def _png(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def test_crop_outside_the_image_is_black_and_keeps_the_keypoint_centred():
    image = np.full((20, 30, 3), 200, dtype=np.uint8)
    # a 10x10 square centred on (2, 2): 7x7 of it is outside the image (x<0 or y<0) -> black
    crops = crop_regions(_png(image), [[-3, -3, 7, 7]], size=10, interpolation="bilinear")
    assert crops.errors == [""]
    crop = crops.pixels[0]
    assert crop.shape == (10, 10, 3)
    assert (crop[:3, :, :] == 0).all() and (crop[:, :3, :] == 0).all()
    assert (crop[3:, 3:, :] == 200).all()


def test_crop_rounds_the_box_like_pil_and_resizes_with_the_encoders_interpolation():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (40, 50, 3), dtype=np.uint8)
    box = [4.4, 5.6, 30.2, 33.5]
    expected = Image.fromarray(image).crop((4, 6, 30, 34)).resize((16, 16), Image.Resampling.BICUBIC)
    crops = crop_regions(_png(image), [box, None], size=16, interpolation="bicubic")
    assert np.array_equal(crops.pixels[0], np.asarray(expected))
    whole = Image.fromarray(image).resize((16, 16), Image.Resampling.BICUBIC)
    assert np.array_equal(crops.pixels[1], np.asarray(whole))  # None = the whole image


@pytest.mark.parametrize(
    "box, reason",
    [
        ([100, 100, 120, 120], "outside"),
        ([-20, 0, -5, 10], "outside"),
        ([5, 5, 5, 9], "empty"),
        ([float("nan"), 0, 4, 4], "finite"),
    ],
)
def test_out_of_bounds_regions_fail_alone(box, reason):
    image = np.zeros((20, 30, 3), dtype=np.uint8)
    crops = crop_regions(_png(image), [[0, 0, 10, 10], box], size=8)
    assert crops.errors[0] == ""
    assert "out-of-bounds" in crops.errors[1] and reason in crops.errors[1]
    with pytest.raises(RegionError):
        pixel_box(box, 30, 20)


def test_undecodable_image_fails_every_region_with_the_decoders_reason():
    crops = crop_regions(b"not an image at all", [[0, 0, 4, 4], None], size=8)
    assert all(e.startswith("undecodable image") for e in crops.errors)
    assert not crops.pixels.any()


def test_normalise_matches_totensor_then_normalize():
    rng = np.random.default_rng(1)
    pixels = rng.integers(0, 255, (2, 8, 8, 3), dtype=np.uint8)
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    out = normalise(torch.from_numpy(pixels), mean, std)
    ref = (pixels.astype(np.float32) / 255.0 - np.array(mean, np.float32)) / np.array(std, np.float32)
    np.testing.assert_allclose(out.numpy(), ref.transpose(0, 3, 1, 2), rtol=0, atol=1e-6)


KEY_ARGS = dict(
    dataset="synthetic",
    dataset_version="abc",
    encoder="e",
    weights_digest="w",
    input_size=224,
    mean=(0.5, 0.5, 0.5),
    std=(0.5, 0.5, 0.5),
    interpolation="bicubic",
    preprocess_version="1",
    precision="fp32",
    taps=["cls", "mean"],
)


@pytest.mark.parametrize(
    "change",
    [
        {"dataset_version": "abd"},
        {"encoder": "f"},
        {"weights_digest": "x"},
        {"input_size": 64},
        {"mean": (0.4, 0.5, 0.5)},
        {"interpolation": "bilinear"},
        {"preprocess_version": "2"},
        {"precision": "bf16"},
        {"taps": ["cls"]},
    ],
)
def test_feature_key_changes_with_everything_that_changes_the_bytes(change):
    assert feature_key(**KEY_ARGS) != feature_key(**{**KEY_ARGS, **change})


def test_feature_key_ignores_tap_order_and_is_stable():
    assert feature_key(**KEY_ARGS) == feature_key(**{**KEY_ARGS, "taps": ["mean", "cls", "mean"]})
    assert len(feature_key(**KEY_ARGS)) == 20


def test_plan_keeps_images_whole_and_is_deterministic():
    rows = [
        {"region_id": f"{i}/{j}", "image_uri": f"images/{i}.jpg", "box": [0, 0, 1, 1]}
        for i in range(10)
        for j in range(3)
    ]
    shards = plan_shards(rows, 7)
    assert shards == plan_shards(rows, 7)
    assert [sum(len(j.rows) for j in s) for s in shards] == [9, 9, 9, 3]  # whole images, >= 7 per shard
    assert sorted(r for s in shards for j in s for r in j.rows) == list(range(30))


def test_writer_writes_each_shard_once_and_drops_duplicates(store):
    froot = store.sub("features", "k")
    stats = RunStats()
    writer = ShardWriter(froot, {0: 2, 1: 1}, ["cls"], stats)

    def batch(rows, ids, shard, errors):
        n = len(rows)
        return {
            "row": np.array(rows),
            "region_id": np.array(ids, dtype=object),
            "shard": np.full(n, shard),
            "error": np.array(errors, dtype=object),
            "cls": np.arange(n * 4, dtype=np.float32).reshape(n, 4),
            "t_read": np.zeros(n),
            "t_decode": np.zeros(n),
            "t_encode": np.full(n, 0.1),
            "worker": np.full(n, "w1", dtype=object),
        }

    assert writer.add(batch([1], ["b"], 0, [""])) == 1
    assert froot.listdir() == []  # shard 0 still open
    assert writer.add(batch([1, 0], ["b", "a"], 0, ["", "out-of-bounds region: x"])) == 1  # "b" again: dropped
    assert writer.add(batch([2], ["c"], 1, [""])) == 1
    assert writer.add(batch([2], ["c"], 1, [""])) == 0  # after its shard was written: dropped
    assert stats.duplicates_dropped == 2 and writer.incomplete == {}
    assert froot.listdir() == ["errors-00000.parquet", "part-00000.parquet", "part-00001.parquet"]


def test_shard_tables_round_trip_with_shapes_and_storage_dtypes(store):
    rng = np.random.default_rng(0)
    froot = store.sub("features", "k1")
    cls = rng.normal(size=(3, 8)).astype(np.float32)
    patch = rng.normal(size=(3, 8, 2, 2)).astype(np.float32)
    write_table(
        froot,
        shard_table(np.array([2, 0, 1]), ["r2", "r0", "r1"], {"cls": cls, "patch:4": patch}),
        "part-00000.parquet",
    )
    froot.mark_complete(info={"encoder": "e", "dataset": "d", "rows": 3, "errors": 0, "bytes": 1,
                              "taps": {"cls": {"shape": [8]}, "patch:4": {"shape": [8, 2, 2]}}})  # fmt: skip
    fs = read_features(store, "k1")
    assert list(fs.region_ids) == ["r0", "r1", "r2"] and list(fs.rows) == [0, 1, 2]  # manifest order
    np.testing.assert_array_equal(fs.features["cls"], cls[[1, 2, 0]])
    assert fs.features["patch:4"].dtype == np.float16 and tap_dtype("patch:4") == "float16"
    np.testing.assert_allclose(fs.features["patch:4"], patch[[1, 2, 0]], rtol=1e-3, atol=1e-3)
    only = read_features(store, "k1", taps=["cls"])
    assert list(only.features) == ["cls"]
    with pytest.raises(StorageError, match="no tap"):
        read_features(store, "k1", taps=["proj"])
    with pytest.raises(StorageError, match="incomplete"):
        read_features(store, "nokey")
    assert [f.key for f in list_features(store)] == ["k1"]


def test_shards_whose_rows_interleave_read_back_in_manifest_order(store):
    """Parallel actors leave rows spread over shards in any order; each tap is filled in place at its rows'
    sorted positions (a sparse row selection too: rows index the manifest, not 0..N-1)."""
    rng = np.random.default_rng(1)
    froot = store.sub("features", "k2")
    rows = np.array([40, 7, 12, 3, 99, 18, 5])
    tokens = rng.normal(size=(7, 3, 4)).astype(np.float32)
    patch = rng.normal(size=(7, 4, 2, 2)).astype(np.float32)
    for shard, part in enumerate((slice(0, 3), slice(3, 4), slice(4, 7))):
        table = shard_table(rows[part], [f"r{r}" for r in rows[part]], {"tokens": tokens[part], "patch:2": patch[part]})
        write_table(froot, table, f"part-{shard:05d}.parquet")
    froot.mark_complete(info={"rows": 7, "taps": {"tokens": {"shape": [3, 4]}, "patch:2": {"shape": [4, 2, 2]}}})
    fs = read_features(store, "k2")
    order = np.argsort(rows)
    assert list(fs.rows) == sorted(rows) and list(fs.region_ids) == [f"r{r}" for r in sorted(rows)]
    np.testing.assert_array_equal(fs.features["tokens"], tokens[order])
    np.testing.assert_allclose(fs.features["patch:2"], patch[order], rtol=1e-3, atol=1e-3)
    froot.mark_complete(info={"rows": 8, "taps": {"tokens": {"shape": [3, 4]}}})
    with pytest.raises(StorageError, match="holds 7 rows .* where its _SUCCESS says 8"):
        read_features(store, "k2")


def test_worker_encodes_a_batch_and_marks_error_rows():
    worker = FeatureExtractor(TINY, ["cls", "mean", "patch:2"], "cpu", threads=1)
    rng = np.random.default_rng(0)
    n = 3
    batch = {
        "row": np.arange(n),
        "region_id": np.array(["a", "b", "c"], dtype=object),
        "shard": np.zeros(n, np.int64),
        "error": np.array(["", "undecodable image: x", ""], dtype=object),
        "t_read": np.zeros(n),
        "t_decode": np.zeros(n),
        "pixels": rng.integers(0, 255, (n, 64, 64, 3), dtype=np.uint8),
    }
    out = worker(batch)
    assert out["cls"].shape == (3, 192) and out["cls"].dtype == np.float32
    assert out["patch:2"].shape == (3, 192, 4, 4) and out["patch:2"].dtype == np.float16
    assert not out["cls"][1].any() and out["cls"][0].any()
    assert "pixels" not in out and set(out["worker"]) == {worker.worker_id}
    # the same image alone gives the same features (batch composition does not matter)
    alone = worker.encode_pixels(batch["pixels"][2:3])
    np.testing.assert_allclose(out["cls"][2], alone["cls"][0], rtol=1e-4, atol=1e-5)


def test_worker_refuses_weights_that_differ_from_the_key():
    with pytest.raises(StorageError, match="differ"):
        FeatureExtractor(TINY, ["cls"], "cpu", expected_digest="random:1", seed=0)


@pytest.mark.parametrize(
    "kwargs, error",
    [
        ({"taps": ["cls", "patch:99"]}, "no tap"),
        ({"precision": "fp8"}, "precision"),
        ({"max_actors": 0}, "min_actors"),
        ({"encoder": "no-such-encoder"}, "unknown encoder"),
    ],
)
def test_bad_requests_fail_before_any_work(store, kwargs, error):
    from partaware.datasets import prepare_dataset
    from partaware.errors import PartawareError
    from partaware.extract.pipeline import extract_features

    prepare_dataset(store, "synthetic", options={"size": 8, "image_size": 64})
    kwargs = {"encoder": TINY, **kwargs}
    with pytest.raises(PartawareError, match=error):
        extract_features(store, "synthetic", **kwargs)
    assert store.listdir("features") == []


def test_an_unprepared_dataset_is_a_clear_error(store):
    from partaware.extract.pipeline import extract_features

    with pytest.raises(StorageError, match="partctl data prepare"):
        extract_features(store, "synthetic", TINY)
