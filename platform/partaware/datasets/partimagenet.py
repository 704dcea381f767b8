"""PartImageNet: COCO-style part annotations on ImageNet images (40 parts of 11 super-categories).

Source: the release folder: ``{train,val,test}.json`` (COCO style: ``images``, ``annotations`` with
polygon ``segmentation`` and ``bbox``, ``categories`` with ``name`` and ``supercategory``) and the
images (``images/{train,val,test}/...``), found anywhere under ``--source`` by file name. Two releases
exist: ``PartImageNet_OOD`` (the original; train/val/test hold disjoint ImageNet classes, 109/19/30 of
158) and ``PartImageNet_Seg`` (the same classes in every split); option ``release`` says which
(default ``ood``, whose class-disjointness is checked).

Names: the shipped list ``partimagenet-parts-40`` (the README's super-categories and their parts):
part label ids are its order, the release's categories are matched to it by name (a category not in
it stops the conversion: the list does not fit the release); objects are the 11 super-categories in
the README's order. Classes: the shipped list ``partimagenet-classes-158`` (each ImageNet class's
WordNet id, super-category and OOD split, read from public loaders of the release; see its
``source``). An image's class is its file name's WordNet id; one the list lacks, or (``release=ood``)
one in another split than the list says, stops the conversion: the list does not fit the release.

Rows per image: one ``part-box`` row per annotation (box from ``bbox``, mask = its polygons in an
instance map ``masks/<split>/<stem>.png`` at ``mask_index`` k); one whole-image part label-map row
(``<split>/<stem>/part-map``) for segmentation; one ``whole-image`` object row labelled with the
super-category. Masks and label maps are rasterised from the JSON polygons, so every label map follows
the platform's one convention (0 = background, k = class k-1; ``reduce_zero_label``).
"""

from __future__ import annotations

import json
import posixpath
import re
from collections.abc import Mapping
from typing import Literal

import numpy as np
from PIL import Image, ImageDraw
from pydantic import Field

from partaware.datasets.classlists import ClassList, load_class_list
from partaware.datasets.convert import (
    LABEL_MAP_ID,
    LABEL_MAP_LABEL,
    Conversion,
    ConverterOptions,
    LoadedImage,
    encode_png,
    image_error_kind,
    label_map_info,
    load_image,
)
from partaware.datasets.converter import Converter
from partaware.datasets.labelmaps import IMAGE_EXTS
from partaware.errors import DatasetError
from partaware.validation import register_options_model

CONVERTER_VERSION = "partimagenet-3"
CLASS_LIST = "partimagenet-parts-40"
IMAGE_CLASSES = "partimagenet-classes-158"
_WNID = re.compile(r"(n\d{8})")


@register_options_model
class PartImageNetOptions(ConverterOptions):
    splits: list[Literal["train", "val", "test"]] = Field(
        ["train", "val", "test"], min_length=1, description="JSON files <split>.json to read (each must exist)"
    )
    release: Literal["ood", "seg"] = Field(
        "ood", description="ood: PartImageNet_OOD, class-disjoint splits (checked); seg: PartImageNet_Seg"
    )


def category_index(classes: ClassList, category: Mapping, json_file: str) -> int:
    """The list index of a release category, matched by super-category and part name (``Car Tier`` or ``Tier``).

    ``DatasetError`` (one line: file, category) for a category the list does not have.
    """
    sup, name = str(category.get("supercategory", "")).strip(), str(category.get("name", "")).strip()
    for i, c in enumerate(classes.entries):
        if sup.lower() == c["object"].lower() and name.lower() in (c["name"].lower(), c["part"].lower()):
            return i
    raise DatasetError(
        f"partimagenet: {json_file}: category {category.get('id')!r} {name!r} (supercategory {sup!r}) "
        f"is not in class list {classes.name}; nothing was published"
    )


def image_class(file_name: str) -> str | None:
    """The ImageNet class (WordNet id) of an image, from its file name (``n01440764_10029.JPEG``)."""
    m = _WNID.match(posixpath.basename(file_name))
    return m.group(1) if m else None


def class_index(classes: ClassList) -> dict[str, dict]:
    """WordNet id -> its entry of ``partimagenet-classes-158`` (name, super-category, OOD split)."""
    return {c["wnid"]: c for c in classes.entries}


