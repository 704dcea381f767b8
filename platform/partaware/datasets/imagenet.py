"""ImageNet-style class folders as whole-image object samples (the paper's object-level probes, §3.1).

Source: ``train/<wnid>/*.JPEG`` and/or ``val/<wnid>/*.JPEG`` (the val set sorted into class folders,
as most copies are), found anywhere under ``--source``. ``label`` is the folder name (the WordNet id),
``label_id`` its index among all class folders in sorted order; ``LOC_synset_mapping.txt``
(``n01440764 tench, Tinca tinca``), when present, gives readable names in ``dataset.json``.
"""

from __future__ import annotations

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
from partaware.datasets.labelmaps import IMAGE_EXTS
from partaware.datasets.store import PreparedDataset
from partaware.errors import DatasetError
from partaware.storage import StorageRoot
from partaware.validation import register_options_model

CONVERTER_VERSION = "imagenet-1"


@register_options_model
class ImageNetOptions(ConverterOptions):
    splits: list[Literal["train", "val"]] = Field(
        ["train", "val"], min_length=1, description="split folders to read (those present)"
    )
    max_per_class: int | None = Field(None, ge=1, description="first N images per class and split (sorted names)")


def prepare_imagenet(
    root: StorageRoot, *, source=None, options=None, workers=None, progress=None
) -> tuple[PreparedDataset, bool]:
    opts = parse_options(ImageNetOptions, "imagenet", options)
    return run_conversion(
        root,
        "imagenet",
        source=source,
        options=opts,
        converter_version=CONVERTER_VERSION,
        workers=workers,
        progress=progress,
        body=_convert,
    )


def _split_folders(files: list[str], split: str) -> str | None:
    """The shallowest ``.../<split>`` folder whose files sit one class folder deeper."""
    hits = set()
    for f in files:
        parts = f.split("/")
        if len(parts) >= 3 and parts[-3] == split and f.endswith(IMAGE_EXTS):
            hits.add("/".join(parts[:-2]))
    return min(hits, key=lambda d: (d.count("/"), d)) if hits else None


def _convert(conv: Conversion) -> tuple[list[dict], dict]:
    opts: ImageNetOptions = conv.options
    files = conv.source.files()
    found = {s: d for s in opts.splits if (d := _split_folders(files, s))}
    if not found:
        raise DatasetError(f"imagenet: {conv.source.uri} has no {'/ or '.join(opts.splits)}/<class>/<image> folders")
    work = []  # (split, wnid, path)
    for split, folder in found.items():
        per_class: dict[str, list[str]] = {}
        for f in files:
            if f.startswith(folder + "/") and f.endswith(IMAGE_EXTS):
                rest = f[len(folder) + 1 :].split("/")
                if len(rest) == 2:
                    per_class.setdefault(rest[0], []).append(f)
        for wnid in sorted(per_class):
            work.extend((split, wnid, f) for f in sorted(per_class[wnid])[: opts.max_per_class])
    classes = sorted({w for _, w, _ in work})
    label_of = {w: i for i, w in enumerate(classes)}
    names = _synset_names(conv, files)
    conv.total = len(work)
    rows = []
    load = lambda item: load_image(conv.source, item[2], decode=opts.decode_images)  # noqa: E731
    for (split, wnid, path), result in conv.map(load, work):
        conv.records += 1
        conv.tick()
        if isinstance(result, Exception):
            conv.error(path, f"{split}/{wnid}", image_error_kind(result), str(result))
            continue
        stem = posixpath.splitext(posixpath.basename(path))[0]
        image_uri = conv.build.add_file(f"images/{split}/{wnid}/{posixpath.basename(path)}", result.data)
        rows.append(
            {
                "region_id": f"{split}/{wnid}/{stem}",
                "image_id": stem,
                "image_uri": image_uri,
                "width": result.width,
                "height": result.height,
                "split": split,
                "level": "object",
                "label": wnid,
                "label_id": label_of[wnid],
                "object_label": wnid,
                "object_label_id": label_of[wnid],
                "sample_rule": "whole-image",
            }
        )
    info = {
        "description": "ImageNet-style class folders, whole-image object samples",
        "object_classes": classes,
        "class_names": {w: names.get(w, w) for w in classes},
    }
    return rows, info


def _synset_names(conv: Conversion, files: list[str]) -> dict[str, str]:
    hits = [f for f in files if posixpath.basename(f) == "LOC_synset_mapping.txt"]
    if not hits:
        return {}
    out = {}
    for line in conv.source.read_text(min(hits, key=len)).splitlines():
        wnid, _, name = line.partition(" ")
        if wnid:
            out[wnid] = name.strip()
    return out
