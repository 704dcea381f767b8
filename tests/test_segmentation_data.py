"""Linear segmentation's data path, end to end on real code: the synthetic set's whole-image label-map rows,
extraction of only those rows (``kinds``), maps and labels aligned for the probe, and a probe trained on them.

The expected labels come from the generator itself (``render_sample``), not from the code under test.
"""

from __future__ import annotations

import io
import shutil
from collections import Counter
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from _tiny_encoder import TINY
from partaware.datasets import prepare_dataset
from partaware.datasets.convert import label_map_info, level_label_map_info
from partaware.datasets.store import PreparedDataset
from partaware.datasets.synthetic import OBJECT_NAMES, PART_NAMES, SyntheticConfig, render_sample
from partaware.errors import DatasetError, SpecError
from partaware.extract.features import FEATURES, ExtractionError, read_features
from partaware.extract.pipeline import (
    check_kinds,
    extract_features,
    key_for,
    plan_shards,
    select_rows,
    verify_feature_set,
)
from partaware.probes.label_maps import LabelConvention, segmentation_arrays
from partaware.probes.segmentation import train_segmentation_probe
from partaware.storage import StorageRoot

SYNTH = {"size": 12, "image_size": 64}
TAPS = ["patch:2", "patch:3", "patch:4", "patch:6"]
SPLITS = {"train": "train", "val": "val", "test": "test"}
GRID = 4  # TINY: 64 px input, 16 px patches
WIDTH = 192  # TINY's embedding width


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    """The small synthetic set, prepared once."""
    root = StorageRoot.open(str(tmp_path_factory.mktemp("seg") / "store"))
    prepared, _ = prepare_dataset(root, "synthetic", options=SYNTH, workers=1)
    manifest = prepared.manifest()
    return SimpleNamespace(root=root, prepared=prepared, manifest=manifest, rows=manifest.to_pylist())


@pytest.fixture(scope="module")
def seg(synth, ray_local):
    """``synth`` with its whole-image rows extracted once by the tiny random ViT."""
    from partaware.encoders.registry import ENCODERS, register_encoder

    if TINY.name not in ENCODERS:
        register_encoder(TINY)
    result = extract_features(
        synth.root, "synthetic", TINY, taps=TAPS, kinds=("label_maps",), shard_regions=8, batch_size=8, max_actors=1
    )
    return SimpleNamespace(**vars(synth), result=result, fs=read_features(synth.root, result.key))


def whole_image_rows(rows: list[dict], level: str | None = None) -> list[int]:
    return [i for i, r in enumerate(rows) if r["sample_rule"] == "whole-image" and level in (None, r["level"])]


def reduced(stored: np.ndarray) -> np.ndarray:
    """The paper's reduce_zero_label, written out: 0 -> 255, k -> k - 1."""
    return np.where(stored == 0, 255, stored.astype(np.int64) - 1).astype(np.uint8)


# --- the dataset rows -------------------------------------------------------------------------------


def test_every_image_has_one_whole_image_label_map_row_per_level(synth):
    for level in ("object", "part"):
        rows = [synth.rows[i] for i in whole_image_rows(synth.rows, level)]
        assert len(rows) == SYNTH["size"] and len({r["image_id"] for r in rows}) == SYNTH["size"]
        for r in rows:
            assert r["region_id"] == f"{r['image_id']}/image-{level}" and r["box"] is None
            assert (r["label"], r["label_id"]) == ("label-map", -1)
            assert r["label_map_uri"] == f"labels/{level}/{r['image_id']}.png"
            assert synth.prepared.root.exists(r["label_map_uri"])
    # the same reader serves the synthetic set (maps at two levels) and one-level label-map datasets
    assert level_label_map_info(synth.prepared.info, "part")["num_classes"] == len(PART_NAMES)
    assert level_label_map_info(synth.prepared.info, "object")["classes"] == list(OBJECT_NAMES)
    one_level = {"label_maps": label_map_info("part", ["a", "b"], names_source="test")}
    assert level_label_map_info(one_level, "part")["num_classes"] == 2
    assert level_label_map_info(one_level, "object") is None and level_label_map_info({}, "part") is None


