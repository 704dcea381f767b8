"""Named part lists: OV-PARTS ADE20K-Part-234 / Pascal-Part-116 and PartImageNet prepared from tiny trees in
their real layouts, the Zhu-compatible mode, and the bad input that publishes nothing."""

import hashlib
import io
import json
import shutil

import numpy as np
import pytest
from PIL import Image

from _part_releases import (
    ADE_IGNORE,
    ADE_VALUES,
    VOC_OBJECTS,
    VOC_PARTS,
    jpeg,
    make_ade20k_part_234,
    make_partimagenet,
    make_pascal_part_116,
    png,
    quadrants,
    write,
)
from partaware.datasets import classlists, prepare_dataset
from partaware.datasets.classlists import load_class_list
from partaware.datasets.convert import class_list_of, level_label_map_info
from partaware.datasets.store import list_versions
from partaware.errors import DatasetError
from partaware.probes.label_maps import label_convention


def rows_by_id(prepared):
    return {r["region_id"]: r for r in prepared.manifest().to_pylist()}


def stored(prepared, uri):
    return np.asarray(Image.open(io.BytesIO(prepared.root.read_bytes(uri))))


# --- the shipped lists ------------------------------------------------------------------------------


def test_shipped_lists_verify_and_hold_the_published_counts():
    ade, voc = load_class_list("ov-parts-ade20k-part-234"), load_class_list("ov-parts-pascal-part-116")
    assert (len(ade.ids), len(ade.objects()), ade.ids) == (234, 44, list(range(234)))
    assert (len(voc.ids), len(voc.objects())) == (116, 20)
    novel = {o["name"] for o in ade.objects() if o["split"] == "novel"}
    assert novel == {"bench", "bus", "fan", "desk", "stool", "truck", "van", "swivel chair", "oven", "ottoman",
                     "kitchen island"}  # fmt: skip
    assert {o["name"] for o in voc.objects() if o["split"] == "novel"} == {"bird", "car", "dog", "sheep", "motorbike"}
    assert all(c["split"] == ("novel" if c["object"] in novel else "base") for c in ade.entries)
    assert (ade.spec["label_values"]["ignore_index"], voc.spec["label_values"]["ignore_index"]) == (65535, 255)
    pin = load_class_list("partimagenet-parts-40")
    assert len(pin.ids) == 40 and len(pin.spec["supercategories"]) == 11
    assert sum(s["classes"] for s in pin.spec["supercategories"]) == 158
    assert [pin.spec["splits"][s]["classes"] for s in ("train", "val", "test")] == [109, 19, 30]
    zhu = load_class_list("zhu-pascal-part-193")
    assert not zhu.named and zhu.ids == list(range(1, 194)) and zhu.names()[16] == "class 17 (unnamed in the release)"
    for name in classlists.list_names():  # every shipped list names its source and the commit read
        record = load_class_list(name).record()
        assert record["sha256"] and record["source"] and record["version"]


def test_a_class_list_whose_digest_does_not_match_is_refused_and_nothing_is_published(store, tmp_path, monkeypatch):
    folder = tmp_path / "classes"
    shutil.copytree(classlists._folder(), folder)
    path = folder / "ov-parts-ade20k-part-234.json"
    path.write_text(path.read_text().replace("person's arm", "person's wing"))
    monkeypatch.setattr(classlists, "_folder", lambda: folder)
    src = make_ade20k_part_234(tmp_path / "src")
    with pytest.raises(DatasetError) as err:
        prepare_dataset(store, "ade20k-part-234", source=str(src))
    message = str(err.value)
    assert "\n" not in message and str(path) in message and hashlib.sha256(path.read_bytes()).hexdigest() in message
    assert list_versions(store, "ade20k-part-234") == []


# --- OV-PARTS ----------------------------------------------------------------------------------------


