"""Pascal-Part / Pascal-Object from Annotations_Part/*.mat written in the release's struct layout."""

import io
import json

import numpy as np
import pytest
import scipy.io
from PIL import Image

from partaware.datasets import prepare_dataset
from partaware.datasets.pascal_part import default_part_mapping

W, H = 20, 10
OBJ = [("class", "O"), ("class_ind", "O"), ("mask", "O"), ("parts", "O"), ("silh", "O")]
PART = [("part_name", "O"), ("mask", "O")]


def cols(c0, c1, rows=(0, H)):
    m = np.zeros((H, W), dtype=np.uint8)
    m[rows[0] : rows[1], c0 : c1 + 1] = 1
    return m


def mat_bytes(imname, objects):
    """``anno`` struct: imname + objects(k) with class, class_ind, mask, parts(j) (part_name, mask)."""
    arr = np.zeros((1, len(objects)), dtype=OBJ)
    for k, (cls, ind, mask, parts) in enumerate(objects):
        p = np.zeros((1, len(parts)), dtype=PART) if parts else np.zeros((0, 0))
        for j, (name, pm) in enumerate(parts):
            p[0, j]["part_name"], p[0, j]["mask"] = name, pm
        arr[0, k]["class"], arr[0, k]["class_ind"], arr[0, k]["mask"] = cls, ind, mask
        arr[0, k]["parts"], arr[0, k]["silh"] = p, mask
    buf = io.BytesIO()
    scipy.io.savemat(buf, {"anno": {"imname": imname, "objects": arr}})
    return buf.getvalue()


def write(path, data):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data if isinstance(data, bytes) else data.encode())


def jpeg():
    buf = io.BytesIO()
    Image.new("RGB", (W, H), (10, 200, 30)).save(buf, format="JPEG")
    return buf.getvalue()


def make_pascal(tmp_path):
    src = tmp_path / "src"
    ann = src / "trainval" / "Annotations_Part"
    voc = src / "VOCdevkit" / "VOC2010"
    cat = ("cat", 8, cols(0, 9), [("head", cols(0, 3)), ("lfleg", cols(4, 5)), ("tail", cols(8, 9))])
    car = ("car", 7, cols(12, 19), [("wheel_1", cols(12, 13)), ("wheel_2", cols(18, 19)), ("window_3", cols(15, 16))])
    write(ann / "2008_000001.mat", mat_bytes("2008_000001", [cat, car]))
    chair = ("chair", 9, cols(0, 19), [])
    person = ("person", 15, cols(0, 19, (0, 5)), [("head", cols(0, 19, (0, 2))), ("tentacle", cols(0, 1))])
    write(ann / "2008_000002.mat", mat_bytes("2008_000002", [chair, person]))
    write(ann / "2008_000003.mat", b"MATLAB 5.0 MAT-file, but then garbage")
    write(ann / "2008_000004.mat", mat_bytes("2008_000004", [cat]))  # in no split list
    write(ann / "2008_000005.mat", mat_bytes("2008_000005", [cat]))  # image missing
    for stem in ("2008_000001", "2008_000002", "2008_000003", "2008_000004"):
        write(voc / "JPEGImages" / f"{stem}.jpg", jpeg())
    write(voc / "ImageSets" / "Main" / "train.txt", "2008_000001\n2008_000003\n2008_000005\n")
    write(voc / "ImageSets" / "Main" / "val.txt", "2008_000002\n")
    return src


def stored_map(prepared, region_id):
    row = next(r for r in prepared.manifest().to_pylist() if r["region_id"] == region_id)
    return np.asarray(Image.open(io.BytesIO(prepared.root.read_bytes(row["label_map_uri"])))), row


def bands(*spans):
    """A 10x20 map from (first col, last col, value) spans."""
    m = np.zeros((H, W), dtype=np.uint8)
    for c0, c1, v in spans:
        m[:, c0 : c1 + 1] = v
    return m


def test_default_mapping_has_193_parts_of_16_classes():
    mapping = default_part_mapping()
    assert len(mapping) == 16 and sum(len(p) for p in mapping.values()) == 193
    ids = sorted(i for parts in mapping.values() for i in parts.values())
    assert ids == list(range(1, 194))


