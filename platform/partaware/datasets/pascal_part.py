"""Pascal-Part (193 parts) and Pascal-Object (16 classes), rendered from ``Annotations_Part/*.mat``.

Source: the Pascal-Part release (Chen et al. 2014) beside VOC2010: ``Annotations_Part/<id>.mat``,
``JPEGImages/<id>.jpg`` and ``ImageSets/Main/{train,val}.txt`` (4,998 / 5,105 images), found anywhere
under ``--source``. Each ``.mat`` holds a struct ``anno`` with ``objects(k)``: ``class``, ``class_ind``,
``mask`` and ``parts(j)`` (``part_name``, ``mask``), read with ``scipy.io.loadmat``.

Label maps are rendered per image, objects and parts painted in file order (a later mask wins):
- part level: value = the part's id in the mapping (0 = background or a pixel of an object no part
  covers). The default mapping is the shipped list ``partaware-pascal-part-193``: the 16 classes with
  parts in VOC order, each class's parts in the order of the release's ``part2ind.m``, the instance
  suffix dropped (``wheel_3`` -> ``wheel``): this platform's reading, not the paper's ids, which are not
  published (protocol §6). ``part_mapping_file`` (JSON ``{"class": {"part": id}}``, ids 1..K, shared ids
  merge parts) uses another mapping.
- object level: value = 1 + index among the 16 classes with parts; boat, chair, diningtable and sofa,
  which have no parts, stay 0 (ignored), as in the paper's Pascal-Object-16.

Zhu-compatible mode: if the source holds the authors' processed release (``{img,ann}/{train,val}``
PNGs) instead, those maps are taken as they are, ids unchanged (for Table 4). Their names are not
published, so part classes are shown as ``class 17 (unnamed in the release)`` and ``dataset.json``
records the list ``zhu-pascal-part-193``; no mapping from those ids to the named OV-PARTS list
(``pascal-part-116``) is published. Every ``dataset.json`` names the list used (``class_lists``).
"""

from __future__ import annotations

import io
import json
import posixpath
import re
from typing import Any, ClassVar

import numpy as np
import scipy.io
from pydantic import Field

from partaware.datasets.classlists import load_class_list, options_class_list
from partaware.datasets.convert import (
    Conversion,
    ConverterOptions,
    LoadedImage,
    encode_png,
    image_error_kind,
    label_map_info,
    load_image,
)
from partaware.datasets.converter import Converter, convert_records
from partaware.datasets.labelmaps import convert_label_map_pairs, find_dir, find_pairs, label_map_row
from partaware.errors import DatasetError
from partaware.storage import filesystem_for
from partaware.validation import register_options_model

CONVERTER_VERSION = "pascal-part-2"
DEFAULT_LIST = "partaware-pascal-part-193"
ZHU_LIST = "zhu-pascal-part-193"
PROCESSED_LAYOUT = {"train": ("img/train", "ann/train"), "val": ("img/val", "ann/val")}


def _parts_of(class_list) -> dict[str, tuple[str, ...]]:
    parts: dict[str, list[str]] = {}
    for c in class_list.entries:
        parts.setdefault(c["object"], []).append(c["part"])
    return {cls: tuple(names) for cls, names in parts.items()}


#: Part names per class (instance suffixes dropped), in the order of the release's part2ind.m (shipped list).
PARTS: dict[str, tuple[str, ...]] = _parts_of(load_class_list(DEFAULT_LIST))
OBJECT_CLASSES: tuple[str, ...] = tuple(PARTS)  # the 16 VOC classes that have parts
_SUFFIX = re.compile(r"_\d+$")


def default_part_mapping() -> dict[str, dict[str, int]]:
    """``{class: {part: id}}`` with ids 1..193 (0 stays background), as the shipped list numbers them."""
    mapping: dict[str, dict[str, int]] = {}
    for c in load_class_list(DEFAULT_LIST).entries:
        mapping.setdefault(c["object"], {})[c["part"]] = int(c["id"])
    return mapping


@register_options_model
class PascalPartOptions(ConverterOptions):
    part_mapping_file: str | None = Field(
        None, description="JSON {class: {part: id}} (a path in the source, a local path or a URI); default: 193 ids"
    )
    strip_instance_suffix: bool = Field(True, description="wheel_3 -> wheel before the mapping lookup")
    image_sets: dict[str, str] = Field(
        {"train": "ImageSets/Main/train.txt", "val": "ImageSets/Main/val.txt"},
        description="split -> list file of image ids (found anywhere in the source)",
    )


