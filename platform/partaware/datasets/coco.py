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
import math
import posixpath
from typing import Any, Literal

from pydantic import Field, field_validator

from partaware.datasets.convert import Conversion, ConverterOptions, LoadedImage, image_error_kind, load_image
from partaware.datasets.converter import Converter
from partaware.datasets.patches import RULES, Keypoint, keypoint_patches
from partaware.errors import DatasetError, UnsafePathError
from partaware.storage import safe_relpath
from partaware.validation import register_options_model

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

    @field_validator("keypoints")
    @classmethod
    def _known_keypoints(cls, keypoints: list[int]) -> list[int]:
        bad = [k for k in keypoints if not 1 <= k <= len(KEYPOINT_NAMES)]
        if bad:
            raise ValueError(f"keypoint ids {bad} are not in 1..{len(KEYPOINT_NAMES)}")
        return keypoints


def _image_folder(conv: Conversion, base: str, split: str) -> str:
    for cand in (posixpath.join(base, "images", split), posixpath.join(base, split)):
        cand = cand.lstrip("/")
        if conv.source.under(cand):
            return cand
    raise DatasetError(f"coco: {conv.source.uri}: no image folder images/{split}/ or {split}/ beside annotations/")


class CocoConverter(Converter):
    name, version, options_model = "coco", CONVERTER_VERSION, CocoOptions

    def records(self) -> list[tuple]:
        """(split, source path, version path, annotation file, image record, [(ann, [(kp id, x, y)])])."""
        conv, opts = self.conv, self.opts
        ann_names = {s: f"annotations/person_keypoints_{s}.json" for s in opts.splits}
        present = [s for s in opts.splits if any(f.endswith(ann_names[s]) for f in conv.source.files())]
        if not present:
            raise DatasetError(f"coco: {conv.source.uri} holds none of {sorted(ann_names.values())}")
        self.class_of = {k: i for i, k in enumerate(opts.keypoints)}
        work = []
        for split in present:
            base = conv.source.locate(ann_names[split])
            ann_file = posixpath.join(base, ann_names[split]).lstrip("/")
            image_recs, annotations = _read_annotation_file(conv, ann_file)
            folder = _image_folder(conv, base, split)
            persons = self._persons(ann_file, image_recs, annotations)
            for image_id in sorted(persons, key=lambda x: (isinstance(x, str), x)):
                rec = image_recs[image_id]
                try:
                    path, uri = _image_paths(folder, split, rec["file_name"])
                except UnsafePathError as e:
                    conv.records += 1  # examined, and bad
                    conv.error(ann_file, f"image {image_id}", "unsafe-path", f"file_name {rec['file_name']!r}: {e}")
                    continue
                work.append((split, path, uri, ann_file, rec, persons[image_id]))
        return work

    def _persons(self, ann_file: str, image_recs: dict, annotations: list) -> dict[int | str, list]:
        """The persons of each image with enough chosen keypoints (others can never count: skip them early)."""
        persons: dict[int | str, list] = {}
        for i, ann in enumerate(annotations):
            record = f"annotation {ann.get('id', f'#{i}')}" if isinstance(ann, dict) else f"annotation #{i}"
            try:
                chosen, image_id = _annotation_keypoints(ann, self.class_of, boxes=self.opts.object_samples == "box")
            except (KeyError, TypeError, ValueError) as e:
                self.conv.error(ann_file, record, "unreadable-annotation", _problem(e))
                continue
            if image_id not in image_recs:
                self.conv.error(ann_file, record, "unreadable-annotation", f"unknown image_id {image_id!r}")
                continue
            if image_recs[image_id] is None:  # its image record is bad: already an error row
                continue
            if len(chosen) >= self.opts.min_keypoints_per_person:
                persons.setdefault(image_id, []).append((ann, chosen))
        return persons

    def load(self, item: tuple) -> LoadedImage:
        return load_image(self.conv.source, item[1], decode=self.opts.decode_images)

    def failed(self, item: tuple, exc: Exception) -> None:
        self.conv.error(item[1], f"image {item[4]['id']}", image_error_kind(exc), str(exc))

    def rows(self, item: tuple, loaded: LoadedImage) -> list[dict]:
        conv, opts = self.conv, self.opts
        split, _, image_uri, ann_file, rec, anns = item
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
            "image_uri": image_uri,
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
                    "label_id": self.class_of[k],
                    "box": [float(v) for v in p.box],
                    "keypoint": [p.x, p.y],
                    "keypoint_visible": True,
                    "sample_rule": RULES[opts.patch_rule],
                }
            )
        if opts.object_samples == "box":
            for ann in counted:
                x, y, bw, bh = (float(v) for v in ann["bbox"])  # checked by _annotation_keypoints
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
        if image_rows and image_uri not in conv.build.checksums:  # two records may name one file (``../``)
            conv.build.add_file(image_uri, loaded.data)
        return image_rows

    def info(self) -> dict:
        return {
            "description": "COCO 2017 person keypoint-centred part patches (protocol §3.3)",
            "part_classes": [KEYPOINT_NAMES[k - 1] for k in self.opts.keypoints],
            "object_classes": ["person"],
            "patch_rule": RULES[self.opts.patch_rule],
            "distance_quirk": "distances over (x, y, annotation id), as the official code",
            "crop": "boxes may extend past the image; extraction fills the outside with black (PIL crop)",
        }


