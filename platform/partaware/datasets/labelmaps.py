"""Segmentation datasets given as image + label-map folders (ADE20K family, LIP, processed Pascal).

One manifest row per image: ``level`` object or part, ``box`` null (the whole image),
``label_map_uri`` the map copied byte for byte, ``label``/``label_id`` = ``"label-map"``/-1 (the labels
are per pixel), ``sample_rule`` ``whole-image``. Maps keep the release's encoding (0 = background or
unlabelled, k = class k-1); ``dataset.json`` states the paper's ``reduce_zero_label`` convention and
ignore index 255 (``convert.label_map_info``).

Checked per image: image readable, map present, single-channel, same size as the image, values in
``0..num_classes`` or 255; a failing image is an error row (file, record) and is left out.
"""

from __future__ import annotations

import posixpath
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from partaware.datasets.convert import (
    IGNORE_INDEX,
    LABEL_MAP_ID,
    LABEL_MAP_LABEL,
    Conversion,
    LoadedImage,
    load_image,
    read_label_map,
)
from partaware.datasets.converter import Converter, convert_records
from partaware.errors import DatasetError

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".JPEG", ".JPG")

#: {split: (image folder, label folder)}, folders matched as path suffixes anywhere in the source.
Layout = Mapping[str, tuple[str, str]]


@dataclass(frozen=True)
class Pair:
    split: str
    stem: str
    image: str | None  # source path, None if missing
    label: str | None


class RecordError(Exception):
    """A bad record, with the file to name and the error kind."""

    def __init__(self, kind: str, file: str, message: str):
        super().__init__(message)
        self.kind, self.file = kind, file


def find_dir(files: Sequence[str], suffix: str) -> str | None:
    """The shallowest folder (relative) whose path ends with ``suffix`` and directly holds files."""
    dirs = {posixpath.dirname(f) for f in files}
    hits = [d for d in dirs if d == suffix or d.endswith("/" + suffix)]
    return min(hits, key=lambda d: (d.count("/"), d)) if hits else None


def find_pairs(conv: Conversion, layouts: Sequence[Layout], *, splits: Sequence[str] | None = None) -> list[Pair]:
    """Image/label pairs of the first layout found in the source, matched by file stem."""
    files = conv.source.files()
    for layout in layouts:
        found = {s: (find_dir(files, i), find_dir(files, lab)) for s, (i, lab) in layout.items()}
        found = {s: d for s, d in found.items() if d[0] or d[1]}
        if found:
            break
    else:
        wanted = "; ".join(", ".join(f"{i} + {lab}" for i, lab in layout.values()) for layout in layouts)
        raise DatasetError(f"{conv.name}: {conv.source.uri}: no image/label folders found (expected {wanted})")
    if splits:
        missing = [s for s in splits if s not in found]
        if missing:
            raise DatasetError(f"{conv.name}: splits {missing} not found in {conv.source.uri} (found {sorted(found)})")
        found = {s: found[s] for s in splits}
    pairs = []
    for split, (img_dir, lab_dir) in found.items():
        images = _by_stem(files, img_dir, IMAGE_EXTS)
        labels = _by_stem(files, lab_dir, (".png",))
        for stem in sorted(set(images) | set(labels)):
            pairs.append(Pair(split, stem, images.get(stem), labels.get(stem)))
    return pairs


def _by_stem(files: Sequence[str], folder: str | None, exts: tuple[str, ...]) -> dict[str, str]:
    if folder is None:
        return {}
    prefix = f"{folder}/" if folder else ""
    return {
        posixpath.splitext(posixpath.basename(f))[0]: f
        for f in files
        if f.startswith(prefix) and "/" not in f[len(prefix) :] and f.endswith(exts)
    }


def check_label_map(labels: np.ndarray, image: LoadedImage, num_classes: int, file: str) -> np.ndarray:
    """The class values present; ``RecordError`` for a size mismatch or a value out of range."""
    if labels.ndim != 2 or labels.shape != (image.height, image.width):
        raise RecordError(
            "label-map-size", file, f"label map is {labels.shape[::-1]}, image is {(image.width, image.height)}"
        )
    values = np.unique(labels)
    bad = values[(values > num_classes) & (values != IGNORE_INDEX)]
    if bad.size:
        raise RecordError(
            "label-out-of-range",
            file,
            f"values {bad.tolist()[:10]} outside 0..{num_classes} (and {IGNORE_INDEX} = ignore)",
        )
    return values