def test_kinds_select_rows_and_keep_manifest_indices(synth):
    maps, regions = select_rows(synth.rows, ["label_maps"]), select_rows(synth.rows, ["regions"])
    assert maps == whole_image_rows(synth.rows)
    assert regions == [i for i, r in enumerate(synth.rows) if r["label_id"] >= 0]
    assert sorted(maps + regions) == list(range(len(synth.rows)))  # every synthetic row is of one kind
    assert select_rows(synth.rows, ["regions", "label_maps"]) == list(range(len(synth.rows)))
    shards = plan_shards([synth.rows[i] for i in maps], 5, indices=maps)
    assert sorted(r for s in shards for j in s for r in j.rows) == maps
    assert check_kinds(["regions", "label_maps", "regions"]) == ["label_maps", "regions"]
    for bad in ([], ["boxes"]):
        with pytest.raises(SpecError, match="need one or more of regions, label_maps"):
            check_kinds(bad)


# --- extraction by kind ----------------------------------------------------------------------------


@pytest.mark.ray
def test_extraction_encodes_exactly_the_whole_image_rows_under_their_own_key(seg):
    fs, result, rows = seg.fs, seg.result, seg.rows
    expected = whole_image_rows(rows)
    assert result.status == "ran" and result.rows == len(expected) == 2 * SYNTH["size"] and result.errors == 0
    assert fs.rows.tolist() == expected  # original manifest row indices
    assert list(fs.region_ids) == [rows[i]["region_id"] for i in expected]
    assert fs.features["patch:4"].shape == (len(expected), WIDTH, GRID, GRID)
    assert fs.info["kinds"] == ["label_maps"]

    digest = fs.info["weights_digest"]
    key = lambda kinds: key_for(seg.prepared, TINY, digest, TAPS, "fp32", kinds)  # noqa: E731
    assert key(["label_maps"]) == result.key
    assert key(["regions"]) != result.key and key(["regions", "label_maps"]) not in (result.key, key(["regions"]))
    assert key(["regions", "label_maps"]) == key(["label_maps", "regions"])
    again = extract_features(seg.root, "synthetic", TINY, taps=TAPS, kinds=["label_maps", "label_maps"])
    assert again.status == "cached" and again.key == result.key

    froot = seg.root.sub(FEATURES, result.key)
    assert verify_feature_set(froot, [rows[i]["region_id"] for i in expected])[:2] == (len(expected), 0)
    with pytest.raises(ExtractionError, match=r"1 regions missing \['000000/object'\]"):
        verify_feature_set(froot, [rows[i]["region_id"] for i in expected] + ["000000/object"])


# --- maps and labels for the probe -----------------------------------------------------------------


def expected_images(rows: list[dict], level: str, split: str) -> list[str]:
    """Image ids of ``level``'s whole-image rows in ``split``, in manifest order (the feature set's order)."""
    return [rows[i]["image_id"] for i in whole_image_rows(rows, level) if rows[i]["split"] == split]


@pytest.mark.ray
def test_maps_and_labels_line_up_with_the_generators_masks(seg):
    config = SyntheticConfig(**SYNTH)
    maps, labels, k = segmentation_arrays(seg.prepared, seg.manifest, seg.fs, level="part", taps=TAPS, splits=SPLITS)
    assert k == len(PART_NAMES) and set(maps) == set(labels) == {"train", "val", "test"}
    for split in SPLITS:
        images = expected_images(seg.rows, "part", split)
        assert len(maps[split]) == len(TAPS)
        assert all(m.shape == (len(images), WIDTH, GRID, GRID) and m.dtype == np.float32 for m in maps[split])
        assert labels[split].shape == (len(images), 4 * GRID, 4 * GRID) and labels[split].dtype == np.uint8
        assert set(np.unique(labels[split]).tolist()) <= set(range(k)) | {255}
        for n, image_id in enumerate(images):
            # the maps are the feature set's rows of this image, in the order of the labels
            j = list(seg.fs.region_ids).index(f"{image_id}/image-part")
            np.testing.assert_array_equal(maps[split][2][n], seg.fs.features["patch:4"][j].astype(np.float32))
            # 64 px -> 16 px NEAREST samples pixel centres: source pixel 4 * y + 2
            part_map = render_sample(int(image_id), config).part_map()
            np.testing.assert_array_equal(labels[split][n], reduced(part_map)[2::4, 2::4])

    # at the image's own size the labels are the part map itself: check it at every visible part's keypoint
    _, full, _ = segmentation_arrays(
        seg.prepared, seg.manifest, seg.fs, level="part", taps=TAPS, splits={"train": "train"}, label_size=64
    )
    checked = 0
    for n, image_id in enumerate(expected_images(seg.rows, "part", "train")):
        sample = render_sample(int(image_id), config)
        np.testing.assert_array_equal(full["train"][n], reduced(sample.part_map()))
        for part in sample.parts:
            x, y = (int(v) for v in part.keypoint)
            if 0 <= x < 64 and 0 <= y < 64 and sample.instance_map[y, x] == part.index:
                assert full["train"][n][y, x] == PART_NAMES.index(part.part)
                checked += 1
    assert checked > 10