class PascalPartConverter(Converter):
    """Pascal-Part label maps rendered from ``Annotations_Part/*.mat``, or the authors' processed PNGs."""

    name, version, options_model = "pascal-part", CONVERTER_VERSION, PascalPartOptions
    level: ClassVar[str] = "part"

    @classmethod
    def extra_recipe(cls) -> dict | None:
        if cls.level != "part":
            return None
        return {"class_lists": {c.name: c.sha256 for c in (load_class_list(n) for n in (DEFAULT_LIST, ZHU_LIST))}}

    def records(self) -> list:
        """(stem, split) per ``.mat`` in a split list; ``Pair``s for the processed layout (``self.processed``)."""
        conv, level = self.conv, self.level
        self.mapping = _load_mapping(conv) if level == "part" else None
        self.classes = _class_names(self.mapping) if self.mapping is not None else list(OBJECT_CLASSES)
        files = conv.source.files()
        ann_dir = find_dir(files, "Annotations_Part")
        self.processed = ann_dir is None
        self._info = _info(conv, level, self.classes, processed=self.processed)
        if self.processed:  # the authors' processed PNG layout (Zhu-compatible: ids as released)
            return find_pairs(conv, [PROCESSED_LAYOUT])
        self.img_dir = find_dir(files, "JPEGImages")
        if self.img_dir is None:
            raise DatasetError(f"{conv.name}: {conv.source.uri} has Annotations_Part/ but no JPEGImages/ (VOC2010)")
        splits = _read_splits(conv)
        self.mats = {
            posixpath.splitext(posixpath.basename(f))[0]: f
            for f in files
            if f.startswith(ann_dir + "/") and f.endswith(".mat")
        }
        work = [(stem, splits[stem]) for stem in sorted(self.mats) if stem in splits]
        conv.stats["unsplit_annotations"] = len(self.mats) - len(work)
        return work

    def convert(self) -> tuple[list[dict], dict]:
        work = self.records()
        if self.processed:
            return convert_label_map_pairs(self.conv, work, level=self.level, num_classes=len(self.classes)), self._info
        return convert_records(self.conv, work, self.load, self.rows, self.failed), self._info

    def load(self, item: tuple[str, str]) -> tuple[LoadedImage, bytes]:
        stem, _ = item
        image = load_image(
            self.conv.source, posixpath.join(self.img_dir, f"{stem}.jpg"), decode=self.opts.decode_images
        )
        return image, self.conv.source.read(self.mats[stem])

    def failed(self, item: tuple[str, str], exc: Exception) -> None:
        stem, _ = item
        self.conv.error(posixpath.join(self.img_dir, f"{stem}.jpg"), stem, image_error_kind(exc), str(exc))

    def rows(self, item: tuple[str, str], loaded: tuple[LoadedImage, bytes]) -> list[dict]:
        (stem, split), (image, mat_bytes) = item, loaded
        conv, level, mat = self.conv, self.level, self.mats[stem]
        try:
            objects = read_objects(mat_bytes)
            label_map, unknown = render_label_map(
                objects, level, self.mapping, strip_suffix=self.opts.strip_instance_suffix
            )
        except _PartError as e:
            conv.error(mat, e.record, e.kind, str(e))
            return []
        except Exception as e:  # noqa: BLE001 (a corrupt .mat is one bad record)
            conv.error(mat, stem, "unreadable-annotation", f"cannot read Annotations_Part struct: {e}")
            return []
        if label_map.shape != (image.height, image.width):
            message = f"masks are {label_map.shape[::-1]}, image is {(image.width, image.height)}"
            conv.error(mat, stem, "label-map-size", message)
            return []
        for record, message in unknown:
            conv.error(mat, record, "unknown-part", message, item=stem)
        image_uri = conv.build.add_file(f"images/{split}/{stem}.jpg", image.data)
        map_uri = conv.build.add_file(f"labels/{level}/{split}/{stem}.png", encode_png(label_map))
        return [label_map_row(split, stem, image_uri, image, map_uri, level)]


class PascalObjectConverter(PascalPartConverter):
    name, level = "pascal-object", "object"


prepare_pascal_part = PascalPartConverter.prepare
prepare_pascal_object = PascalObjectConverter.prepare


def _info(conv: Conversion, level: str, classes: list[str], *, processed: bool) -> dict:
    """``dataset.json``'s label-map record, naming the class list used (a part-level list is copied in)."""
    record, source = None, "VOC"
    if level == "part" and conv.options.part_mapping_file:
        record, source = options_class_list(classes, "part_mapping_file"), "part_mapping_file"
    elif level == "part":
        used = load_class_list(ZHU_LIST if processed else DEFAULT_LIST)
        used.add_to(conv.build)
        record = used.record()
        if processed:
            classes = used.names()
            source = f"class list {used.name} (ids as released, names unpublished)"
        else:
            source = f"class list {used.name} (default mapping, part2ind.m order)"
    info = {
        "description": f"Pascal-Part (VOC2010) {level} label maps"
        + (" as released by Zhu et al." if processed and level == "part" else ""),
        "label_maps": label_map_info(level, classes, names_source=source, class_list=record),
    }
    if record is not None:
        info["class_lists"] = {level: record}
    return info


