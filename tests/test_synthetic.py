"""The synthetic dataset: determinism, exact annotations, splits, vocabulary, publishing."""

import io
from collections import Counter

import numpy as np
import pytest
from PIL import Image

from partaware.datasets import prepare_dataset
from partaware.datasets.synthetic import (
    OBJECT_NAMES,
    OBJECT_TEMPLATES,
    PART_NAMES,
    PART_TYPES,
    SyntheticConfig,
    box_of,
    render_files_and_rows,
    render_sample,
    split_of,
)
from partaware.errors import SpecError
from partaware.manifest import MANIFEST_SCHEMA

SMALL = SyntheticConfig(size=40, image_size=96, seed=3)


def test_rendering_is_deterministic_per_seed_and_index():
    a, b = render_sample(5, SMALL), render_sample(5, SMALL)
    assert np.array_equal(a.image, b.image) and np.array_equal(a.instance_map, b.instance_map)
    assert render_files_and_rows(5, SMALL) == render_files_and_rows(5, SMALL)
    other_seed = render_sample(5, SMALL.model_copy(update={"seed": 4}))
    assert not np.array_equal(a.image, other_seed.image)
    assert not np.array_equal(a.image, render_sample(6, SMALL).image)


def test_vocabulary_is_shared_and_appearance_is_unique():
    # each part type has its own shape and its own texture: local appearance identifies it
    shapes = [s for s, _ in PART_TYPES.values()]
    textures = [t for _, t in PART_TYPES.values()]
    assert len(set(shapes)) == len(shapes) and len(set(textures)) == len(textures)
    uses = Counter(p for name in OBJECT_NAMES for p in {t[0] for t in OBJECT_TEMPLATES[name]})
    assert set(uses) == set(PART_NAMES)
    assert sum(n >= 2 for n in uses.values()) >= 6, "most part types must appear in several object classes"
    # some classes have exactly the same part types: only layout tells them apart
    part_sets = Counter(frozenset(t[0] for t in OBJECT_TEMPLATES[n]) for n in OBJECT_NAMES)
    assert max(part_sets.values()) >= 2


@pytest.mark.parametrize("index", range(24))
def test_masks_boxes_keypoints_agree(index):
    sample = render_sample(index, SMALL)
    files, rows = render_files_and_rows(index, SMALL)
    stem = f"{index:06d}"
    decode = lambda rel: np.asarray(Image.open(io.BytesIO(files[rel])))  # noqa: E731
    instances = decode(f"masks/{stem}_instances.png")
    assert np.array_equal(instances, sample.instance_map)  # PNG is lossless
    part_map, object_map = decode(f"labels/part/{stem}.png"), decode(f"labels/object/{stem}.png")
    assert np.array_equal(part_map > 0, instances > 0) and np.array_equal(object_map > 0, instances > 0)
    image = Image.open(io.BytesIO(files[f"images/{stem}.jpg"]))
    assert image.size == (SMALL.image_size, SMALL.image_size) and image.mode == "RGB"

    obj, *part_rows, image_object, image_part = rows  # the box rows, then one whole-image row per level
    assert obj["level"] == "object" and obj["label"] == sample.object_label and obj["sample_rule"] == "object-box"
    assert np.unique(object_map[object_map > 0]).tolist() == [OBJECT_NAMES.index(obj["label"]) + 1]
    assert tuple(obj["box"]) == box_of(instances > 0)
    for level, row in (("object", image_object), ("part", image_part)):
        assert (row["region_id"], row["level"], row["sample_rule"]) == (f"{stem}/image-{level}", level, "whole-image")
        assert (row["label"], row["label_id"], row.get("box")) == ("label-map", -1, None)
        assert row["label_map_uri"] == f"labels/{level}/{stem}.png" and row["split"] == obj["split"]
    for row in part_rows:
        assert row["sample_rule"] == "part-box"
        assert row["level"] == "part" and row["object_label"] == obj["label"]
        mask = decode(row["mask_uri"]) == row["mask_index"]
        assert mask.sum() >= SMALL.min_part_pixels
        assert tuple(row["box"]) == box_of(mask)
        # the semantic part map carries the row's label on the row's mask
        assert np.all(part_map[mask] == row["label_id"] + 1)
        assert PART_NAMES[row["label_id"]] == row["label"]
        x0, y0, x1, y1 = row["box"]
        kx, ky = row["keypoint"]
        if row["keypoint_visible"]:
            assert mask[int(ky), int(kx)]
            assert x0 <= kx < x1 and y0 <= ky < y1
        # part boxes lie inside the object box
        ox0, oy0, ox1, oy1 = obj["box"]
        assert ox0 <= x0 and oy0 <= y0 and x1 <= ox1 and y1 <= oy1