class LabelMapPairs:
    """Load, check and stage image + label-map pairs (the record hooks of every label-map converter)."""

    def __init__(self, conv: Conversion, level: str, num_classes: int):
        self.conv, self.level, self.num_classes = conv, level, num_classes
        self.decode = getattr(conv.options, "decode_images", False)
        self.present: Counter[int] = Counter()

    def convert(self, pairs: Sequence[Pair]) -> list[dict]:
        """Stage each good pair (image + map) and return one whole-image row per image."""
        rows = convert_records(self.conv, pairs, self.load, self.rows, self.failed)
        self.conv.stats["images_per_class"] = {str(k): n for k, n in sorted(self.present.items())}  # JSON keys
        return rows

    def load(self, pair: Pair) -> tuple[LoadedImage, bytes, np.ndarray]:
        if pair.image is None:
            raise RecordError("missing-image", pair.label or pair.stem, f"no image for label map {pair.stem!r}")
        if pair.label is None:
            raise RecordError("missing-label-map", pair.image, f"no label map for image {pair.stem!r}")
        try:
            image = load_image(self.conv.source, pair.image, decode=self.decode)
        except Exception as e:  # noqa: BLE001
            kind = "missing-image" if isinstance(e, FileNotFoundError) else "unreadable-image"
            raise RecordError(kind, pair.image, str(e)) from e
        try:
            label_bytes = self.conv.source.read(pair.label)
            labels = read_label_map(label_bytes)
        except Exception as e:  # noqa: BLE001
            raise RecordError("unreadable-annotation", pair.label, f"cannot read label map: {e}") from e
        values = check_label_map(labels, image, self.num_classes, pair.label)
        return image, label_bytes, values

    def failed(self, pair: Pair, exc: Exception) -> None:
        file = getattr(exc, "file", pair.image or pair.label or pair.stem)
        self.conv.error(file, f"{pair.split}/{pair.stem}", getattr(exc, "kind", "unreadable-image"), str(exc))

    def rows(self, pair: Pair, loaded: tuple[LoadedImage, bytes, np.ndarray]) -> list[dict]:
        image, label_bytes, values = loaded
        build = self.conv.build
        image_uri = build.add_file(f"images/{pair.split}/{posixpath.basename(pair.image)}", image.data)
        map_uri = build.add_file(f"labels/{self.level}/{pair.split}/{pair.stem}.png", label_bytes)
        self.present.update(int(v) for v in values if 0 < v <= self.num_classes)
        return [label_map_row(pair.split, pair.stem, image_uri, image, map_uri, self.level)]


def convert_label_map_pairs(conv: Conversion, pairs: Sequence[Pair], *, level: str, num_classes: int) -> list[dict]:
    """Stage each good pair (image + map) and return one whole-image row per image."""
    return LabelMapPairs(conv, level, num_classes).convert(pairs)


class LabelMapConverter(Converter):
    """A dataset of image + label-map folders: a subclass names its layouts, level, class count and ``info``."""

    level: ClassVar[str]
    num_classes: ClassVar[int]
    layouts: ClassVar[Sequence[Layout]]

    def records(self) -> list[Pair]:
        return find_pairs(self.conv, self.layouts, splits=self.opts.splits)

    def convert(self) -> tuple[list[dict], dict[str, Any]]:
        pairs = self.records()
        return convert_label_map_pairs(self.conv, pairs, level=self.level, num_classes=self.num_classes), self.info()


def label_map_row(split: str, stem: str, image_uri: str, image: LoadedImage, map_uri: str, level: str) -> dict:
    return {
        "region_id": f"{split}/{stem}",
        "image_id": stem,
        "image_uri": image_uri,
        "width": image.width,
        "height": image.height,
        "split": split,
        "level": level,
        "label": LABEL_MAP_LABEL,
        "label_id": LABEL_MAP_ID,
        "label_map_uri": map_uri,
        "sample_rule": "whole-image",
    }


def read_class_names(conv: Conversion, classes_file: str | None, class_names: list[str] | None, count: int):
    """Class names from an option list, a text file in the source (one per line), or None."""
    if class_names is not None:
        names = list(class_names)
    elif classes_file is not None:
        try:
            text = conv.source.read_text(classes_file)
        except FileNotFoundError:
            raise DatasetError(f"{conv.name}: classes_file {classes_file!r} is not in {conv.source.uri}") from None
        names = [line.strip() for line in text.splitlines() if line.strip()]
    else:
        return None
    if len(names) != count:
        raise DatasetError(f"{conv.name}: {len(names)} class names given, the dataset has {count} classes")
    return names