def test_ade20k_part_234_keeps_the_release_maps_and_names_its_234_classes(store, tmp_path):
    src = make_ade20k_part_234(tmp_path / "src")
    prepared, built = prepare_dataset(store, "ade20k-part-234", source=str(tmp_path / "src"))
    assert built
    rows = rows_by_id(prepared)
    assert set(rows) == {f"train/ADE_train_{i:08d}" for i in (1, 2, 3)} | {f"val/ADE_val_{i:08d}" for i in (1, 2)}
    row = rows["val/ADE_val_00000002"]
    assert (row["level"], row["split"], row["label_id"], row["sample_rule"]) == ("part", "val", -1, "whole-image")
    release_map = src / "annotations_detectron2_part" / "validation" / "ADE_val_00000002.png"
    assert prepared.root.read_bytes(row["label_map_uri"]) == release_map.read_bytes()  # byte for byte, 16-bit
    info = level_label_map_info(prepared.info, "part")
    assert (info["reduce_zero_label"], info["ignore_index"], info["num_classes"]) == (False, 65535, 234)
    assert info["classes"][0] == "person's arm" and info["classes"][141] == "bus's wheel"
    assert info["class_objects"][141] == "bus" and info["class_splits"][141] == "novel"
    assert info["class_splits"][0] == "base" and "bus" in prepared.info["object_split"]["novel"]
    assert info["images_per_class"] == {"person's arm": 5, "door's knob": 3, "bus's wheel": 4, "airplane's wing": 3}
    record = class_list_of(prepared.info, "part")
    assert record["name"] == "ov-parts-ade20k-part-234" and record["named"] is True
    assert record["source"]["repository"] == "https://github.com/OpenRobotLab/OV_PARTS"
    assert prepared.checksums()[record["file"]] == record["sha256"]  # the list is part of the version's content
    assert prepared.info["recipe"]["class_list"]["sha256"] == record["sha256"]
    assert prepared.info["images_without_maps"] == {"train": 1, "val": 0}
    # segmentation reads the release's convention from dataset.json: k -> class k, 65535 -> ignored
    labels = label_convention(prepared, "part").apply(stored(prepared, row["label_map_uri"]))
    expected = quadrants(32, 32, ADE_VALUES[1])
    assert np.array_equal(labels, np.where(expected == ADE_IGNORE, 255, expected))


def test_pascal_part_116_has_named_part_and_object_maps(store, tmp_path):
    make_pascal_part_116(tmp_path / "src")
    prepared, _ = prepare_dataset(store, "pascal-part-116", source=str(tmp_path / "src"))
    rows = rows_by_id(prepared)
    assert {r["level"] for r in rows.values()} == {"part", "object"} and len(rows) == 8
    part, obj = rows["train/2008_000001/part"], rows["train/2008_000001/object"]
    assert part["image_uri"] == obj["image_uri"] and part["label_map_uri"] != obj["label_map_uri"]
    assert np.array_equal(stored(prepared, part["label_map_uri"]), quadrants(24, 24, VOC_PARTS[1]))
    assert np.array_equal(stored(prepared, obj["label_map_uri"]), quadrants(24, 24, VOC_OBJECTS[1]))
    parts, objects = (level_label_map_info(prepared.info, lv) for lv in ("part", "object"))
    assert (parts["num_classes"], parts["ignore_index"], parts["reduce_zero_label"]) == (116, 255, False)
    assert parts["classes"][11] == "bird's wing" and parts["class_splits"][11] == "novel"
    assert (objects["num_classes"], objects["classes"][14], objects["class_splits"][2]) == (20, "person", "novel")
    assert class_list_of(prepared.info, "object")["entries"] == "objects"
    assert prepared.info["object_split"]["novel"] == ["bird", "car", "dog", "motorbike", "sheep"]


def test_a_label_value_outside_the_list_stops_the_conversion_naming_file_and_value(store, tmp_path):
    src = make_pascal_part_116(tmp_path / "src")
    bad = src / "annotations_detectron2_part" / "val" / "2008_100001.png"
    write(bad, png(quadrants(24, 24, (0, 116, 0, 0))))
    with pytest.raises(DatasetError) as err:
        prepare_dataset(store, "pascal-part-116", source=str(tmp_path / "src"), options={"max_error_rate": 1.0})
    message = str(err.value)
    assert "\n" not in message and "annotations_detectron2_part/val/2008_100001.png" in message
    assert "label value 116" in message and "ov-parts-pascal-part-116" in message
    assert list_versions(store, "pascal-part-116") == []


def test_a_release_missing_a_split_is_refused(store, tmp_path):
    src = make_ade20k_part_234(tmp_path / "src")
    shutil.rmtree(src / "annotations_detectron2_part" / "validation")
    with pytest.raises(DatasetError, match=r"no annotations_detectron2_part/validation/ .*val split") as err:
        prepare_dataset(store, "ade20k-part-234", source=str(tmp_path / "src"))
    assert "\n" not in str(err.value) and list_versions(store, "ade20k-part-234") == []


def test_bad_images_are_error_rows_as_elsewhere(store, tmp_path):
    src = make_ade20k_part_234(tmp_path / "src", train=4)
    (src / "images" / "training" / "ADE_train_00000004.jpg").unlink()
    write(src / "annotations_detectron2_part" / "training" / "ADE_train_00000003.png", png(np.zeros((5, 5))))
    prepared, _ = prepare_dataset(store, "ade20k-part-234", source=str(src), options={"max_error_rate": 0.5})
    kinds = {(e["kind"], e["record"]) for e in prepared.errors().to_pylist()}
    assert kinds == {("missing-image", "train/ADE_train_00000004"), ("label-map-size", "train/ADE_train_00000003")}
    assert len(prepared.manifest()) == 4