prepare_coco = CocoConverter.prepare


def _read_annotation_file(conv: Conversion, ann_file: str) -> tuple[dict[int | str, dict | None], list]:
    """``{image id: image record}`` and the annotations of one file; a bad image record is an error row
    (and maps to None: its annotations are skipped, not counted again)."""
    try:
        data = json.loads(conv.source.read(ann_file))
        images, annotations = data["images"], data["annotations"]
        if not isinstance(images, list) or not isinstance(annotations, list):
            raise TypeError("'images' and 'annotations' must be lists")
    except (ValueError, KeyError, TypeError) as e:
        raise DatasetError(f"coco: {ann_file} is not a COCO keypoint file: {_problem(e)}") from e
    records: dict[int | str, dict | None] = {}
    for i, im in enumerate(images):
        if not (isinstance(im, dict) and isinstance(im.get("file_name"), str) and isinstance(im.get("id"), int | str)):
            conv.records += 1  # a bad image record is a record examined, so the error rate stays <= 100%
        image_id = im.get("id") if isinstance(im, dict) else None
        record = f"image {image_id}" if isinstance(image_id, int | str) else f"image #{i}"
        if not isinstance(im, dict) or not isinstance(image_id, int | str) or isinstance(image_id, bool):
            conv.error(ann_file, record, "unreadable-annotation", "an image record needs an integer or string 'id'")
        elif not isinstance(im.get("file_name"), str) or not im["file_name"].strip():
            problem = f"must be a non-empty string (got {im['file_name']!r})" if "file_name" in im else "is missing"
            conv.error(ann_file, record, "unreadable-annotation", f"'file_name' {problem}")
            records[image_id] = None
        else:
            records[image_id] = im
    return records, annotations


def _annotation_keypoints(
    ann: Any, class_of: dict[int, int], *, boxes: bool
) -> tuple[list[tuple[int, float, float]], int | str]:
    """The chosen visible keypoints ``(id, x, y)`` and the image id of one annotation; raises on a bad one."""
    if not isinstance(ann, dict):
        raise TypeError(f"an annotation must be a mapping, got {type(ann).__name__}")
    kps, image_id = ann["keypoints"], ann["image_id"]
    int(ann["id"])  # an annotation without an id cannot be named in distances
    if not isinstance(image_id, int | str):
        raise TypeError(f"image_id must be an integer or a string, got {image_id!r}")
    if not isinstance(kps, list) or len(kps) != 3 * len(KEYPOINT_NAMES):
        n = len(kps) if isinstance(kps, list) else type(kps).__name__
        raise ValueError(f"keypoints has {n} values, expected {3 * len(KEYPOINT_NAMES)}")
    if boxes:
        box = ann.get("bbox")
        if not isinstance(box, list) or len(box) != 4 or not all(_finite(v) for v in box):
            raise ValueError(f"bbox must be 4 numbers [x, y, width, height], got {box!r}")
    chosen = [
        (k, float(kps[3 * (k - 1)]), float(kps[3 * (k - 1) + 1]))
        for k in range(1, len(KEYPOINT_NAMES) + 1)
        if k in class_of and kps[3 * (k - 1) + 2] >= 2
    ]
    return chosen, image_id


def _image_paths(folder: str, split: str, file_name: str) -> tuple[str, str]:
    """The image's path in the source and its path in the prepared version.

    ``file_name`` may hold ``../`` as long as it stays inside the source (``UnsafePathError`` otherwise);
    inside the split's folder the version keeps ``images/<split>/<name>``, elsewhere ``images/<path>``.
    """
    path = safe_relpath(posixpath.join(folder, file_name))
    inside = posixpath.relpath(path, folder) if folder else path
    if not inside.startswith("../"):
        return path, safe_relpath(f"images/{split}/{inside}")
    return path, safe_relpath(f"images/{path}")


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _problem(exc: Exception) -> str:
    """A readable reason: a ``KeyError`` says which field is missing."""
    return f"missing field {exc.args[0]!r}" if isinstance(exc, KeyError) and exc.args else str(exc)
