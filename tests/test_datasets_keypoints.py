"""CUB-200-2011 and COCO person keypoints, fabricated in their real layouts, converted to part patches.

Every expected box is computed by hand in the comments (the patch rule of protocol §3.3).
"""

import io
import json
import tarfile

import pytest
from PIL import Image

from partaware.datasets import prepare_dataset
from partaware.errors import DatasetError, SpecError

CUB_PARTS = [
    "back", "beak", "belly", "breast", "crown", "forehead", "left eye", "left leg", "left wing", "nape",
    "right eye", "right leg", "right wing", "tail", "throat",
]  # fmt: skip


def jpeg(w: int, h: int, color=(120, 80, 40)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (w, h), color).save(buf, format="JPEG")
    return buf.getvalue()


def write(path, data):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data if isinstance(data, bytes) else data.encode())


def make_cub(tmp_path, *, corrupt_line=True):
    """The release folder under ``tmp_path/src`` (the store lives beside it, never inside)."""
    root = tmp_path / "src" / "CUB_200_2011"
    names = {
        1: "001.Black_footed_Albatross/Black_Footed_Albatross_0001_796111.jpg",
        2: "001.Black_footed_Albatross/Black_Footed_Albatross_0002_55.jpg",
        3: "002.Laysan_Albatross/Laysan_Albatross_0001_545.jpg",
        4: "002.Laysan_Albatross/Laysan_Albatross_0002_1027.jpg",  # listed, file missing
    }
    write(root / "images.txt", "".join(f"{i} {n}\n" for i, n in names.items()))
    write(root / "train_test_split.txt", "1 1\n2 0\n3 1\n4 0\n")
    write(root / "classes.txt", "1 001.Black_footed_Albatross\n2 002.Laysan_Albatross\n")
    write(root / "image_class_labels.txt", "1 1\n2 1\n3 2\n4 2\n")
    write(
        root / "bounding_boxes.txt",
        "1 60.0 27.0 125.0 104.0\n2 10.0 20.0 30.0 40.0\n3 0.0 0.0 300.0 200.0\n4 1 1 2 2\n",
    )
    write(root / "parts" / "parts.txt", "".join(f"{i} {n}\n" for i, n in enumerate(CUB_PARTS, 1)))
    visible = {
        # image 1: right eye and right leg 60 apart; left wing at (10, 10) is 98.49 from the eye
        1: {11: (100, 50), 12: (100, 110), 9: (10, 10), 1: (200, 100)},
        # image 2: eye and leg exactly 40 apart (dropped); wing 188.68 from the leg (kept)
        2: {11: (50, 50), 12: (90, 50), 9: (250, 150)},
        # image 3: the tail lies outside the 300x200 image
        3: {11: (20, 20), 14: (400, 20)},
        4: {11: (10, 10), 12: (100, 100)},
    }
    lines = []
    for image_id in names:
        for part_id in range(1, 16):
            if part_id in visible[image_id]:
                x, y = visible[image_id][part_id]
                lines.append(f"{image_id} {part_id} {x:.1f} {y:.1f} 1\n")
            else:
                lines.append(f"{image_id} {part_id} 0.0 0.0 0\n")
    if corrupt_line:
        lines.insert(20, "3 12 abc 5.0 1\n")  # line 21 of part_locs.txt
    write(root / "parts" / "part_locs.txt", "".join(lines))
    for image_id in (1, 2, 3):
        write(root / "images" / names[image_id], jpeg(300, 200))
    return root.parent


def regions(prepared):
    return {r["region_id"]: r for r in prepared.manifest().to_pylist()}


def test_cub_converts_to_hand_computed_patches(store, tmp_path):
    src = make_cub(tmp_path)
    prepared, built = prepare_dataset(store, "cub", source=str(src), options={"max_error_rate": 0.9})
    assert built
    rows = regions(prepared)
    parts = {k: (r["label"], r["label_id"], tuple(r["box"])) for k, r in rows.items() if r["level"] == "part"}
    assert parts == {
        "1/kp11": ("right eye", 0, (85.0, 35.0, 115.0, 65.0)),  # d 60 -> s 30 -> r 15
        "1/kp12": ("right leg", 1, (85.0, 95.0, 115.0, 125.0)),
        "1/kp09": ("left wing", 2, (-15.0, -15.0, 35.0, 35.0)),  # d 98.49 -> s 49.24 -> r 25, off the image
        "2/kp09": ("left wing", 2, (203.0, 103.0, 297.0, 197.0)),  # d 188.68 -> s 94.34 -> r 47
    }
    assert {r["sample_rule"] for r in rows.values() if r["level"] == "part"} == {"keypoint-code"}
    eye = rows["1/kp11"]
    assert eye["keypoint"] == [100.0, 50.0] and eye["keypoint_visible"] and eye["split"] == "train"
    assert eye["object_label"] == "Black_footed_Albatross" and eye["object_label_id"] == 0
    assert (eye["width"], eye["height"]) == (300, 200)
    assert rows["2/kp09"]["split"] == "test"
    objects = {k: (r["label"], r["box"], r["sample_rule"]) for k, r in rows.items() if r["level"] == "object"}
    assert objects == {
        "1/object": ("Black_footed_Albatross", [60.0, 27.0, 185.0, 131.0], "object-box"),
        "2/object": ("Black_footed_Albatross", [10.0, 20.0, 40.0, 60.0], "object-box"),
        "3/object": ("Laysan_Albatross", [0.0, 0.0, 300.0, 200.0], "object-box"),
    }
    # images are copied under the version folder and checksummed
    assert eye["image_uri"] == "images/001.Black_footed_Albatross/Black_Footed_Albatross_0001_796111.jpg"
    assert eye["image_uri"] in prepared.checksums()

    # the bad records are named by file and record, the rest converted
    errors = {(e["kind"], e["file"].split("CUB_200_2011/")[-1], e["record"]) for e in prepared.errors().to_pylist()}
    assert errors == {
        ("unreadable-annotation", "parts/part_locs.txt", "line 21"),
        ("keypoint-outside-image", "parts/part_locs.txt", "line 45"),  # image 3, part 14 (+1 inserted line)
        ("missing-image", "images/002.Laysan_Albatross/Laysan_Albatross_0002_1027.jpg", "image 4"),
    }
    assert prepared.info["error_count"] == 3 and prepared.info["records"] == 4

    # idempotent: the same source does nothing the second time
    again, built_again = prepare_dataset(store, "cub", source=str(src), options={"max_error_rate": 0.9})
    assert not built_again and again.version == prepared.version