def test_splits_and_classes():
    config = SyntheticConfig(size=200, seed=1, val_fraction=0.15, test_fraction=0.2)
    splits = Counter(split_of(i, config) for i in range(config.size))
    assert splits == {"train": 130, "val": 30, "test": 40}
    labels = Counter(OBJECT_NAMES[i % len(OBJECT_NAMES)] for i in range(config.size))
    assert max(labels.values()) - min(labels.values()) <= 1


def test_prepare_publishes_a_complete_versioned_dataset(store):
    options = {"size": 24, "image_size": 64, "seed": 2}
    prepared, built = prepare_dataset(store, "synthetic", options=options, workers=1)
    assert built and store.is_complete("datasets", "synthetic", prepared.version)
    manifest = prepared.manifest()
    assert manifest.schema.equals(MANIFEST_SCHEMA, check_metadata=False)
    assert set(manifest.column("level").to_pylist()) == {"object", "part"}
    assert manifest.num_rows == prepared.info["rows"]
    assert len(set(manifest.column("image_id").to_pylist())) == 24
    whole = [r for r in manifest.to_pylist() if r["sample_rule"] == "whole-image"]
    assert Counter(r["level"] for r in whole) == {"object": 24, "part": 24}  # one label-map row per image and level
    # the maps' convention, stated as the label-map datasets state it (convert.label_map_info)
    maps = prepared.info["label_maps"]
    assert maps["object"]["classes"] == list(OBJECT_NAMES) and maps["part"]["classes"] == list(PART_NAMES)
    assert all(m["reduce_zero_label"] and m["ignore_index"] == 255 for m in maps.values())
    assert (maps["object"]["num_classes"], maps["part"]["num_classes"]) == (len(OBJECT_NAMES), len(PART_NAMES))
    checksums = prepared.checksums()
    assert len(checksums) == 24 * 4
    import hashlib

    rel = manifest.column("image_uri")[0].as_py()
    assert hashlib.sha256(prepared.root.read_bytes(rel)).hexdigest() == checksums[rel]
    # no staging folders left behind
    assert [n for n in store.listdir("datasets", "synthetic") if n.startswith(".")] == []


def test_prepare_is_idempotent_and_content_versioned(store):
    first, built1 = prepare_dataset(store, "synthetic", options={"size": 16, "image_size": 64}, workers=1)
    mtime = store.fs.info(store.join("datasets", "synthetic", first.version, "_SUCCESS"))["mtime"]
    again, built2 = prepare_dataset(store, "synthetic", options={"size": 16, "image_size": 64}, workers=1)
    assert (built1, built2) == (True, False) and again.version == first.version
    assert store.fs.info(store.join("datasets", "synthetic", first.version, "_SUCCESS"))["mtime"] == mtime
    other, _ = prepare_dataset(store, "synthetic", options={"size": 16, "image_size": 64, "seed": 9}, workers=1)
    assert other.version != first.version


def test_parallel_and_serial_builds_give_the_same_version(tmp_path):
    from partaware.storage import StorageRoot

    opts = {"size": 80, "image_size": 64}
    a, _ = prepare_dataset(StorageRoot.open(str(tmp_path / "a")), "synthetic", options=opts, workers=1)
    b, _ = prepare_dataset(StorageRoot.open(str(tmp_path / "b")), "synthetic", options=opts, workers=2)
    assert a.version == b.version


def test_bad_options_name_the_field():
    with pytest.raises(SpecError, match=r"size: .*greater than or equal to 8 \(got 2\)"):
        prepare_dataset(None, "synthetic", options={"size": 2})
    with pytest.raises(SpecError, match=r"colour: unknown field \(valid fields: size, image_size"):
        prepare_dataset(None, "synthetic", options={"colour": "red"})


@pytest.mark.s3
def test_prepare_to_s3(s3_bucket):
    from partaware.storage import StorageRoot

    root = StorageRoot.open(f"s3://{s3_bucket}/store")
    prepared, built = prepare_dataset(root, "synthetic", options={"size": 12, "image_size": 64}, workers=1)
    assert built and root.is_complete("datasets", "synthetic", prepared.version)
    assert prepared.manifest().num_rows == prepared.info["rows"]
    _, built_again = prepare_dataset(root, "synthetic", options={"size": 12, "image_size": 64}, workers=1)
    assert not built_again