def check_image_class(classes: ClassList, rec: Mapping, split: str, json_file: str, release: str) -> dict:
    """The list's entry for an image's class; ``DatasetError`` (one line: file, image, class) for a class the
    list lacks or, for the OOD release, one the list puts in another split."""
    wnid = image_class(rec["file_name"])
    entry = class_index(classes).get(wnid or "")
    where = f"partimagenet: {json_file}: image {rec.get('id')!r} ({rec['file_name']!r})"
    if entry is None:
        raise DatasetError(f"{where}: class {wnid!r} is not in class list {classes.name}; nothing was published")
    if release == "ood" and entry["split"] != split:
        raise DatasetError(
            f"{where}: class {wnid} ({entry['name']}) is in the {entry['split']} split of class list {classes.name}, "
            f"not {split} (release=ood); nothing was published"
        )
    return entry


def split_classes(conv: Conversion, work: list, release: str) -> dict:
    """Which ImageNet classes each split holds; for the OOD release, ``DatasetError`` if two splits share one."""
    per_split: dict[str, set[str]] = {}
    for split, _, rec, _ in work:
        wnid = image_class(rec["file_name"])
        if wnid:  # a file name without one is refused by ``check_image_class``
            per_split.setdefault(split, set()).add(wnid)
    shared = {}
    names = sorted(per_split)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            for wnid in sorted(per_split[a] & per_split[b]):
                shared.setdefault(wnid, (a, b))
    if shared and release == "ood":
        wnid, (a, b) = next(iter(shared.items()))
        raise DatasetError(
            f"partimagenet: {conv.source.uri}: class {wnid} is in both {a}.json and {b}.json, but release=ood has "
            f"class-disjoint splits ({len(shared)} shared classes; set release=seg for PartImageNet_Seg)"
        )
    return {
        "release": release,
        "class_disjoint": not shared,
        "classes_per_split": {s: sorted(c) for s, c in sorted(per_split.items())},
        "class_counts": {s: len(c) for s, c in sorted(per_split.items())},
    }


def _find_json(files: list[str], split: str) -> str | None:
    hits = [f for f in files if f == f"{split}.json" or f.endswith(f"/{split}.json")]
    return min(hits, key=lambda f: (f.count("/"), f)) if hits else None


def _find_image(by_name: dict[str, list[str]], file_name: str, split: str) -> str | None:
    candidates = by_name.get(posixpath.basename(file_name), [])
    exact = [c for c in candidates if c.endswith(file_name)]
    in_split = [c for c in candidates if f"/{split}/" in f"/{c}"]
    for group in (exact, in_split, candidates):
        if group:
            return min(group, key=len)
    return None


def _image_record_problem(rec: object) -> str | None:
    """Why an image record cannot be used (None: it can): it needs an id and a file name."""
    if not isinstance(rec, dict) or not isinstance(rec.get("id"), int | str):
        return "an image record needs an integer or string 'id'"
    if "file_name" not in rec:
        return "'file_name' is missing"
    if not isinstance(rec["file_name"], str) or not rec["file_name"].strip():
        return f"'file_name' must be a non-empty string (got {rec['file_name']!r})"
    return None