@pytest.mark.ray
def test_object_level_and_a_val_split_used_as_test(seg):
    splits = {"train": "train", "test": "val"}
    maps, labels, k = segmentation_arrays(seg.prepared, seg.manifest, seg.fs, level="object", taps=TAPS, splits=splits)
    assert k == len(OBJECT_NAMES) and set(maps) == set(labels) == {"train", "test"}
    assert len(labels["test"]) == len(expected_images(seg.rows, "object", "val"))
    for n, image_id in enumerate(expected_images(seg.rows, "object", "train")):
        values = set(np.unique(labels["train"][n]).tolist())
        assert values <= {OBJECT_NAMES.index(render_sample(int(image_id), SyntheticConfig(**SYNTH)).object_label), 255}
        assert 255 in values  # background is ignored, not a class


@pytest.mark.ray
def test_a_linear_segmentation_probe_trains_on_them(seg, one_torch_thread):
    maps, labels, k = segmentation_arrays(seg.prepared, seg.manifest, seg.fs, level="part", taps=TAPS, splits=SPLITS)
    config = {"epochs": 4, "batch_size": 4, "lr": 1e-2, "device": "cpu"}
    fit = train_segmentation_probe(
        maps["train"], labels["train"], num_classes=k, config=config, maps_eval=maps["val"], labels_eval=labels["val"]
    )
    assert len(fit.history) == 4
    for metric in ("miou", "macc", "aacc"):
        assert np.isfinite(fit.metrics[metric]) and 0.0 <= fit.metrics[metric] <= 1.0


# --- bad inputs ------------------------------------------------------------------------------------


def copy_of(prepared: PreparedDataset, folder, info: dict | None = None) -> PreparedDataset:
    """The same version in another folder, to damage without touching the shared one."""
    shutil.copytree(prepared.root.path, folder)
    return PreparedDataset(prepared.name, prepared.version, StorageRoot.open(str(folder)), info or prepared.info)


@pytest.mark.ray
def test_a_bad_label_map_is_named_by_file_and_manifest_row(seg, tmp_path):
    i = next(i for i in whole_image_rows(seg.rows, "part") if seg.rows[i]["split"] == "train")
    uri = seg.rows[i]["label_map_uri"]
    broken = copy_of(seg.prepared, tmp_path / "unreadable")
    broken.root.write_bytes(b"not a png", uri)
    with pytest.raises(DatasetError, match=rf"label map {uri} \(manifest row {i}, region .*/image-part\) is unusable"):
        segmentation_arrays(broken, seg.manifest, seg.fs, level="part", taps=TAPS, splits={"train": "train"})

    out_of_range = copy_of(seg.prepared, tmp_path / "range")
    buf = io.BytesIO()
    Image.fromarray(np.full((64, 64), 200, np.uint8)).save(buf, format="PNG")
    out_of_range.root.write_bytes(buf.getvalue(), uri)
    with pytest.raises(DatasetError, match=r"values \[200\] outside the dataset's labels \(0\.\.8, 255 = ignore\)"):
        segmentation_arrays(out_of_range, seg.manifest, seg.fs, level="part", taps=TAPS, splits={"train": "train"})

    no_convention = PreparedDataset(seg.prepared.name, seg.prepared.version, seg.prepared.root, {})
    with pytest.raises(DatasetError, match="states no label-map convention for level 'part'"):
        segmentation_arrays(no_convention, seg.manifest, seg.fs, level="part", taps=TAPS, splits=SPLITS)


def test_label_conventions():
    stored = np.array([[0, 1, 3], [255, 2, 0]])
    assert LabelConvention(3, True, 255).apply(stored).tolist() == [[255, 0, 2], [255, 1, 255]]
    assert LabelConvention(4, False, 255).apply(stored).tolist() == [[0, 1, 3], [255, 2, 0]]
    with pytest.raises(ValueError, match=r"values \[3\] outside the dataset's labels \(0\.\.2, 255 = ignore\)"):
        LabelConvention(3, False, 255).apply(stored)
    assert Counter(LabelConvention(2, True, 7).apply(np.array([7, 1, 2, 0])).tolist()) == {255: 2, 0: 1, 1: 1}
