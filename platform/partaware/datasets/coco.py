"""COCO 2017 person keypoints: keypoint-centred part patches (the paper's COCO part samples).

Source: the official layout, ``annotations/person_keypoints_{train,val}2017.json`` with images in
``images/{train,val}2017/`` or ``{train,val}2017/`` beside ``annotations/``.

Per image (protocol §3.3): keypoints 1, 11, 16 (nose, right wrist, left ankle) with ``v == 2``;
a person counts only with at least two such keypoints; the keypoints of every counted person of the
image are pooled; distances are taken over ``(x, y, annotation id)`` (the official code's quirk),
then ``patches.keypoint_patches``. Split: train2017 -> train, val2017 -> val (part classification
trains on train2017 and evaluates on val2017; retrieval uses train2017).
"""

from __future__ import annotations

import json
import posixpath
from typing import Literal

from pydantic import Field

from partaware.datasets.convert import (
    Conversion,
    ConverterOptions,
    image_error_kind,
    load_image,
    parse_options,
    run_conversion,
)
from partaware.datasets.patches import RULES, Keypoint, keypoint_patches
from partaware.datasets.store import PreparedDataset
from partaware.errors import DatasetError
from partaware.spec import register_options_model
from partaware.storage import StorageRoot

CONVERTER_VERSION = "coco-1"
KEYPOINT_NAMES = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder", "left_elbow",
    "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle",
    "right_ankle",
)  # fmt: skip
PAPER_KEYPOINTS = (1, 11, 16)
SPLITS = {"train2017": "train", "val2017": "val"}


@register_options_model
class CocoOptions(ConverterOptions):
    keypoints: list[int] = Field(list(PAPER_KEYPOINTS), min_length=1, description="1-based COCO keypoint ids")
    patch_rule: Literal["code", "paper"] = Field("code", description="code: official loader; paper: d x d crop")
    splits: list[Literal["train2017", "val2017"]] = Field(list(SPLITS), min_length=1)
    min_keypoints_per_person: int = Field(2, ge=1, description="the official code needs 2")
    object_samples: Literal["box", "none"] = Field("none", description="person boxes of counted persons")


def prepare_coco(
    root: StorageRoot, *, source=None, options=None, workers=None, progress=None
) -> tuple[PreparedDataset, bool]:
    opts = parse_options(CocoOptions, "coco", options)
    bad = [k for k in opts.keypoints if not 1 <= k <= len(KEYPOINT_NAMES)]
    if bad:
        raise DatasetError(f"coco: keypoint ids {bad} are not in 1..{len(KEYPOINT_NAMES)}")
    return run_conversion(
        root,
        "coco",
        source=source,
        options=opts,
        converter_version=CONVERTER_VERSION,
        workers=workers,
        progress=progress,
        body=_convert,
    )


def _image_folder(conv: Conversion, base: str, split: str) -> str:
    for cand in (posixpath.join(base, "images", split), posixpath.join(base, split)):
        cand = cand.lstrip("/")
        if conv.source.under(cand):
            return cand
    raise DatasetError(f"coco: {conv.source.uri}: no image folder images/{split}/ or {split}/ beside annotations/")


