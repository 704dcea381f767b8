"""OV-PARTS releases (Wei et al., NeurIPS 2023 D&B): ADE20K-Part-234 and Pascal-Part-116, named classes.

Why these: today's part-segmentation work reports on these two lists, with their base/novel object split;
the paper's own 209/193-class releases name no class. Names, object lists, base/novel splits and
ignore labels are the shipped class lists (``classes/ov-parts-*.json``, from the OV-PARTS repository).

Release layouts (found anywhere under ``--source``; the maps decide which images belong to the set):
- ``ADE20K-Part-234``: ``images/{training,validation}/*.jpg``, ``annotations_detectron2_part/{training,
  validation}/*.png`` (stored value k = class k, 0..233; 65535 = ignore), plus ``ade20k_instance_{train,
  val}.json`` and ``train_16shot.json``, which are not needed here. Split names: training -> train,
  validation -> val.
- ``Pascal-Part-116``: ``images/{train,val}/*.jpg``, ``annotations_detectron2_part/{train,val}/*.png``
  (k = class k, 0..115; 255 = ignore) and ``annotations_detectron2_obj/{train,val}/*.png`` (k = object k,
  0..19; 255 = ignore): label maps at the part and the object level.

Maps are copied byte for byte; ``dataset.json`` states their convention (0-based, no
``reduce_zero_label``, the release's ignore value) and the class list (name, sha256, source). Bad input
that means the list does not fit the release (a value outside the list) or a release without one of its
splits stops the conversion with one line naming the file and value; nothing is published. A bad image
(unreadable, wrong size, a colour map, an annotation without its image) is an error row, as elsewhere.
"""

from __future__ import annotations

import posixpath
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from partaware.datasets.classlists import ClassList, load_class_list
from partaware.datasets.convert import (
    Conversion,
    ConverterOptions,
    LoadedImage,
    image_error_kind,
    label_map_info,
    load_image,
    read_label_map,
)
from partaware.datasets.converter import Converter
from partaware.datasets.labelmaps import IMAGE_EXTS, RecordError, find_dir, label_map_row
from partaware.errors import DatasetError
from partaware.validation import register_options_model

CONVERTER_VERSION = "ov-parts-1"


@register_options_model
class OvPartsOptions(ConverterOptions):
    """OV-PARTS releases take the common options only: both splits are always converted."""


@dataclass(frozen=True)
class Release:
    """One OV-PARTS release: its folders per split and level, and the class list of each level."""

    name: str
    title: str
    class_list: str
    splits: dict[str, str]  # our split -> the release's folder name
    maps: dict[str, str]  # level -> annotation folder (its split sub-folders hold the maps)
    entries: dict[str, str]  # level -> which list of the class list names it ("classes" | "objects")


ADE20K_PART_234 = Release(
    name="ade20k-part-234",
    title="OV-PARTS ADE20K-Part-234",
    class_list="ov-parts-ade20k-part-234",
    splits={"train": "training", "val": "validation"},
    maps={"part": "annotations_detectron2_part"},
    entries={"part": "classes"},
)
PASCAL_PART_116 = Release(
    name="pascal-part-116",
    title="OV-PARTS Pascal-Part-116",
    class_list="ov-parts-pascal-part-116",
    splits={"train": "train", "val": "val"},
    maps={"part": "annotations_detectron2_part", "object": "annotations_detectron2_obj"},
    entries={"part": "classes", "object": "objects"},
)


@dataclass(frozen=True)
class LevelSpec:
    """What a level's maps may hold: the list's ids and the release's ignore value."""

    level: str
    ids: frozenset[int]
    ignore: int
    top: int


def level_specs(release: Release, classes: ClassList) -> dict[str, LevelSpec]:
    specs = {}
    for level, entries in release.entries.items():
        values = classes.spec["label_values" if entries == "classes" else "objects_label_values"]
        ids = [int(e["id"]) for e in classes.spec[entries]]
        specs[level] = LevelSpec(level, frozenset(ids), int(values["ignore_index"]), max(ids))
    return specs