# --- Zhu-compatible mode ---------------------------------------------------------------------------------


def test_zhu_pascal_part_193_keeps_the_release_ids_and_never_shows_a_placeholder_as_a_name(store, tmp_path):
    root = tmp_path / "src" / "pascal_part"
    write(root / "img" / "train" / "2008_000009.jpg", jpeg(8, 8))
    write(root / "ann" / "train" / "2008_000009.png", png(quadrants(8, 8, (0, 17, 193, 255))))
    prepared, _ = prepare_dataset(store, "pascal-part", source=str(tmp_path / "src"))
    row = next(iter(rows_by_id(prepared).values()))
    assert np.array_equal(stored(prepared, row["label_map_uri"]), quadrants(8, 8, (0, 17, 193, 255)))
    info = level_label_map_info(prepared.info, "part")
    assert info["classes"][16] == "class 17 (unnamed in the release)" and info["reduce_zero_label"] is True
    assert info["class_list"]["name"] == "zhu-pascal-part-193" and info["class_list"]["named"] is False
    assert "ids as released" in info["class_names_source"]


# --- PartImageNet ---------------------------------------------------------------------------------------


# Real members of each split (image j is a quadruped, a fish or a car, j mod 3: see make_partimagenet).
OOD = {"train": ["n02089867", "n01440764", "n04037443"], "val": ["n02099601"], "test": ["n02085782"]}


def test_partimagenet_ood_named_parts_label_maps_and_class_disjoint_splits(store, tmp_path):
    make_partimagenet(tmp_path / "src", OOD)
    prepared, _ = prepare_dataset(store, "partimagenet", source=str(tmp_path / "src"))
    rows = prepared.manifest().to_pylist()
    maps = [r for r in rows if r["label_id"] == -1]
    assert {r["split"] for r in maps} == {"train", "val", "test"} and len(maps) == 5
    tire = next(r for r in rows if r["label"] == "Car Tier")
    assert (tire["label_id"], tire["object_label"], tire["object_label_id"]) == (25, "Car", 6)
    info = prepared.info
    assert info["part_classes"][25] == "Car Tier" and len(info["part_classes"]) == 40
    assert class_list_of(info, "part")["name"] == "partimagenet-parts-40"
    assert class_list_of(info, "object")["entries"] == "supercategories"
    split_info = info["partimagenet"]
    assert split_info["class_disjoint"] and split_info["classes_per_split"]["train"] == sorted(OOD["train"])
    assert split_info["published_class_counts"] == {"train": 109, "val": 19, "test": 30}
    assert split_info["class_list"]["name"] == "partimagenet-classes-158"
    assert prepared.checksums()["classes/partimagenet-classes-158.json"]  # in the version's content digest
    objects = {r["image_id"]: r["label"] for r in rows if r["level"] == "object"}
    assert objects == {"n02089867_1": "Quadruped", "n01440764_2": "Fish", "n04037443_3": "Car",
                       "n02099601_1": "Quadruped", "n02085782_1": "Quadruped"}  # fmt: skip
    car = next(r for r in maps if r["image_id"].startswith("n04037443"))  # a car: body 25, tire 26 (stored k+1)
    assert set(np.unique(stored(prepared, car["label_map_uri"])).tolist()) == {25, 26}


def test_partimagenet_ood_refuses_shared_classes_and_missing_splits(store, tmp_path):
    make_partimagenet(tmp_path / "src", {**OOD, "test": ["n02089867"]})
    with pytest.raises(DatasetError, match="class n02089867 is in both test.json and train.json") as err:
        prepare_dataset(store, "partimagenet", source=str(tmp_path / "src"))
    assert "\n" not in str(err.value)
    seg, _ = prepare_dataset(store, "partimagenet", source=str(tmp_path / "src"), options={"release": "seg"})
    assert seg.info["partimagenet"]["class_disjoint"] is False
    (tmp_path / "src" / "PartImageNet" / "annotations" / "val.json").unlink()
    with pytest.raises(DatasetError, match="has no val.json"):
        prepare_dataset(store, "partimagenet", source=str(tmp_path / "src"), options={"release": "seg"})


