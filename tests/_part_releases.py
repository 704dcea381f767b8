"""Tiny part-dataset releases written in their real layouts (OV-PARTS ADE20K-Part-234 and Pascal-Part-116,
PartImageNet): the files each release has, at a few pixels and images."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
from PIL import Image

ADE_IGNORE, VOC_IGNORE = 65535, 255


def write(path: Path, data: bytes | str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data if isinstance(data, bytes) else data.encode())


def jpeg(w: int, h: int, seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(buf, format="JPEG")
    return buf.getvalue()


def png(array: np.ndarray) -> bytes:
    """8-bit when the values fit, else 16-bit (as ADE20K-Part-234's 65535 ignore needs)."""
    array = np.asarray(array)
    buf = io.BytesIO()
    Image.fromarray(array.astype(np.uint8 if array.max() <= 255 else np.uint16)).save(buf, format="PNG")
    return buf.getvalue()


def quadrants(w: int, h: int, values: tuple[int, int, int, int]) -> np.ndarray:
    """A map whose four quadrants hold ``values`` (top-left, top-right, bottom-left, bottom-right)."""
    m = np.zeros((h, w), dtype=np.int64)
    m[: h // 2, : w // 2], m[: h // 2, w // 2 :], m[h // 2 :, : w // 2], m[h // 2 :, w // 2 :] = values
    return m


#: person's arm (0, base), door's knob (11, base), bus's wheel (141, novel), airplane's wing (205, base)
ADE_VALUES = [(0, 11, 141, ADE_IGNORE), (205, 0, ADE_IGNORE, 141), (11, 205, 0, ADE_IGNORE)]


def make_ade20k_part_234(root: Path, *, train: int = 3, val: int = 2, size: int = 32) -> Path:
    """``ADE20K-Part-234/`` as the OV-PARTS README lays it out; returns the release folder."""
    rel = root / "Datasets" / "ADE20K-Part-234"
    for split, folder, n in (("train", "training", train), ("val", "validation", val)):
        images = []
        for i in range(n):
            stem = f"ADE_{split}_{i + 1:08d}"
            write(rel / "images" / folder / f"{stem}.jpg", jpeg(size, size, seed=i))
            labels = quadrants(size, size, ADE_VALUES[i % len(ADE_VALUES)])
            write(rel / "annotations_detectron2_part" / folder / f"{stem}.png", png(labels))
            images.append({"id": i + 1, "file_name": f"{stem}.jpg", "width": size, "height": size})
        instances = {"images": images, "annotations": [], "categories": []}
        write(rel / f"ade20k_instance_{split}.json", json.dumps(instances))
    write(rel / "images" / "training" / "ADE_train_99999999.jpg", jpeg(size, size))  # an image without parts
    write(rel / "train_16shot.json", json.dumps([{"file_name": "images/training/ADE_train_00000001.jpg"}]))
    return rel


#: parts: aeroplane's body (0), bird's wing (11, novel), person's head (83); objects: aeroplane 0, bird 2, person 14
VOC_PARTS = [(0, 11, 83, VOC_IGNORE), (83, VOC_IGNORE, 0, 11)]
VOC_OBJECTS = [(0, 2, 14, VOC_IGNORE), (14, VOC_IGNORE, 0, 2)]


def make_pascal_part_116(root: Path, *, train: int = 2, val: int = 2, size: int = 24) -> Path:
    """``Pascal-Part-116/`` as the OV-PARTS README lays it out; returns the release folder."""
    rel = root / "Datasets" / "Pascal-Part-116"
    for split, n in (("train", train), ("val", val)):
        for i in range(n):
            stem = f"2008_{int(split == 'val')}{i:05d}"
            write(rel / "images" / split / f"{stem}.jpg", jpeg(size, size, seed=i))
            write(
                rel / "annotations_detectron2_part" / split / f"{stem}.png",
                png(quadrants(size, size, VOC_PARTS[i % 2])),
            )
            write(
                rel / "annotations_detectron2_obj" / split / f"{stem}.png",
                png(quadrants(size, size, VOC_OBJECTS[i % 2])),
            )
    write(rel / "train_16shot.json", json.dumps([]))
    return rel


PARTIMAGENET_CATEGORIES = [  # a few of the release's categories, as COCO-style JSON names them
    {"id": 0, "name": "Quadruped Head", "supercategory": "Quadruped"},
    {"id": 1, "name": "Quadruped Body", "supercategory": "Quadruped"},
    {"id": 10, "name": "Fish Body", "supercategory": "Fish"},
    {"id": 11, "name": "Fish Fin", "supercategory": "Fish"},
    {"id": 24, "name": "Car Body", "supercategory": "Car"},
    {"id": 25, "name": "Car Tier", "supercategory": "Car"},
]


def square(x0: float, y0: float, x1: float, y1: float) -> list[list[float]]:
    return [[x0, y0, x1, y0, x1, y1, x0, y1]]


def make_partimagenet(root: Path, classes: dict[str, list[str]], *, size: int = 32) -> Path:
    """``PartImageNet/{annotations/<split>.json, images/<split>/<wnid>_<n>.JPEG}``; ``classes``: split -> wnids.

    Image j is a quadruped, a fish or a car (j mod 3): its body over the whole image and its head (fin, tire) in
    the top-left quadrant.
    """
    rel = root / "PartImageNet"
    next_id = 1
    for split, wnids in classes.items():
        images, annotations = [], []
        for j, wnid in enumerate(wnids):
            image_id, name = next_id, f"{wnid}_{j + 1}.JPEG"
            next_id += 1
            images.append({"id": image_id, "file_name": name, "width": size, "height": size})
            write(rel / "images" / split / name, jpeg(size, size, seed=image_id))
            body, small = ((1, 0), (10, 11), (24, 25))[j % 3]
            for k, (cat, box) in enumerate(((body, (0, 0, size - 1, size - 1)), (small, (0, 0, size / 2, size / 2)))):
                x0, y0, x1, y1 = box
                annotations.append({"id": image_id * 10 + k, "image_id": image_id, "category_id": cat,
                                    "bbox": [x0, y0, x1 - x0, y1 - y0], "segmentation": square(*box),
                                    "area": (x1 - x0) * (y1 - y0), "iscrowd": 0})  # fmt: skip
        data = {"images": images, "annotations": annotations, "categories": PARTIMAGENET_CATEGORIES}
        write(rel / "annotations" / f"{split}.json", json.dumps(data))
    return rel