def test_pascal_part_renders_193_id_maps_from_mat_files(store, tmp_path):
    src = make_pascal(tmp_path)
    prepared, built = prepare_dataset(store, "pascal-part", source=str(src), options={"max_error_rate": 0.9})
    assert built
    assert {r["region_id"] for r in prepared.manifest().to_pylist()} == {"train/2008_000001", "val/2008_000002"}
    got, row = stored_map(prepared, "train/2008_000001")
    # ids: aeroplane 1-7, bicycle 8-13, bird 14-26, bottle 27-28, bus 29-41, car 42-54 (wheel 52, window 54),
    # cat 55-71 (head 55, lfleg 63, tail 71)
    expected = bands((0, 3, 55), (4, 5, 63), (8, 9, 71), (12, 13, 52), (15, 16, 54), (18, 19, 52))
    assert np.array_equal(got, expected)
    assert (row["level"], row["split"], row["width"], row["height"]) == ("part", "train", W, H)
    # val image: the chair has no parts; person head (id 135) over the top two rows
    got2, _ = stored_map(prepared, "val/2008_000002")
    expected2 = np.zeros((H, W), dtype=np.uint8)
    expected2[0:2, :] = 135  # cow 72-90, dog 91-108, horse 109-129, motorbike 130-134, person head 135
    assert np.array_equal(got2, expected2)
    info = prepared.info["label_maps"]
    assert info["num_classes"] == 193 and info["classes"][54] == "cat head" and info["reduce_zero_label"]
    errors = {(e["kind"], e["file"].rsplit("/", 1)[-1], e["record"]) for e in prepared.errors().to_pylist()}
    assert errors == {
        ("unknown-part", "2008_000002.mat", "objects(2).parts(2)"),
        ("unreadable-annotation", "2008_000003.mat", "2008_000003"),
        ("missing-image", "2008_000005.jpg", "2008_000005"),
    }
    assert prepared.info["unsplit_annotations"] == 1 and prepared.info["records"] == 4


def test_pascal_object_paints_the_16_classes(store, tmp_path):
    src = make_pascal(tmp_path)
    prepared, _ = prepare_dataset(store, "pascal-object", source=str(src), options={"max_error_rate": 0.9})
    got, row = stored_map(prepared, "train/2008_000001")
    assert np.array_equal(got, bands((0, 9, 7), (12, 19, 6)))  # cat = 7th, car = 6th of the 16
    assert row["level"] == "object"
    got2, _ = stored_map(prepared, "val/2008_000002")
    expected = np.zeros((H, W), dtype=np.uint8)
    expected[0:5, :] = 12  # the person (12th); the chair has no parts and stays 0
    assert np.array_equal(got2, expected)
    assert prepared.info["label_maps"]["classes"][11] == "person"


def test_pascal_part_custom_mapping_merges_parts(store, tmp_path):
    src = make_pascal(tmp_path)
    write(src / "mapping.json", json.dumps({"cat": {"head": 1, "tail": 1}, "car": {"wheel": 2}}))
    opts = {"part_mapping_file": "mapping.json", "max_error_rate": 1.0}
    prepared, _ = prepare_dataset(store, "pascal-part", source=str(src), options=opts)
    got, _ = stored_map(prepared, "train/2008_000001")
    assert np.array_equal(got, bands((0, 3, 1), (8, 9, 1), (12, 13, 2), (18, 19, 2)))
    assert prepared.info["label_maps"]["classes"] == ["cat head", "car wheel"]
    unknown = {(e["file"][-15:], e["record"]) for e in prepared.errors().to_pylist() if e["kind"] == "unknown-part"}
    assert unknown == {
        ("2008_000001.mat", "objects(1).parts(2)"),  # cat lfleg
        ("2008_000001.mat", "objects(2).parts(3)"),  # car window_3
        ("2008_000002.mat", "objects(2).parts(1)"),  # person head
        ("2008_000002.mat", "objects(2).parts(2)"),  # person tentacle
    }
    # several errors in one image count as one bad record: images 1, 2, 3 and 5 of 4
    assert prepared.info["bad_records"] == 4 and prepared.info["error_count"] == 6


def test_pascal_without_split_lists_is_a_clear_error(store, tmp_path):
    src = make_pascal(tmp_path)
    (src / "VOCdevkit" / "VOC2010" / "ImageSets" / "Main" / "val.txt").unlink()
    from partaware.errors import DatasetError

    with pytest.raises(DatasetError, match="ImageSets/Main/val.txt"):
        prepare_dataset(store, "pascal-part", source=str(src))


def test_pascal_processed_png_layout_is_taken_as_is(store, tmp_path):
    root = tmp_path / "src" / "pascal_part"
    write(root / "img" / "val" / "2008_000009.jpg", jpeg())
    labels = np.zeros((H, W), dtype=np.uint8)
    labels[:, :5] = 193
    buf = io.BytesIO()
    Image.fromarray(labels).save(buf, format="PNG")
    write(root / "ann" / "val" / "2008_000009.png", buf.getvalue())
    prepared, _ = prepare_dataset(store, "pascal-part", source=str(tmp_path / "src"))
    got, row = stored_map(prepared, "val/2008_000009")
    assert np.array_equal(got, labels) and row["split"] == "val"
    assert prepared.info["label_maps"]["num_classes"] == 193
