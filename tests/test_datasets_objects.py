"""PartImageNet (COCO-style JSON + polygons) and ImageNet class folders, fabricated in their layouts."""

import io
import json

import numpy as np
import pytest
from PIL import Image

from partaware.datasets import prepare_dataset
from partaware.errors import SpecError


def jpeg(w, h):
    buf = io.BytesIO()
    Image.new("RGB", (w, h), (90, 90, 200)).save(buf, format="JPEG")
    return buf.getvalue()


def write(path, data):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data if isinstance(data, bytes) else data.encode())


def square(x0, y0, x1, y1):
    return [[x0, y0, x1, y0, x1, y1, x0, y1]]


CATEGORIES = [
    {"id": 0, "name": "Quadruped Head", "supercategory": "Quadruped"},
    {"id": 1, "name": "Quadruped Body", "supercategory": "Quadruped"},
    {"id": 2, "name": "Fish Fin", "supercategory": "Fish"},
]


def make_partimagenet(tmp_path):
    root = tmp_path / "src" / "PartImageNet"
    train = {
        "images": [
            {"id": 1, "file_name": "n01440764_10029.JPEG", "width": 40, "height": 30},
            {"id": 3, "file_name": "n01440764_404.JPEG", "width": 40, "height": 30},  # file missing
        ],
        "annotations": [
            {"id": 100, "image_id": 1, "category_id": 2, "bbox": [2, 2, 9, 9], "segmentation": square(2, 2, 11, 11)},
            {"id": 101, "image_id": 1, "category_id": 2, "bbox": [20, 5, 5, 20], "segmentation": square(20, 5, 24, 24)},
            {"id": 102, "image_id": 1, "category_id": 2, "bbox": [0, 0, 1, 1], "segmentation": {"counts": "x"}},
        ],
        "categories": CATEGORIES,
    }
    val = {
        "images": [{"id": 2, "file_name": "n02099601_123.JPEG", "width": 40, "height": 30}],
        "annotations": [
            {"id": 200, "image_id": 2, "category_id": 1, "bbox": [0, 0, 40, 30], "segmentation": square(0, 0, 39, 29)},
            {"id": 201, "image_id": 2, "category_id": 0, "bbox": [0, 0, 10, 10], "segmentation": square(0, 0, 9, 9)},
        ],
        "categories": CATEGORIES,
    }
    test = {"images": [], "annotations": [], "categories": CATEGORIES}
    write(root / "annotations" / "train.json", json.dumps(train))
    write(root / "annotations" / "val.json", json.dumps(val))
    write(root / "annotations" / "test.json", json.dumps(test))
    write(root / "images" / "train" / "n01440764_10029.JPEG", jpeg(40, 30))
    write(root / "images" / "val" / "n02099601_123.JPEG", jpeg(40, 30))
    return root.parent