def _convert(conv: Conversion) -> tuple[list[dict], dict]:
    opts: CocoOptions = conv.options
    ann_names = {s: f"annotations/person_keypoints_{s}.json" for s in opts.splits}
    present = [s for s in opts.splits if any(f.endswith(ann_names[s]) for f in conv.source.files())]
    if not present:
        raise DatasetError(f"coco: {conv.source.uri} holds none of {sorted(ann_names.values())}")
    class_of = {k: i for i, k in enumerate(opts.keypoints)}
    work = []  # (split, image record, [(ann, [(kp id, x, y)])])
    for split in present:
        base = conv.source.locate(ann_names[split])
        ann_file = posixpath.join(base, ann_names[split]).lstrip("/")
        try:
            data = json.loads(conv.source.read(ann_file))
            image_recs = {im["id"]: im for im in data["images"]}
            annotations = data["annotations"]
        except (ValueError, KeyError, TypeError) as e:
            raise DatasetError(f"coco: {ann_file} is not a COCO keypoint file: {e}") from e
        folder = _image_folder(conv, base, split)
        persons: dict[int, list] = {}
        for i, ann in enumerate(annotations):
            record = f"annotation {ann.get('id', f'#{i}')}" if isinstance(ann, dict) else f"annotation #{i}"
            try:
                kps, image_id = ann["keypoints"], ann["image_id"]
                int(ann["id"])  # an annotation without an id cannot be named in distances
                if len(kps) != 3 * len(KEYPOINT_NAMES):
                    raise ValueError(f"keypoints has {len(kps)} values, expected {3 * len(KEYPOINT_NAMES)}")
                chosen = [
                    (k, float(kps[3 * (k - 1)]), float(kps[3 * (k - 1) + 1]))
                    for k in range(1, len(KEYPOINT_NAMES) + 1)
                    if k in class_of and kps[3 * (k - 1) + 2] >= 2
                ]
            except (KeyError, TypeError, ValueError) as e:
                conv.error(ann_file, record, "unreadable-annotation", str(e))
                continue
            if image_id not in image_recs:
                conv.error(ann_file, record, "unreadable-annotation", f"unknown image_id {image_id}")
                continue
            if len(chosen) >= opts.min_keypoints_per_person:  # others can never count: skip their image early
                persons.setdefault(image_id, []).append((ann, chosen))
        for image_id in sorted(persons):
            work.append((split, folder, ann_file, image_recs[image_id], persons[image_id]))

    conv.total = len(work)
    rows: list[dict] = []

    def load(item):
        _, folder, _, rec, _ = item
        return load_image(conv.source, posixpath.join(folder, rec["file_name"]), decode=opts.decode_images)

    for (split, folder, ann_file, rec, anns), loaded in conv.map(load, work):
        conv.records += 1
        conv.tick()
        image_file = posixpath.join(folder, rec["file_name"])
        if isinstance(loaded, Exception):
            conv.error(image_file, f"image {rec['id']}", image_error_kind(loaded), str(loaded))
            continue
        w, h = loaded.width, loaded.height
        pooled: list[tuple[dict, int, float, float]] = []
        counted = []
        for ann, chosen in anns:
            inside = []
            for k, x, y in chosen:
                if 0 <= x <= w and 0 <= y <= h:
                    inside.append((k, x, y))
                else:
                    conv.error(
                        ann_file,
                        f"annotation {ann['id']} keypoint {k}",
                        "keypoint-outside-image",
                        f"image {rec['id']}: ({x}, {y}) lies outside the {w}x{h} image",
                    )
            if len(inside) >= opts.min_keypoints_per_person:
                counted.append(ann)
                pooled.extend((ann, k, x, y) for k, x, y in inside)
        patches = keypoint_patches([Keypoint(x, y, float(a["id"])) for a, _, x, y in pooled], rule=opts.patch_rule)
        common = {
            "image_id": str(rec["id"]),
            "image_uri": f"images/{split}/{rec['file_name']}",
            "width": w,
            "height": h,
            "split": SPLITS[split],
            "object_label": "person",
            "object_label_id": 0,
        }
        image_rows = []
        for p in patches:
            ann, k, _, _ = pooled[p.index]
            image_rows.append(
                {
                    **common,
                    "region_id": f"{split}/{rec['id']}/{ann['id']}/kp{k:02d}",
                    "level": "part",
                    "label": KEYPOINT_NAMES[k - 1],
                    "label_id": class_of[k],
                    "box": [float(v) for v in p.box],
                    "keypoint": [p.x, p.y],
                    "keypoint_visible": True,
                    "sample_rule": RULES[opts.patch_rule],
                }
            )
        if opts.object_samples == "box":
            for ann in counted:
                x, y, bw, bh = (float(v) for v in ann.get("bbox", (0, 0, 0, 0)))
                image_rows.append(
                    {
                        **common,
                        "region_id": f"{split}/{rec['id']}/{ann['id']}/person",
                        "level": "object",
                        "label": "person",
                        "label_id": 0,
                        "box": [x, y, x + bw, y + bh],
                        "sample_rule": "object-box",
                    }
                )
        if image_rows:
            conv.build.add_file(common["image_uri"], loaded.data)
            rows.extend(image_rows)
    info = {
        "description": "COCO 2017 person keypoint-centred part patches (protocol §3.3)",
        "part_classes": [KEYPOINT_NAMES[k - 1] for k in opts.keypoints],
        "object_classes": ["person"],
        "patch_rule": RULES[opts.patch_rule],
        "distance_quirk": "distances over (x, y, annotation id), as the official code",
        "crop": "boxes may extend past the image; extraction fills the outside with black (PIL crop)",
    }
    return rows, info