class _PartError(Exception):
    def __init__(self, kind: str, record: str, message: str):
        super().__init__(message)
        self.kind, self.record = kind, record


def _as_list(value: Any) -> list:
    """A MATLAB struct array (squeezed by loadmat) as a list: one struct, an array of them, or empty."""
    if isinstance(value, np.ndarray):
        return list(value.ravel())
    return [value]


def read_objects(mat_bytes: bytes) -> list[dict]:
    """``anno.objects`` of one Annotations_Part file as ``[{class, mask, parts: [(name, mask)]}]``."""
    data = scipy.io.loadmat(io.BytesIO(mat_bytes), squeeze_me=True, struct_as_record=False)
    anno = data["anno"]
    objects = []
    for obj in _as_list(anno.objects):
        parts = [(str(p.part_name), np.asarray(p.mask)) for p in _as_list(obj.parts) if hasattr(p, "part_name")]
        objects.append({"class": str(getattr(obj, "class")), "mask": np.asarray(obj.mask), "parts": parts})
    return objects


def render_label_map(
    objects: list[dict], level: str, mapping: dict[str, dict[str, int]] | None, *, strip_suffix: bool = True
) -> tuple[np.ndarray, list[tuple[str, str]]]:
    """Paint objects (object level) or their parts (part level) in order; later masks win.

    Returns the map and the parts not in the mapping, as ``(record, message)`` (their pixels stay 0).
    """
    if not objects:
        raise _PartError("unreadable-annotation", "anno.objects", "the file has no objects")
    shape = objects[0]["mask"].shape
    out = np.zeros(shape, dtype=np.int32)
    unknown: list[tuple[str, str]] = []
    for k, obj in enumerate(objects, start=1):
        if obj["mask"].shape != shape:
            raise _PartError("unreadable-annotation", f"objects({k})", f"mask shape {obj['mask'].shape} != {shape}")
        if level == "object":
            if obj["class"] in OBJECT_CLASSES:
                out[obj["mask"] > 0] = OBJECT_CLASSES.index(obj["class"]) + 1
            continue
        ids = mapping.get(obj["class"], {})
        for j, (name, mask) in enumerate(obj["parts"], start=1):
            key = _SUFFIX.sub("", name) if strip_suffix else name
            if key not in ids:
                unknown.append(
                    (f"objects({k}).parts({j})", f"part {name!r} of class {obj['class']!r} is not in the mapping")
                )
                continue
            if mask.shape != shape:
                raise _PartError(
                    "unreadable-annotation", f"objects({k}).parts({j})", f"mask shape {mask.shape} != {shape}"
                )
            out[mask > 0] = ids[key]
    return out, unknown


def _load_mapping(conv: Conversion) -> dict[str, dict[str, int]]:
    ref = conv.options.part_mapping_file
    if ref is None:
        return default_part_mapping()
    try:
        if conv.source.exists(ref):
            data = conv.source.read(ref)
        else:
            fs, path = filesystem_for(ref)
            data = fs.cat_file(path)
        mapping = json.loads(data)
        mapping = {str(c): {str(p): int(i) for p, i in parts.items()} for c, parts in mapping.items()}
    except (OSError, ValueError, AttributeError, TypeError) as e:
        raise DatasetError(f"{conv.name}: part_mapping_file {ref!r} is not a JSON {{class: {{part: id}}}}: {e}") from e
    ids = {i for parts in mapping.values() for i in parts.values()}
    if not ids or min(ids) < 1 or max(ids) > 254:
        raise DatasetError(f"{conv.name}: part ids must lie in 1..254 (0 = background, 255 = ignore)")
    return mapping


def _class_names(mapping: dict[str, dict[str, int]]) -> list[str]:
    """Names for ids 1..K: ``class part`` of the first entry that uses each id."""
    names: dict[int, str] = {}
    for cls, parts in mapping.items():
        for part, i in parts.items():
            names.setdefault(i, f"{cls} {part}")
    return [names.get(i, f"unused-{i}") for i in range(1, max(names) + 1)]


def _read_splits(conv: Conversion) -> dict[str, str]:
    splits: dict[str, str] = {}
    for split, rel in conv.options.image_sets.items():
        hits = [f for f in conv.source.files() if f == rel or f.endswith("/" + rel)]
        if not hits:
            raise DatasetError(
                f"{conv.name}: {conv.source.uri} has no {rel} (the VOC2010 {split} list); set image_sets"
            )
        for line in conv.source.read_text(min(hits, key=len)).split():
            splits.setdefault(line.strip(), split)
    return splits