def test_cub_fails_above_the_error_rate_with_a_summary(store, tmp_path):
    src = make_cub(tmp_path)
    with pytest.raises(DatasetError) as err:
        prepare_dataset(store, "cub", source=str(src))  # default max_error_rate 5%; 3 of 4 records are bad
    msg = str(err.value)
    assert "3 bad records out of 4" in msg and "nothing was published" in msg
    assert "missing-image: 1" in msg and "Laysan_Albatross_0002_1027.jpg" in msg
    assert not store.listdir("datasets", "cub") or all(
        not store.is_complete("datasets", "cub", v) for v in store.listdir("datasets", "cub") if not v.startswith("_")
    )
    assert store.listdir("datasets", "cub", "_errors")  # the failed build's error table is kept


def test_cub_paper_rule_and_whole_image_objects(store, tmp_path):
    src = make_cub(tmp_path)
    with open(src / "CUB_200_2011" / "image_class_labels.txt", "a") as f:
        f.write("5 two\n")  # a corrupt line in a small table: an error row, not a crash
    opts = {"max_error_rate": 1.0, "patch_rule": "paper", "object_samples": "whole-image"}
    prepared, _ = prepare_dataset(store, "cub", source=str(src), options=opts)
    rows = regions(prepared)
    assert tuple(rows["1/kp11"]["box"]) == (70.0, 20.0, 130.0, 80.0)  # d x d = 60 x 60
    assert rows["1/kp11"]["sample_rule"] == "keypoint-paper"
    assert rows["1/object"]["box"] is None and rows["1/object"]["sample_rule"] == "whole-image"
    bad_line = [e for e in prepared.errors().to_pylist() if e["file"].endswith("image_class_labels.txt")]
    assert [(e["kind"], e["record"]) for e in bad_line] == [("unreadable-annotation", "line 5")]


def test_cub_from_a_tar_archive_gives_the_same_version(store, tmp_path):
    src = make_cub(tmp_path / "raw")
    folder, _ = prepare_dataset(store, "cub", source=str(src), options={"max_error_rate": 0.9})
    archive = tmp_path / "CUB_200_2011.tgz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(src / "CUB_200_2011", arcname="CUB_200_2011")
    packed, built = prepare_dataset(store, "cub", source=str(archive), options={"max_error_rate": 0.9})
    assert built  # another source digest, so converted again ...
    assert packed.version == folder.version  # ... into the same content


def test_cub_options_are_validated(store, tmp_path):
    with pytest.raises(SpecError, match="unknown field"):
        prepare_dataset(store, "cub", source=str(tmp_path), options={"keypoint": [1]})
    with pytest.raises(DatasetError, match="does not exist"):
        prepare_dataset(store, "cub", source=str(tmp_path / "nope"))


# --- COCO ---------------------------------------------------------------------------------------


def person(ann_id, image_id, points):
    """A COCO person annotation with ``points`` = {keypoint id (1-based): (x, y, v)}."""
    kps = []
    for k in range(1, 18):
        kps.extend(points.get(k, (0, 0, 0)))
    return {
        "id": ann_id,
        "image_id": image_id,
        "category_id": 1,
        "keypoints": kps,
        "num_keypoints": sum(1 for p in points.values() if p[2] > 0),
        "bbox": [10.0, 20.0, 100.0, 200.0],
        "area": 20000.0,
        "iscrowd": 0,
    }


