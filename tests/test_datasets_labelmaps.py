"""Label-map datasets (ADE20K-150, ADE20K-Part, ADE20K-Object, LIP) in their real layouts; one on S3."""

import io

import numpy as np
import pytest
from PIL import Image

from partaware.datasets import prepare_dataset
from partaware.errors import DatasetError


def jpeg(w, h):
    buf = io.BytesIO()
    Image.new("RGB", (w, h), (30, 60, 90)).save(buf, format="JPEG")
    return buf.getvalue()


def png(array, mode="L"):
    buf = io.BytesIO()
    Image.fromarray(np.asarray(array, dtype=np.uint8), mode=mode if mode != "L" else None).save(buf, format="PNG")
    return buf.getvalue()


def label_map(w, h, values):
    """A w x h map split into vertical bands holding ``values`` in order."""
    arr = np.zeros((h, w), dtype=np.uint8)
    for i, v in enumerate(values):
        arr[:, i * w // len(values) : (i + 1) * w // len(values)] = v
    return arr


def write(path, data):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data if isinstance(data, bytes) else data.encode())


def rows_by_id(prepared):
    return {r["region_id"]: r for r in prepared.manifest().to_pylist()}


def test_ade20k_part_one_row_per_image_with_its_label_map(store, tmp_path):
    root = tmp_path / "src" / "ADE20K_Part"
    maps = {("train", "ADE_train_00000001"): [0, 5, 209], ("val", "ADE_val_00000001"): [0, 17]}
    for (split, stem), values in maps.items():
        write(root / "img" / split / f"{stem}.jpg", jpeg(48, 32))
        write(root / "ann" / split / f"{stem}.png", png(label_map(48, 32, values)))
    prepared, built = prepare_dataset(store, "ade20k-part", source=str(tmp_path / "src"))
    assert built
    rows = rows_by_id(prepared)
    assert set(rows) == {"train/ADE_train_00000001", "val/ADE_val_00000001"}
    row = rows["train/ADE_train_00000001"]
    assert (row["level"], row["box"], row["sample_rule"], row["label_id"]) == ("part", None, "whole-image", -1)
    assert (row["width"], row["height"], row["split"]) == (48, 32, "train")
    assert row["label_map_uri"] == "labels/part/train/ADE_train_00000001.png"
    # the map is copied byte for byte: values kept (0 = background, k = part k-1 after reduce_zero_label)
    stored = np.asarray(Image.open(io.BytesIO(prepared.root.read_bytes(row["label_map_uri"]))))
    assert np.array_equal(stored, label_map(48, 32, [0, 5, 209]))
    info = prepared.info["label_maps"]
    assert info["reduce_zero_label"] is True and info["ignore_index"] == 255 and info["num_classes"] == 209
    # Zhu-compatible: the release's ids, placeholder names shown as such, the list used recorded with its digest
    assert (
        info["classes"][0] == "class 1 (unnamed in the release)"
        and info["classes"][16] == "class 17 (unnamed in the release)"
    )
    assert info["class_list"]["name"] == "zhu-ade20k-part-209" and info["class_list"]["named"] is False
    assert prepared.info["class_lists"]["part"]["sha256"] == info["class_list"]["sha256"]
    assert prepared.checksums()["classes/zhu-ade20k-part-209.json"] == info["class_list"]["sha256"]  # in the version
    assert prepared.info["images_per_class"] == {"5": 1, "17": 1, "209": 1}


def test_ade20k_150_challenge_layout_and_class_names(store, tmp_path):
    root = tmp_path / "src" / "ADEChallengeData2016"
    write(root / "images" / "training" / "ADE_train_00000001.jpg", jpeg(20, 20))
    write(root / "annotations" / "training" / "ADE_train_00000001.png", png(label_map(20, 20, [1, 150])))
    write(root / "images" / "validation" / "ADE_val_00000001.jpg", jpeg(20, 20))
    write(root / "annotations" / "validation" / "ADE_val_00000001.png", png(label_map(20, 20, [3])))
    prepared, _ = prepare_dataset(store, "ade20k", source=str(root))
    assert {r["split"] for r in prepared.manifest().to_pylist()} == {"train", "val"}
    classes = prepared.info["label_maps"]["classes"]
    assert len(classes) == 150 and classes[0] == "wall" and classes[-1] == "flag"
    assert {r["level"] for r in prepared.manifest().to_pylist()} == {"object"}
    used = prepared.info["class_lists"]["object"]  # the shipped list, its digest in the version's content
    assert used["name"] == "ade20k-150" and prepared.checksums()["classes/ade20k-150.json"] == used["sha256"]
    assert prepared.info["label_maps"]["class_list"] == used
    rows = "Idx\tRatio\tTrain\tVal\tName\n" + "".join(f"{i}\t0.1\t1\t1\tthing {i};alias\n" for i in range(1, 151))
    write(root / "objectInfo150.txt", rows)  # a release's own names win, recorded as such
    named, _ = prepare_dataset(store, "ade20k", source=str(root))
    assert named.info["label_maps"]["classes"][16] == "thing 17"
    assert named.info["class_lists"]["object"]["name"] == "objectInfo150.txt"
    assert "classes/ade20k-150.json" not in named.checksums()