class PartImageNetConverter(Converter):
    name, version, options_model = "partimagenet", CONVERTER_VERSION, PartImageNetOptions

    @classmethod
    def extra_recipe(cls) -> dict:
        classes, images = load_class_list(CLASS_LIST), load_class_list(IMAGE_CLASSES)
        return {
            "class_list": {"name": classes.name, "sha256": classes.sha256},
            "image_classes": {"name": images.name, "sha256": images.sha256},
        }

    def records(self) -> list[tuple]:
        """(split, json file, image record, [(index, annotation)]) of each usable image record."""
        conv, opts = self.conv, self.opts
        self.classes = classes = load_class_list(CLASS_LIST)
        self.image_classes = load_class_list(IMAGE_CLASSES)
        files = conv.source.files()
        self.by_name: dict[str, list[str]] = {}
        for f in files:
            if f.endswith(IMAGE_EXTS):
                self.by_name.setdefault(posixpath.basename(f), []).append(f)
        jsons = {s: _find_json(files, s) for s in opts.splits}
        missing = [s for s, f in jsons.items() if f is None]
        if missing:
            raise DatasetError(
                f"partimagenet: {conv.source.uri} has no {missing[0]}.json (the release's {missing[0]} split); "
                "set splits to convert fewer"
            )
        categories: dict[int, dict] | None = None
        self.label_of: dict[int, int] = {}
        work = []
        for split, json_file in jsons.items():
            try:
                data = json.loads(conv.source.read(json_file))
                cats = {int(c["id"]): c for c in data["categories"]}
                images, annotations = data["images"], data["annotations"]
            except (ValueError, KeyError, TypeError) as e:
                raise DatasetError(f"partimagenet: {json_file} is not a COCO-style annotation file: {e}") from e
            if not isinstance(images, list) or not isinstance(annotations, list):
                raise DatasetError(f"partimagenet: {json_file}: 'images' and 'annotations' must be lists")
            categories = categories or cats
            matched = {cid: category_index(classes, c, json_file) for cid, c in cats.items()}
            if cats.keys() != categories.keys() or (self.label_of and matched != self.label_of):
                raise DatasetError(f"partimagenet: {json_file} has other categories than the first split's")
            self.label_of = matched
            work.extend(self._split_records(split, json_file, images, annotations))
        self.names = classes.names()
        self.supers = [s["name"] for s in classes.spec["supercategories"]]
        self.object_of = [c["object"] for c in classes.entries]  # each part class's super-category, list spelling
        self.split_info = split_classes(conv, work, opts.release)  # shared classes first: the clearer message
        self.class_of = {
            rec["file_name"]: check_image_class(self.image_classes, rec, split, json_file, opts.release)
            for split, json_file, rec, _ in work
        }
        self.seen: set[tuple[str, str]] = set()
        return work

    def _split_records(self, split: str, json_file: str, images: list, annotations: list) -> list[tuple]:
        per_image: dict = {}
        for i, ann in enumerate(annotations):
            image_id = ann.get("image_id") if isinstance(ann, dict) else None
            per_image.setdefault(image_id if isinstance(image_id, int | str) else None, []).append((i, ann))
        work = []
        for i, rec in enumerate(images):
            problem = _image_record_problem(rec)
            if problem:
                record = (
                    f"image {rec['id']}"
                    if isinstance(rec, dict) and isinstance(rec.get("id"), int | str)
                    else f"image #{i}"
                )
                self.conv.error(json_file, record, "unreadable-annotation", problem)
                continue
            work.append((split, json_file, rec, per_image.get(rec["id"], [])))
        return work

    def load(self, item: tuple) -> tuple[str, LoadedImage]:
        split, _, rec, _ = item
        path = _find_image(self.by_name, rec["file_name"], split)
        if path is None:
            raise FileNotFoundError(f"no image file {rec['file_name']!r} in the source")
        return path, load_image(self.conv.source, path, decode=self.opts.decode_images)

    def _stem(self, item: tuple) -> str | None:
        """The image's stem, or None (an error row) for a second image of that name in the split."""
        split, json_file, rec, _ = item
        stem = posixpath.splitext(posixpath.basename(rec["file_name"]))[0]
        if (split, stem) in self.seen:
            self.conv.error(json_file, f"image {rec.get('id')}", "unreadable-annotation", f"duplicate image {stem!r}")
            return None
        self.seen.add((split, stem))
        return stem

    def failed(self, item: tuple, exc: Exception) -> None:
        stem = self._stem(item)
        if stem is not None:
            rec = item[2]
            self.conv.error(rec["file_name"], f"image {rec.get('id')}", image_error_kind(exc), str(exc), item=stem)

    def _object_of(self, item: tuple, stem: str, categories: list[int]) -> str | None:
        """The image's super-category (its class's, from the list); None (an error row) when its parts say another."""
        _, json_file, rec, _ = item
        entry = self.class_of[rec["file_name"]]
        others = sorted({self.object_of[self.label_of[c]] for c in categories} - {entry["supercategory"]})
        if others:
            self.conv.error(json_file, f"image {rec.get('id')}", "unreadable-annotation",
                            f"parts of {', '.join(others)} on an image of {entry['wnid']} ({entry['name']}), a "
                            f"{entry['supercategory']} in class list {self.image_classes.name}", item=stem)  # fmt: skip
            return None
        return entry["supercategory"]

    def rows(self, item: tuple, loaded: tuple[str, LoadedImage]) -> list[dict]:
        stem = self._stem(item)
        if stem is None:
            return []
        conv, label_of, names, supers, object_of = self.conv, self.label_of, self.names, self.supers, self.object_of
        split, json_file, rec, anns = item
        path, image = loaded
        instance = Image.new("I", (image.width, image.height), 0)
        semantic = Image.new("I", (image.width, image.height), 0)
        draw_i, draw_s = ImageDraw.Draw(instance), ImageDraw.Draw(semantic)
        parts = []
        for i, ann in anns:
            record = f"annotation {ann.get('id', f'#{i}')}"
            try:
                cid = int(ann["category_id"])
                if cid not in label_of:
                    raise ValueError(f"category_id {cid} is not among the categories")
                x, y, w, h = (float(v) for v in ann["bbox"])
                polygons = ann["segmentation"]
                if not isinstance(polygons, list):
                    raise ValueError("RLE segmentation is not supported (expected polygons)")
                polygons = [[float(v) for v in poly] for poly in polygons if len(poly) >= 6]
            except (KeyError, TypeError, ValueError) as e:
                conv.error(json_file, record, "unreadable-annotation", f"image {rec.get('id')}: {e}", item=stem)
                continue
            k = len(parts) + 1
            for poly in polygons:
                draw_i.polygon(poly, fill=k)
                draw_s.polygon(poly, fill=label_of[cid] + 1)
            parts.append((k, cid, [x, y, x + w, y + h]))
        obj = self._object_of(item, stem, [cid for _, cid, _ in parts])
        if obj is None:
            return []
        image_uri = conv.build.add_file(f"images/{split}/{posixpath.basename(path)}", image.data)
        map_uri = conv.build.add_file(f"labels/part/{split}/{stem}.png", encode_png(np.asarray(semantic)))
        mask_uri = conv.build.add_file(f"masks/{split}/{stem}.png", encode_png(np.asarray(instance)))
        common = {
            "image_id": stem,
            "image_uri": image_uri,
            "width": image.width,
            "height": image.height,
            "split": split,
        }
        rows = []
        for k, cid, box in parts:
            sup = object_of[label_of[cid]]
            rows.append(
                {
                    **common,
                    "region_id": f"{split}/{stem}/part{k:03d}",
                    "level": "part",
                    "label": names[label_of[cid]],
                    "label_id": label_of[cid],
                    "object_label": sup,
                    "object_label_id": supers.index(sup),
                    "box": box,
                    "mask_uri": mask_uri,
                    "mask_index": k,
                    "label_map_uri": map_uri,
                    "sample_rule": "part-box",
                }
            )
        if parts:  # an image without parts has nothing to segment
            rows.append(
                {
                    **common,
                    "region_id": f"{split}/{stem}/part-map",
                    "level": "part",
                    "label": LABEL_MAP_LABEL,
                    "label_id": LABEL_MAP_ID,
                    "label_map_uri": map_uri,
                    "sample_rule": "whole-image",
                }
            )
        if parts:  # an image without parts is not part of the release's objects either
            rows.append(
                {
                    **common,
                    "region_id": f"{split}/{stem}/object",
                    "level": "object",
                    "label": obj,
                    "label_id": supers.index(obj),
                    "object_label": obj,
                    "object_label_id": supers.index(obj),
                    "sample_rule": "whole-image",
                }
            )
        return rows

    def info(self) -> dict:
        classes, names = self.classes, self.names
        classes.add_to(self.conv.build)
        part_list, object_list = classes.record("classes"), classes.record("supercategories")
        published = {k: v["classes"] for k, v in classes.spec["splits"].items()}
        self.image_classes.add_to(self.conv.build)
        return {
            "description": "PartImageNet: part boxes and masks, part label maps, super-category objects",
            "part_classes": names,
            "object_classes": self.supers,
            "label_maps": label_map_info(
                "part", names, names_source=f"class list {classes.name}", class_list=part_list
            ),
            "class_lists": {"part": part_list, "object": object_list},
            "partimagenet": {
                **self.split_info,
                "published_class_counts": published if self.opts.release == "ood" else None,
                "class_list": self.image_classes.record("classes"),
            },
        }


prepare_partimagenet = PartImageNetConverter.prepare
