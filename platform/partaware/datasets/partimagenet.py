"""PartImageNet: COCO-style part annotations on ImageNet images (40 part classes, 11 super-categories).

Source: the release folder: ``{train,val,test}.json`` (COCO style: ``images``, ``annotations`` with
polygon ``segmentation`` and ``bbox``, ``categories`` with ``name`` and ``supercategory``) and the
images (``images/{train,val,test}/...``), found anywhere under ``--source`` by file name.

Rows per image: one ``part-box`` row per annotation (box from ``bbox``, mask = its polygons in an
instance map ``masks/<split>/<stem>.png`` at ``mask_index`` k), each also naming the image's part
label map; and one ``whole-image`` object row labelled with the super-category. Masks and label maps
are rasterised from the JSON polygons, so every label map follows the platform's one convention
(0 = background, k = category k-1; ``reduce_zero_label``) whatever PNG encoding a release copy uses.
"""

from __future__ import annotations

import json
import posixpath
from typing import Literal

import numpy as np
from PIL import Image, ImageDraw
from pydantic import Field

from partaware.datasets.convert import (
    Conversion,
    ConverterOptions,
    encode_png,
    image_error_kind,
    label_map_info,
    load_image,
    parse_options,
    run_conversion,
)
from partaware.datasets.labelmaps import IMAGE_EXTS
from partaware.datasets.store import PreparedDataset
from partaware.errors import DatasetError
from partaware.spec import register_options_model
from partaware.storage import StorageRoot

CONVERTER_VERSION = "partimagenet-1"


@register_options_model
class PartImageNetOptions(ConverterOptions):
    splits: list[Literal["train", "val", "test"]] = Field(
        ["train", "val", "test"], min_length=1, description="JSON files <split>.json to read"
    )


def prepare_partimagenet(
    root: StorageRoot, *, source=None, options=None, workers=None, progress=None
) -> tuple[PreparedDataset, bool]:
    opts = parse_options(PartImageNetOptions, "partimagenet", options)
    return run_conversion(
        root,
        "partimagenet",
        source=source,
        options=opts,
        converter_version=CONVERTER_VERSION,
        workers=workers,
        progress=progress,
        body=_convert,
    )


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


def _convert(conv: Conversion) -> tuple[list[dict], dict]:
    opts: PartImageNetOptions = conv.options
    files = conv.source.files()
    by_name: dict[str, list[str]] = {}
    for f in files:
        if f.endswith(IMAGE_EXTS):
            by_name.setdefault(posixpath.basename(f), []).append(f)
    jsons = {s: _find_json(files, s) for s in opts.splits}
    if not any(jsons.values()):
        raise DatasetError(f"partimagenet: {conv.source.uri} holds none of {[f'{s}.json' for s in opts.splits]}")
    categories: dict[int, dict] | None = None
    work = []
    for split, json_file in jsons.items():
        if json_file is None:
            continue
        try:
            data = json.loads(conv.source.read(json_file))
            cats = {int(c["id"]): c for c in data["categories"]}
            images, annotations = data["images"], data["annotations"]
        except (ValueError, KeyError, TypeError) as e:
            raise DatasetError(f"partimagenet: {json_file} is not a COCO-style annotation file: {e}") from e
        categories = categories or cats
        if cats.keys() != categories.keys():
            raise DatasetError(f"partimagenet: {json_file} has other categories than the first split's")
        per_image: dict = {}
        for i, ann in enumerate(annotations):
            per_image.setdefault(ann.get("image_id") if isinstance(ann, dict) else None, []).append((i, ann))
        for rec in images:
            work.append((split, json_file, rec, per_image.get(rec.get("id"), [])))
    cat_ids = sorted(categories)
    label_of = {cid: i for i, cid in enumerate(cat_ids)}
    supers = sorted({str(categories[c].get("supercategory", "")) for c in cat_ids})
    conv.total = len(work)

    def load(item):
        split, _, rec, _ = item
        path = _find_image(by_name, rec["file_name"], split)
        if path is None:
            raise FileNotFoundError(f"no image file {rec['file_name']!r} in the source")
        return path, load_image(conv.source, path, decode=opts.decode_images)

    rows = []
    seen: set[tuple[str, str]] = set()
    for (split, json_file, rec, anns), result in conv.map(load, work):
        conv.records += 1
        conv.tick()
        stem = posixpath.splitext(posixpath.basename(rec["file_name"]))[0]
        if (split, stem) in seen:
            conv.error(json_file, f"image {rec.get('id')}", "unreadable-annotation", f"duplicate image {stem!r}")
            continue
        seen.add((split, stem))
        if isinstance(result, Exception):
            conv.error(rec["file_name"], f"image {rec.get('id')}", image_error_kind(result), str(result), item=stem)
            continue
        path, image = result
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
        obj_supers = {str(categories[cid].get("supercategory", "")) for _, cid, _ in parts}
        obj = obj_supers.pop() if len(obj_supers) == 1 else None
        for k, cid, box in parts:
            sup = str(categories[cid].get("supercategory", ""))
            rows.append(
                {
                    **common,
                    "region_id": f"{split}/{stem}/part{k:03d}",
                    "level": "part",
                    "label": str(categories[cid]["name"]),
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
        if obj is not None:
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
    classes = [str(categories[c]["name"]) for c in cat_ids]
    info = {
        "description": "PartImageNet: part boxes and masks, part label maps, super-category objects",
        "part_classes": classes,
        "object_classes": supers,
        "label_maps": label_map_info("part", classes, names_source="categories of the COCO-style JSON"),
    }
    return rows, info