class OutsideList(Exception):
    """A stored value the class list does not have: the list does not fit this release (fatal)."""


@dataclass(frozen=True)
class Item:
    split: str
    stem: str
    image: str | None
    maps: dict[str, str | None]  # level -> map path


def find_items(conv: Conversion, release: Release) -> list[Item]:
    """One item per map of the first level (the part maps), with its image and its other levels' maps.

    The release root is where the part-map folder sits; every split's images and maps of every level must
    be there (``DatasetError`` otherwise: a release missing a split publishes nothing).
    """
    files = conv.source.files()
    first = next(iter(release.maps))
    items = []
    for split, folder in release.splits.items():
        suffix = f"{release.maps[first]}/{folder}"
        ann_dir = find_dir(files, suffix)
        if ann_dir is None:
            raise DatasetError(
                f"{release.name}: {conv.source.uri} has no {suffix}/ (the {release.title} release's {split} split)"
            )
        base = ann_dir[: -len(suffix)].rstrip("/")  # the release root ("" when --source is the root)
        images = _by_stem(files, posixpath.join(base, "images", folder), IMAGE_EXTS)
        maps = {lv: _by_stem(files, posixpath.join(base, ann, folder), (".png",)) for lv, ann in release.maps.items()}
        for wanted, found in (("images", images), *((release.maps[lv], maps[lv]) for lv in release.maps)):
            if not found:
                raise DatasetError(
                    f"{release.name}: {conv.source.uri} has no {posixpath.join(base, wanted, folder)}/ "
                    f"(the {release.title} release's {split} split)"
                )
        conv.stats.setdefault("images_without_maps", {})[split] = len(set(images) - set(maps[first]))
        for stem in sorted(maps[first]):
            items.append(Item(split, stem, images.get(stem), {lv: maps[lv].get(stem) for lv in release.maps}))
    return items


def _by_stem(files: Sequence[str], folder: str, exts: tuple[str, ...]) -> dict[str, str]:
    prefix = folder + "/"
    return {
        posixpath.splitext(posixpath.basename(f))[0]: f
        for f in files
        if f.startswith(prefix) and "/" not in f[len(prefix) :] and f.endswith(exts)
    }


def check_values(labels: np.ndarray, image: LoadedImage, spec: LevelSpec, file: str, list_name: str) -> np.ndarray:
    """The class values present; ``RecordError`` for a bad map, ``OutsideList`` for a value not in the list."""
    if labels.ndim != 2 or labels.shape != (image.height, image.width):
        raise RecordError(
            "label-map-size", file, f"label map is {labels.shape[::-1]}, image is {(image.width, image.height)}"
        )
    values = np.unique(labels)
    bad = [int(v) for v in values if int(v) != spec.ignore and int(v) not in spec.ids]
    if bad:
        raise OutsideList(
            f"{file}: label value {bad[0]} is not in class list {list_name} "
            f"({spec.level} ids 0..{spec.top}, {spec.ignore} = ignore)"
        )
    return values[values != spec.ignore]