def test_partimagenet_parts_masks_and_label_maps(store, tmp_path):
    src = make_partimagenet(tmp_path)
    prepared, built = prepare_dataset(store, "partimagenet", source=str(src), options={"max_error_rate": 0.9})
    assert built
    rows = {r["region_id"]: r for r in prepared.manifest().to_pylist()}
    assert set(rows) == {
        "train/n01440764_10029/part001",
        "train/n01440764_10029/part002",
        "train/n01440764_10029/part-map",
        "train/n01440764_10029/object",
        "val/n02099601_123/part001",
        "val/n02099601_123/part002",
        "val/n02099601_123/part-map",
        "val/n02099601_123/object",
    }
    fin = rows["train/n01440764_10029/part001"]
    # ids are the shipped list's (partimagenet-parts-40, README order): Fish Fin is part 11, Fish object 2
    assert (fin["label"], fin["label_id"], fin["object_label"], fin["object_label_id"]) == ("Fish Fin", 11, "Fish", 2)
    assert fin["box"] == [2.0, 2.0, 11.0, 11.0] and fin["sample_rule"] == "part-box"
    instances = np.asarray(Image.open(io.BytesIO(prepared.root.read_bytes(fin["mask_uri"]))))
    ys, xs = np.nonzero(instances == fin["mask_index"])
    assert (xs.min(), xs.max(), ys.min(), ys.max(), len(xs)) == (2, 11, 2, 11, 100)  # the polygon, filled
    second = rows["train/n01440764_10029/part002"]
    assert second["mask_uri"] == fin["mask_uri"] and int((instances == second["mask_index"]).sum()) == 5 * 20
    # the part label map: category index + 1, a later polygon over an earlier one
    semantic = np.asarray(
        Image.open(io.BytesIO(prepared.root.read_bytes(rows["val/n02099601_123/part001"]["label_map_uri"])))
    )  # noqa: E501
    assert semantic[0, 0] == 1 and semantic[20, 20] == 2 and semantic[9, 9] == 1 and semantic[10, 10] == 2
    obj = rows["val/n02099601_123/object"]
    assert (obj["label"], obj["level"], obj["box"], obj["sample_rule"]) == ("Quadruped", "object", None, "whole-image")
    assert (
        prepared.info["object_classes"][:3] == ["Quadruped", "Biped", "Fish"]
        and len(prepared.info["object_classes"]) == 11
    )
    part_map = rows["val/n02099601_123/part-map"]
    assert (part_map["label_id"], part_map["sample_rule"], part_map["label_map_uri"]) == (
        -1, "whole-image", rows["val/n02099601_123/part001"]["label_map_uri"])  # fmt: skip
    errors = {(e["kind"], e["record"]) for e in prepared.errors().to_pylist()}
    assert errors == {("unreadable-annotation", "annotation 102"), ("missing-image", "image 3")}


def make_imagenet(tmp_path):
    root = tmp_path / "src" / "imagenet"
    for rel in (
        "train/n01440764/n01440764_10026.JPEG",
        "train/n01440764/n01440764_10027.JPEG",
        "train/n01443537/n01443537_2.JPEG",
        "val/n01440764/ILSVRC2012_val_00000293.JPEG",
    ):
        write(root / rel, jpeg(16, 12))
    write(root / "train" / "n01443537" / "n01443537_9.JPEG", b"\xff\xd8 not really a jpeg")
    write(root / "LOC_synset_mapping.txt", "n01440764 tench, Tinca tinca\nn01443537 goldfish, Carassius auratus\n")
    return root


def test_imagenet_class_folders_become_whole_image_objects(store, tmp_path):
    src = make_imagenet(tmp_path)
    prepared, _ = prepare_dataset(store, "imagenet", source=str(src), options={"max_error_rate": 0.5})
    rows = {r["region_id"]: r for r in prepared.manifest().to_pylist()}
    assert set(rows) == {
        "train/n01440764/n01440764_10026",
        "train/n01440764/n01440764_10027",
        "train/n01443537/n01443537_2",
        "val/n01440764/ILSVRC2012_val_00000293",
    }
    row = rows["val/n01440764/ILSVRC2012_val_00000293"]
    assert (row["label"], row["label_id"], row["split"], row["box"]) == ("n01440764", 0, "val", None)
    assert rows["train/n01443537/n01443537_2"]["label_id"] == 1
    assert prepared.info["class_names"]["n01443537"] == "goldfish, Carassius auratus"
    [err] = prepared.errors().to_pylist()
    assert err["kind"] == "unreadable-image" and err["file"].endswith("n01443537_9.JPEG")

    capped, _ = prepare_dataset(store, "imagenet", source=str(src), options={"max_per_class": 1, "splits": ["train"]})
    assert sorted(r["region_id"] for r in capped.manifest().to_pylist()) == [
        "train/n01440764/n01440764_10026",
        "train/n01443537/n01443537_2",
    ]
    with pytest.raises(SpecError, match="splits"):
        prepare_dataset(store, "imagenet", source=str(src), options={"splits": ["holdout"]})
