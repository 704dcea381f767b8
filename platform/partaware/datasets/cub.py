"""CUB-200-2011: keypoint-centred part patches (the paper's CUB part samples) and bird object boxes.

Source: the official release folder or archive (``CUB_200_2011/`` with ``images.txt``,
``train_test_split.txt``, ``classes.txt``, ``image_class_labels.txt``, ``bounding_boxes.txt``,
``parts/parts.txt``, ``parts/part_locs.txt``, ``images/<class>/<name>.jpg``).

Part rows: keypoints 11, 12, 9, 14 (right eye, right leg, left wing, tail), visible only, through
``patches.keypoint_patches`` (protocol §3.3); label = the part name, label_id = its place in the
keypoint list. Split = the official ``train_test_split.txt`` (retrieval uses every image regardless).
Object rows: the bird's box (``object-box``), the whole image, or none.
"""

from __future__ import annotations

import posixpath
import re
from typing import Literal

from pydantic import Field

from partaware.datasets.convert import Conversion, ConverterOptions, LoadedImage, image_error_kind, load_image
from partaware.datasets.converter import Converter
from partaware.datasets.patches import RULES, Keypoint, keypoint_patches
from partaware.errors import DatasetError
from partaware.validation import register_options_model

CONVERTER_VERSION = "cub-1"
PAPER_KEYPOINTS = (11, 12, 9, 14)


@register_options_model
class CubOptions(ConverterOptions):
    keypoints: list[int] = Field(
        list(PAPER_KEYPOINTS), min_length=1, description="1-based CUB part ids, in class order"
    )
    patch_rule: Literal["code", "paper"] = Field("code", description="code: official loader; paper: d x d crop")
    object_samples: Literal["box", "whole-image", "none"] = Field("box", description="object-level rows per image")


def _table(conv: Conversion, base: str, name: str, ncols: int) -> list[tuple[int, list[str]]]:
    """(line number, fields) of a whitespace-separated file; with ``ncols`` > 0 the last field keeps its spaces."""
    rel = posixpath.join(base, name) if base else name
    try:
        text = conv.source.read_text(rel)
    except FileNotFoundError:
        raise DatasetError(f"cub: {conv.source.uri}: required file {rel} is missing") from None
    out = []
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.split(None, ncols - 1) if ncols > 0 else line.split()
        out.append((n, fields))
    return out


def _mapping(conv: Conversion, base: str, name: str, parse) -> dict:
    """``{key: value}`` from ``<id> <rest>`` lines; a line ``parse`` rejects is an error row, not a crash."""
    out = {}
    for n, fields in _table(conv, base, name, 2):
        try:
            key, value = parse(fields)
        except (ValueError, IndexError, KeyError):
            rel = posixpath.join(base, name) if base else name
            conv.error(rel, f"line {n}", "unreadable-annotation", f"cannot parse {' '.join(fields)!r}")
            continue
        out[key] = value
    return out


