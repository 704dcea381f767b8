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

from partaware.datasets.convert import Conversion, ConverterOptions, LoadedImage, image_error_kind, load_image
from partaware.datasets.converter import Converter
from partaware.datasets.labelmaps import IMAGE_EXTS
from partaware.errors import DatasetError
from partaware.validation import register_options_model

CONVERTER_VERSION = "imagenet-1"


@register_options_model
class ImageNetOptions(ConverterOptions):
    splits: list[Literal["train", "val"]] = Field(
        ["train", "val"], min_length=1, description="split folders to read (those present)"
    )
    max_per_class: int | None = Field(None, ge=1, description="first N images per class and split (sorted names)")


def _split_folders(files: list[str], split: str) -> str | None:
    """The shallowest ``.../<split>`` folder whose files sit one class folder deeper."""
    hits = set()
    for f in files:
        parts = f.split("/")
        if len(parts) >= 3 and parts[-3] == split and f.endswith(IMAGE_EXTS):
            hits.add("/".join(parts[:-2]))
    return min(hits, key=lambda d: (d.count("/"), d)) if hits else None


class ImageNetConverter(Converter):
    name, version, options_model = "imagenet", CONVERTER_VERSION, ImageNetOptions

    def records(self) -> list[tuple[str, str, str]]:
        """(split, wnid, path) of each image."""
        conv, opts = self.conv, self.opts
        files = conv.source.files()
        found = {s: d for s in opts.splits if (d := _split_folders(files, s))}
        if not found:
            raise DatasetError(
                f"imagenet: {conv.source.uri} has no {'/ or '.join(opts.splits)}/<class>/<image> folders"
            )
        work = []
        for split, folder in found.items():
            per_class: dict[str, list[str]] = {}
            for f in files:
                if f.startswith(folder + "/") and f.endswith(IMAGE_EXTS):
                    rest = f[len(folder) + 1 :].split("/")
                    if len(rest) == 2:
                        per_class.setdefault(rest[0], []).append(f)
            for wnid in sorted(per_class):
                work.extend((split, wnid, f) for f in sorted(per_class[wnid])[: opts.max_per_class])
        self.classes = sorted({w for _, w, _ in work})
        self.label_of = {w: i for i, w in enumerate(self.classes)}
        self.names = _synset_names(conv, files)
        return work

    def load(self, item: tuple[str, str, str]) -> LoadedImage:
        return load_image(self.conv.source, item[2], decode=self.opts.decode_images)

    def failed(self, item: tuple[str, str, str], exc: Exception) -> None:
        split, wnid, path = item
        self.conv.error(path, f"{split}/{wnid}", image_error_kind(exc), str(exc))

    def rows(self, item: tuple[str, str, str], loaded: LoadedImage) -> list[dict]:
        split, wnid, path = item
        stem = posixpath.splitext(posixpath.basename(path))[0]
        image_uri = self.conv.build.add_file(f"images/{split}/{wnid}/{posixpath.basename(path)}", loaded.data)
        label_id = self.label_of[wnid]
        return [
            {
                "region_id": f"{split}/{wnid}/{stem}",
                "image_id": stem,
                "image_uri": image_uri,
                "width": loaded.width,
                "height": loaded.height,
                "split": split,
                "level": "object",
                "label": wnid,
                "label_id": label_id,
                "object_label": wnid,
                "object_label_id": label_id,
                "sample_rule": "whole-image",
            }
        ]

    def info(self) -> dict:
        return {
            "description": "ImageNet-style class folders, whole-image object samples",
            "object_classes": self.classes,
            "class_names": {w: self.names.get(w, w) for w in self.classes},
        }


prepare_imagenet = ImageNetConverter.prepare


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