class OvPartsConverter(Converter):
    """One OV-PARTS release (``release``): its maps copied as they are, checked against its class list."""

    version, options_model = CONVERTER_VERSION, OvPartsOptions
    release: ClassVar[Release]

    @classmethod
    def extra_recipe(cls) -> dict:
        classes = load_class_list(cls.release.class_list)
        return {"class_list": {"name": classes.name, "sha256": classes.sha256}}

    def records(self) -> list[Item]:
        self.classes = load_class_list(self.release.class_list)
        self.specs = level_specs(self.release, self.classes)
        self.present: dict[str, Counter[int]] = {level: Counter() for level in self.release.maps}
        return find_items(self.conv, self.release)

    def load(self, item: Item) -> tuple[LoadedImage, dict[str, tuple[bytes, np.ndarray]]]:
        if item.image is None:
            raise RecordError("missing-image", next(iter(item.maps.values())) or item.stem, "no image for label map")
        try:
            image = load_image(self.conv.source, item.image, decode=self.opts.decode_images)
        except Exception as e:  # noqa: BLE001
            raise RecordError(image_error_kind(e), item.image, str(e)) from e
        out = {}
        for level, path in item.maps.items():
            if path is None:
                raise RecordError("missing-label-map", item.image, f"no {level} label map for image {item.stem!r}")
            try:
                data = self.conv.source.read(path)
                labels = read_label_map(data)
            except Exception as e:  # noqa: BLE001
                raise RecordError("unreadable-annotation", path, f"cannot read label map: {e}") from e
            out[level] = (data, check_values(labels, image, self.specs[level], path, self.classes.name))
        return image, out

    def failed(self, item: Item, exc: Exception) -> None:
        if isinstance(exc, OutsideList):
            raise DatasetError(f"{self.release.name}: {exc}; nothing was published")
        file = getattr(exc, "file", item.image or item.stem)
        self.conv.error(file, f"{item.split}/{item.stem}", getattr(exc, "kind", "unreadable-image"), str(exc))

    def rows(self, item: Item, loaded: tuple[LoadedImage, dict[str, tuple[bytes, np.ndarray]]]) -> list[dict]:
        image, maps = loaded
        build, single = self.conv.build, len(self.release.maps) == 1
        image_uri = build.add_file(f"images/{item.split}/{posixpath.basename(item.image)}", image.data)
        rows = []
        for level, (data, values) in maps.items():
            map_uri = build.add_file(f"labels/{level}/{item.split}/{item.stem}.png", data)
            self.present[level].update(int(v) for v in values)
            region = f"{item.split}/{item.stem}" if single else f"{item.split}/{item.stem}/{level}"
            rows.append(_row(region, item, image_uri, image, map_uri, level))
        return rows

    def info(self) -> dict:
        self.classes.add_to(self.conv.build)
        return _info(self.release, self.classes, self.specs, self.present)


class Ade20kPart234Converter(OvPartsConverter):
    name, release = ADE20K_PART_234.name, ADE20K_PART_234


class PascalPart116Converter(OvPartsConverter):
    name, release = PASCAL_PART_116.name, PASCAL_PART_116


prepare_ade20k_part_234 = Ade20kPart234Converter.prepare
prepare_pascal_part_116 = PascalPart116Converter.prepare


def _row(region_id: str, item: Item, image_uri: str, image: LoadedImage, map_uri: str, level: str) -> dict:
    return {**label_map_row(item.split, item.stem, image_uri, image, map_uri, level), "region_id": region_id}


def _info(release: Release, classes: ClassList, specs: dict[str, LevelSpec], present: dict[str, Counter]) -> dict:
    objects = classes.objects()
    novel = [o["name"] for o in objects if o.get("split") == "novel"]
    maps, lists = {}, {}
    for level, entries in release.entries.items():
        record = classes.record(entries)
        lists[level] = record
        if entries == "classes":
            names = classes.names()
            extra = {
                "class_objects": [c["object"] for c in classes.entries],
                "class_splits": [c["split"] for c in classes.entries],
            }
        else:
            names = [o["name"] for o in objects]
            extra = {"class_splits": [o["split"] for o in objects]}
        maps[level] = label_map_info(
            level,
            names,
            names_source=f"class list {classes.name} ({entries})",
            reduce_zero_label=False,
            ignore_index=specs[level].ignore,
            class_list=record,
            extra={**extra, "images_per_class": {names[k]: n for k, n in sorted(present[level].items())}},
        )
    counts = ", ".join(f"{len(m['classes'])} {lv}" for lv, m in maps.items())
    return {
        "description": f"{release.title}: {counts} classes, label maps as released",
        "release": release.title,
        "label_maps": maps[next(iter(maps))] if len(maps) == 1 else maps,
        "class_lists": lists,
        "object_split": {"base": [o["name"] for o in objects if o["name"] not in novel], "novel": novel},
    }