def test_partimagenet_classes_list_holds_158_classes_in_the_published_splits():
    classes = load_class_list("partimagenet-classes-158")
    entries = classes.entries
    assert len(entries) == 158 and len({c["wnid"] for c in entries}) == 158
    counts = {s: sum(c["split"] == s for c in entries) for s in ("train", "val", "test")}
    assert counts == {"train": 109, "val": 19, "test": 30}
    pin = load_class_list("partimagenet-parts-40")
    per_super = {s["name"]: s["classes"] for s in pin.spec["supercategories"]}
    assert {s: sum(c["supercategory"] == s for c in entries) for s in per_super} == per_super
    by_wnid = {c["wnid"]: c for c in entries}
    assert (by_wnid["n01440764"]["name"], by_wnid["n01440764"]["split"]) == ("tench", "train")
    assert by_wnid["n01484850"]["split"] == "val" and by_wnid["n04591713"]["split"] == "test"


@pytest.mark.parametrize(
    ("classes", "options", "message"),
    [
        ({**OOD, "val": ["n02085620"]}, {}, r"val.json: image 4 \('n02085620_1.JPEG'\): class 'n02085620' is not in "
         r"class list partimagenet-classes-158"),
        ({**OOD, "val": ["n02085782"], "test": ["n02099601"]}, {}, r"val.json: image 4 \('n02085782_1.JPEG'\): "
         r"class n02085782 \(Japanese spaniel\) is in the test split of class list partimagenet-classes-158, not val"),
        ({**OOD, "val": ["n02085620"]}, {"release": "seg"}, r"class 'n02085620' is not in class list"),
    ],
)  # fmt: skip
def test_partimagenet_class_outside_the_list_or_its_split_is_refused(store, tmp_path, classes, options, message):
    make_partimagenet(tmp_path / "src", classes)
    with pytest.raises(DatasetError, match=message) as err:
        prepare_dataset(store, "partimagenet", source=str(tmp_path / "src"), options=options)
    assert "\n" not in str(err.value) and "nothing was published" in str(err.value)
    assert list_versions(store, "partimagenet") == []


def test_partimagenet_seg_release_takes_any_listed_class_in_any_split(store, tmp_path):
    make_partimagenet(tmp_path / "src", {**OOD, "val": ["n02085782"], "test": ["n02099601"]})
    prepared, _ = prepare_dataset(store, "partimagenet", source=str(tmp_path / "src"), options={"release": "seg"})
    assert prepared.info["partimagenet"]["classes_per_split"]["val"] == ["n02085782"]


def test_partimagenet_parts_of_another_supercategory_are_an_error_row(store, tmp_path):
    make_partimagenet(tmp_path / "src", {**OOD, "train": ["n01443537", "n01440764", "n04037443"]})  # a fish shown as
    prepared, _ = prepare_dataset(store, "partimagenet", source=str(tmp_path / "src"),  # a quadruped (image 1)
                                  options={"max_error_rate": 0.5})  # fmt: skip
    [error] = prepared.errors().to_pylist()
    assert "parts of Quadruped on an image of n01443537 (goldfish), a Fish" in error["message"]
    assert not [r for r in prepared.manifest().to_pylist() if r["image_id"] == "n01443537_1"]


def test_partimagenet_category_outside_the_list_is_refused(store, tmp_path):
    src = make_partimagenet(tmp_path / "src", OOD)
    path = src / "annotations" / "val.json"
    data = json.loads(path.read_text())
    data["categories"][2]["name"] = "Fish Whisker"
    path.write_text(json.dumps(data))
    with pytest.raises(DatasetError, match=r"val.json: category 10 'Fish Whisker' .* partimagenet-parts-40"):
        prepare_dataset(store, "partimagenet", source=str(tmp_path / "src"))
    assert list_versions(store, "partimagenet") == []


def test_the_cli_exits_2_with_one_line_for_a_value_outside_the_list(tmp_path, partctl):
    src = make_ade20k_part_234(tmp_path / "src")
    write(
        src / "annotations_detectron2_part" / "training" / "ADE_train_00000002.png",
        png(quadrants(32, 32, (0, 234, 0, 0))),
    )
    out = partctl("data", "prepare", "ade20k-part-234", "--source", str(src), "--dest", str(tmp_path / "store"))
    assert out.returncode == 2
    [line] = [ln for ln in out.stderr.splitlines() if "label value 234" in ln]
    assert "annotations_detectron2_part/training/ADE_train_00000002.png" in line and "nothing was published" in line


def test_pascal_part_116_without_its_object_maps_of_a_split_is_refused(store, tmp_path):
    src = make_pascal_part_116(tmp_path / "src")
    shutil.rmtree(src / "annotations_detectron2_obj" / "train")
    with pytest.raises(DatasetError, match=r"no .*annotations_detectron2_obj/train/ \(the OV-PARTS Pascal-Part-116"):
        prepare_dataset(store, "pascal-part-116", source=str(src))