def make_coco(tmp_path):
    root = tmp_path / "coco"
    train = {
        "images": [
            {"id": 1, "file_name": "000000000001.jpg", "width": 640, "height": 480},
            {"id": 2, "file_name": "000000000002.jpg", "width": 640, "height": 480},
            {"id": 9, "file_name": "000000000009.jpg", "width": 640, "height": 480},  # no qualifying person
        ],
        "annotations": [
            person(10, 1, {1: (100, 100, 2), 11: (100, 160, 2), 16: (0, 0, 0)}),
            person(11, 1, {1: (300, 100, 2), 11: (300, 100, 1), 16: (300, 400, 2)}),
            person(12, 1, {1: (500, 100, 2), 2: (510, 100, 2)}),  # one target keypoint: not counted
            # image 2: noses of persons 20 and 21 are 40 px apart: kept only through the annotation-id term
            person(20, 2, {1: (100, 100, 2), 11: (100, 300, 2)}),
            person(21, 2, {1: (140, 100, 2), 16: (140, 400, 2)}),
            person(90, 9, {1: (10, 10, 2)}),
        ],
        "categories": [{"id": 1, "name": "person", "supercategory": "person"}],
    }
    val = {
        "images": [
            {"id": 5, "file_name": "000000000005.jpg", "width": 640, "height": 480},
            {"id": 6, "file_name": "000000000006.jpg", "width": 640, "height": 480},  # file missing
        ],
        "annotations": [
            person(30, 5, {1: (10, 10, 2), 16: (10, 3000, 2)}),  # ankle far below the image
            {**person(31, 5, {}), "keypoints": [1, 2, 2]},  # malformed
            person(32, 6, {1: (10, 10, 2), 11: (10, 200, 2)}),
        ],
        "categories": train["categories"],
    }
    write(root / "annotations" / "person_keypoints_train2017.json", json.dumps(train))
    write(root / "annotations" / "person_keypoints_val2017.json", json.dumps(val))
    for name in ("000000000001.jpg", "000000000002.jpg", "000000000009.jpg"):
        write(root / "train2017" / name, jpeg(640, 480))  # layout of the official zips
    write(root / "images" / "val2017" / "000000000005.jpg", jpeg(640, 480))  # images/ layout also found
    return root


def test_coco_pools_persons_and_applies_the_annotation_id_quirk(store, tmp_path):
    src = make_coco(tmp_path)
    prepared, built = prepare_dataset(store, "coco", source=str(src), options={"max_error_rate": 0.9}, workers=2)
    assert built
    got = {k: (r["label"], r["label_id"], tuple(r["box"])) for k, r in regions(prepared).items()}
    assert got == {
        # image 1: persons 10 and 11 pooled; person 12 has one target keypoint and is left out
        "train2017/1/10/kp01": ("nose", 0, (85.0, 85.0, 115.0, 115.0)),  # d 60 (own wrist)
        "train2017/1/10/kp11": ("right_wrist", 1, (85.0, 145.0, 115.0, 175.0)),
        "train2017/1/11/kp01": ("nose", 0, (250.0, 50.0, 350.0, 150.0)),  # d sqrt(200^2+1) -> r 50
        "train2017/1/11/kp16": ("left_ankle", 2, (225.0, 325.0, 375.0, 475.0)),  # d 300 -> r 75
        # image 2: noses 40 px apart, but sqrt(40^2 + 1^2) = 40.0125 -> s 20.006 > 20 -> kept, r 10
        "train2017/2/20/kp01": ("nose", 0, (90.0, 90.0, 110.0, 110.0)),
        "train2017/2/21/kp01": ("nose", 0, (130.0, 90.0, 150.0, 110.0)),
        # wrist (100,300) and ankle (140,400): sqrt(40^2 + 100^2 + 1) = 107.71 -> s 53.85 -> r 27
        "train2017/2/20/kp11": ("right_wrist", 1, (73.0, 273.0, 127.0, 327.0)),
        "train2017/2/21/kp16": ("left_ankle", 2, (113.0, 373.0, 167.0, 427.0)),
    }
    row = regions(prepared)["train2017/1/10/kp01"]
    assert (
        row["split"] == "train"
        and row["object_label"] == "person"
        and row["image_uri"] == ("images/train2017/000000000001.jpg")
    )
    errors = {(e["kind"], e["record"]) for e in prepared.errors().to_pylist()}
    assert errors == {
        ("keypoint-outside-image", "annotation 30 keypoint 16"),
        ("unreadable-annotation", "annotation 31"),
        ("missing-image", "image 6"),
    }
    assert prepared.info["records"] == 4  # images with a candidate person: 1, 2, 5, 6


def test_coco_person_boxes_and_split_choice(store, tmp_path):
    src = make_coco(tmp_path)
    opts = {"splits": ["train2017"], "object_samples": "box"}
    prepared, _ = prepare_dataset(store, "coco", source=str(src), options=opts)
    rows = regions(prepared)
    assert {r["split"] for r in rows.values()} == {"train"}
    persons = sorted(k for k, r in rows.items() if r["level"] == "object")
    assert persons == [
        "train2017/1/10/person",
        "train2017/1/11/person",
        "train2017/2/20/person",
        "train2017/2/21/person",
    ]
    assert rows["train2017/1/10/person"]["box"] == [10.0, 20.0, 110.0, 220.0]