def test_ade20k_object_accepts_names_and_checks_the_count(store, tmp_path):
    root = tmp_path / "src"
    write(root / "img" / "train" / "a.jpg", jpeg(10, 10))
    write(root / "ann" / "train" / "a.png", png(label_map(10, 10, [59])))
    write(root / "names.txt", "".join(f"object {i}\n" for i in range(1, 60)))
    prepared, _ = prepare_dataset(store, "ade20k-object", source=str(root), options={"classes_file": "names.txt"})
    assert prepared.info["label_maps"]["classes"][58] == "object 59"
    with pytest.raises(DatasetError, match="2 class names given, the dataset has 59"):
        prepare_dataset(store, "ade20k-object", source=str(root), options={"class_names": ["a", "b"]})


def make_lip(root, *, bad=True):
    """The raw LIP release layout, with three bad records when ``bad``."""
    images = root / "TrainVal_images" / "TrainVal_images"
    labels = root / "TrainVal_parsing_annotations" / "TrainVal_parsing_annotations"
    for split, stems in {"train": ["100034_483681", "100142_449784"], "val": ["100034_1234"]}.items():
        for stem in stems:
            write(images / f"{split}_images" / f"{stem}.jpg", jpeg(30, 40))
            write(labels / f"{split}_segmentations" / f"{stem}.png", png(label_map(30, 40, [0, 2, 19])))
    if bad:
        # label 23 is out of LIP's 0..19 range
        write(images / "train_images" / "bad_range.jpg", jpeg(30, 40))
        write(labels / "train_segmentations" / "bad_range.png", png(label_map(30, 40, [0, 23])))
        # a label map without its image
        write(labels / "train_segmentations" / "no_image.png", png(label_map(30, 40, [1])))
        # a map of the wrong size
        write(images / "val_images" / "wrong_size.jpg", jpeg(30, 40))
        write(labels / "val_segmentations" / "wrong_size.png", png(label_map(31, 40, [1])))
    return root


def test_lip_raw_release_reports_bad_records_by_name(store, tmp_path):
    src = make_lip(tmp_path / "src")
    prepared, _ = prepare_dataset(store, "lip", source=str(src), options={"max_error_rate": 0.5})
    rows = rows_by_id(prepared)
    assert set(rows) == {"train/100034_483681", "train/100142_449784", "val/100034_1234"}
    errors = {(e["kind"], e["record"], e["file"].rsplit("/", 1)[-1]) for e in prepared.errors().to_pylist()}
    assert errors == {
        ("label-out-of-range", "train/bad_range", "bad_range.png"),
        ("missing-image", "train/no_image", "no_image.png"),
        ("label-map-size", "val/wrong_size", "wrong_size.png"),
    }
    msg = next(e["message"] for e in prepared.errors().to_pylist() if e["kind"] == "label-out-of-range")
    assert "[23]" in msg and "0..19" in msg
    assert prepared.info["label_maps"]["classes"][0] == "Hat" and prepared.info["records"] == 6
    assert prepared.info["class_lists"]["part"]["name"] == "lip-19" and "classes/lip-19.json" in prepared.checksums()
    # default threshold 5%: 3 of 6 bad fails, naming them
    with pytest.raises(DatasetError, match="3 bad records out of 6"):
        prepare_dataset(store, "lip", source=str(src), options={"splits": ["train", "val"]})


@pytest.mark.s3
def test_lip_from_s3_source_into_s3_store(s3_bucket, tmp_path):
    import boto3

    from partaware.storage import StorageRoot, s3_endpoint

    src = make_lip(tmp_path / "src", bad=False)
    client = boto3.client("s3", endpoint_url=s3_endpoint(), region_name="us-east-1")
    for path in sorted(p for p in src.rglob("*") if p.is_file()):
        client.put_object(Bucket=s3_bucket, Key=f"raw/LIP/{path.relative_to(src).as_posix()}", Body=path.read_bytes())
    store = StorageRoot.open(f"s3://{s3_bucket}/store")
    prepared, built = prepare_dataset(store, "lip", source=f"s3://{s3_bucket}/raw/LIP", workers=2)
    assert built and prepared.uri.startswith(f"s3://{s3_bucket}/store/datasets/lip/")
    assert len(prepared.manifest()) == 3 and prepared.info["error_count"] == 0
    row = rows_by_id(prepared)["val/100034_1234"]
    assert prepared.root.read_bytes(row["label_map_uri"]) == png(label_map(30, 40, [0, 2, 19]))
    again, built_again = prepare_dataset(store, "lip", source=f"s3://{s3_bucket}/raw/LIP")
    assert not built_again and again.version == prepared.version