class CubConverter(Converter):
    name, version, options_model = "cub", CONVERTER_VERSION, CubOptions

    def records(self) -> list[int]:
        conv, opts = self.conv, self.opts
        self.base = base = conv.source.locate("parts/part_locs.txt")
        self.images = _mapping(conv, base, "images.txt", lambda f: (int(f[0]), f[1].strip()))
        self.split = _mapping(
            conv, base, "train_test_split.txt", lambda f: (int(f[0]), {"1": "train", "0": "test"}[f[1].strip()])
        )
        self.classes = _mapping(conv, base, "classes.txt", lambda f: (int(f[0]), re.sub(r"^\d+\.", "", f[1].strip())))
        self.image_class = _mapping(conv, base, "image_class_labels.txt", lambda f: (int(f[0]), int(f[1])))
        self.part_names = part_names = _mapping(conv, base, "parts/parts.txt", lambda f: (int(f[0]), f[1].strip()))
        unknown = [k for k in opts.keypoints if k not in part_names]
        if unknown:
            raise DatasetError(f"cub: keypoints {unknown} are not in parts/parts.txt (valid: {sorted(part_names)})")
        self.boxes: dict[int, list[float]] = {}
        if opts.object_samples == "box":
            for n, f in _table(conv, base, "bounding_boxes.txt", 0):
                try:
                    x, y, w, h = map(float, f[1:5])
                    self.boxes[int(f[0])] = [x, y, x + w, y + h]
                except (ValueError, IndexError):
                    conv.error(self.j("bounding_boxes.txt"), f"line {n}", "unreadable-annotation", f"bad box line {f}")
        self.keypoints = self._keypoints()
        self.class_of = {k: i for i, k in enumerate(opts.keypoints)}
        return sorted(self.images) if opts.object_samples != "none" else sorted(self.keypoints)

    def j(self, *p: str) -> str:
        return posixpath.join(self.base, *p) if self.base else posixpath.join(*p)

    def _keypoints(self) -> dict[int, list[tuple[int, float, float, int]]]:
        """(part id, x, y, line number) per image, visible and of the chosen classes only."""
        wanted, locs = set(self.opts.keypoints), self.j("parts/part_locs.txt")
        keypoints: dict[int, list[tuple[int, float, float, int]]] = {}
        for n, f in _table(self.conv, self.base, "parts/part_locs.txt", 0):
            try:
                image_id, part_id, x, y, visible = int(f[0]), int(f[1]), float(f[2]), float(f[3]), int(float(f[4]))
            except (ValueError, IndexError):
                self.conv.error(locs, f"line {n}", "unreadable-annotation", f"bad keypoint line {f}")
                continue
            if visible and part_id in wanted:
                if image_id not in self.images:
                    self.conv.error(locs, f"line {n}", "unreadable-annotation", f"unknown image id {image_id}")
                    continue
                keypoints.setdefault(image_id, []).append((part_id, x, y, n))
        return keypoints

    def load(self, image_id: int) -> LoadedImage:
        return load_image(self.conv.source, self.j("images", self.images[image_id]), decode=self.opts.decode_images)

    def failed(self, image_id: int, exc: Exception) -> None:
        self.conv.error(self.j("images", self.images[image_id]), f"image {image_id}", image_error_kind(exc), str(exc))

    def rows(self, image_id: int, loaded: LoadedImage) -> list[dict]:
        conv, opts, j = self.conv, self.opts, self.j
        if image_id not in self.split:
            conv.error(j("train_test_split.txt"), f"image {image_id}", "unreadable-annotation", "image has no split")
            return []
        w, h = loaded.width, loaded.height
        kept = []
        for part_id, x, y, n in self.keypoints.get(image_id, []):
            if not (0 <= x <= w and 0 <= y <= h):
                conv.error(
                    j("parts/part_locs.txt"),
                    f"line {n}",
                    "keypoint-outside-image",
                    f"image {image_id} part {part_id} at ({x}, {y}) lies outside the {w}x{h} image",
                )
                continue
            kept.append((part_id, x, y))
        patches = keypoint_patches([Keypoint(x, y) for _, x, y in kept], rule=opts.patch_rule)
        class_id = self.image_class.get(image_id)
        obj_label = self.classes.get(class_id) if class_id is not None else None
        common = {
            "image_id": str(image_id),
            "image_uri": f"images/{self.images[image_id]}",
            "width": w,
            "height": h,
            "split": self.split[image_id],
            "object_label": obj_label,
            "object_label_id": class_id - 1 if obj_label is not None else None,
        }
        image_rows = []
        for p in patches:
            part_id = kept[p.index][0]
            image_rows.append(
                {
                    **common,
                    "region_id": f"{image_id}/kp{part_id:02d}",
                    "level": "part",
                    "label": self.part_names[part_id],
                    "label_id": self.class_of[part_id],
                    "box": [float(v) for v in p.box],
                    "keypoint": [p.x, p.y],
                    "keypoint_visible": True,
                    "sample_rule": RULES[opts.patch_rule],
                }
            )
        if opts.object_samples != "none" and obj_label is not None:
            box = self.boxes.get(image_id) if opts.object_samples == "box" else None
            if opts.object_samples == "box" and box is None:
                conv.error(j("bounding_boxes.txt"), f"image {image_id}", "unreadable-annotation", "no bounding box")
            else:
                image_rows.append(
                    {
                        **common,
                        "region_id": f"{image_id}/object",
                        "level": "object",
                        "label": obj_label,
                        "label_id": class_id - 1,
                        "box": box,
                        "sample_rule": "object-box" if box is not None else "whole-image",
                    }
                )
        if image_rows:
            conv.build.add_file(common["image_uri"], loaded.data)
        return image_rows

    def info(self) -> dict:
        return {
            "description": "CUB-200-2011 keypoint-centred part patches (protocol §3.3) and bird objects",
            "part_classes": [self.part_names[k] for k in self.opts.keypoints],
            "object_classes": [self.classes[k] for k in sorted(self.classes)],
            "patch_rule": RULES[self.opts.patch_rule],
            "crop": "boxes may extend past the image; extraction fills the outside with black (PIL crop)",
        }


prepare_cub = CubConverter.prepare
