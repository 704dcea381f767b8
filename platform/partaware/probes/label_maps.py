"""Segmentation inputs: the cached patch maps of whole-image label-map rows and their label maps, aligned.

Why the labels are made here: converters keep each release's maps as shipped (0 = background or
unlabelled, k = class k-1) and ``dataset.json`` states the convention (``convert.label_map_info``), so
one reader applies it to every dataset alike: the paper's ``reduce_zero_label`` (0 -> 255, k -> k-1),
255 ignored.

Why the maps are stretched, not cropped: extraction encodes a whole-image row as the whole image
stretched to the encoder's square input (``extract.crops``, box None), so a label map is stretched the
same way (NEAREST, straight to the label size) and each feature cell lines up with its pixels. The default
label size is 4x the patch grid: the paper's head output ("4x bilinear") before the loss.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from partaware.datasets.convert import bounded_map, is_label_map_row, level_label_map_info, read_label_map
from partaware.errors import DatasetError
from partaware.probes.errors import ProbeInputError
from partaware.probes.metrics import IGNORE_INDEX
from partaware.storage import safe_relpath

if TYPE_CHECKING:
    import pyarrow as pa

    from partaware.datasets.store import PreparedDataset
    from partaware.extract.features import FeatureSet

#: Threads reading label maps (I/O bound on object stores; PNG decoding releases the GIL).
READ_WORKERS = 8


@dataclass(frozen=True)
class LabelConvention:
    """How a dataset's stored label values become classes 0..K-1 (and ``IGNORE_INDEX``)."""

    num_classes: int
    reduce_zero_label: bool
    ignore_index: int

    def apply(self, stored: np.ndarray) -> np.ndarray:
        """Stored values -> uint8 classes, ``IGNORE_INDEX`` where ignored; ``ValueError`` for any other value."""
        stored = np.asarray(stored).astype(np.int64)
        ignored = stored == self.ignore_index
        if self.reduce_zero_label:
            ignored |= stored == 0
            labels = stored - 1
        else:
            labels = stored
        bad = ~ignored & ((labels < 0) | (labels >= self.num_classes))
        if bad.any():
            shown = np.unique(stored[bad])[:10].tolist()
            top = self.num_classes if self.reduce_zero_label else self.num_classes - 1
            raise ValueError(f"values {shown} outside the dataset's labels (0..{top}, {self.ignore_index} = ignore)")
        return np.where(ignored, IGNORE_INDEX, labels).astype(np.uint8)


@dataclass(frozen=True)
class MapRow:
    """One whole-image label-map row of the manifest."""

    row: int
    region_id: str
    split: str
    uri: str


def label_convention(prepared: PreparedDataset, level: str) -> LabelConvention:
    """The convention ``dataset.json`` states for ``level``'s maps; ``DatasetError`` if it states none."""
    info = level_label_map_info(prepared.info, level)
    where = f"dataset {prepared.name} {prepared.version}"
    if info is None:
        raise DatasetError(f"{where}: dataset.json states no label-map convention for level {level!r}")
    try:
        convention = LabelConvention(
            int(info["num_classes"]), bool(info["reduce_zero_label"]), int(info["ignore_index"])
        )
    except (KeyError, TypeError, ValueError) as e:
        raise DatasetError(f"{where}: the label-map convention of level {level!r} is incomplete: {e!r}") from None
    if not 0 < convention.num_classes <= IGNORE_INDEX:  # classes 0..K-1 must stay below the ignore value
        raise DatasetError(f"{where}: {convention.num_classes} {level} classes; 1..{IGNORE_INDEX} fit uint8")
    return convention


def label_map_rows(manifest: pa.Table, level: str) -> dict[int, MapRow]:
    """manifest row -> its ``MapRow``, for the whole-image label-map rows of ``level``."""
    columns = ["region_id", "split", "level", "label_id", "sample_rule", "label_map_uri"]
    rows = manifest.select(columns).to_pylist()
    return {
        i: MapRow(i, r["region_id"], r["split"], r["label_map_uri"])
        for i, r in enumerate(rows)
        if r["level"] == level and is_label_map_row(r)
    }


def read_labels(
    prepared: PreparedDataset, rows: Sequence[MapRow], size: int, convention: LabelConvention
) -> np.ndarray:
    """(N, size, size) uint8: each map stretched to the square with NEAREST, then the convention applied.

    ``DatasetError`` naming the file and manifest row for a map that cannot be read or breaks the convention.
    """

    def load(r: MapRow) -> np.ndarray:
        stored = read_label_map(prepared.root.read_bytes(safe_relpath(r.uri)))
        labels = Image.fromarray(convention.apply(stored))  # apply first: a uint8 map resizes in any mode
        return np.asarray(labels.resize((size, size), resample=Image.Resampling.NEAREST), dtype=np.uint8)

    out = np.empty((len(rows), size, size), np.uint8)
    for i, (r, result) in enumerate(bounded_map(load, rows, READ_WORKERS)):
        if isinstance(result, Exception):
            raise DatasetError(
                f"dataset {prepared.name} {prepared.version}: label map {r.uri} (manifest row {r.row}, "
                f"region {r.region_id}) is unusable: {type(result).__name__}: {result}"
            ) from result
        out[i] = result
    return out


def _check_features(prepared: PreparedDataset, fs: FeatureSet, taps: Sequence[str]) -> None:
    missing = [t for t in taps if t not in fs.features]
    if not taps or missing:
        raise ProbeInputError(f"segmentation needs patch taps {list(taps)}; the feature set has {sorted(fs.features)}")
    version = fs.info.get("dataset_version")
    if version is not None and version != prepared.version:
        raise ProbeInputError(
            f"feature set {fs.key} is of {prepared.name} {version}, not of version {prepared.version}: "
            "its rows index another manifest"
        )


def segmentation_arrays(
    prepared: PreparedDataset,
    manifest: pa.Table,
    fs: FeatureSet,
    *,
    level: str,
    taps: list[str],
    splits: Mapping[str, str],
    label_size: int | None = None,
) -> tuple[dict[str, list[np.ndarray]], dict[str, np.ndarray], int]:
    """Per probe split: the per-tap maps ((N, D, h, w) float32, in ``taps`` order) and labels (N, H, W) uint8.

    Rows: the feature rows of ``level``'s whole-image label-map rows. ``splits``: probe split -> manifest
    split (a comma list pools several); a split with no rows is left out. Labels are ``label_size``
    square (default 4x the patch grid), classes 0..K-1, 255 ignored. Returns ``(maps, labels, K)``, K from
    the dataset's stated convention, never from the data.
    """
    _check_features(prepared, fs, taps)
    if label_size is not None and label_size < 1:
        raise ProbeInputError(f"label_size must be a positive number of pixels, got {label_size}")
    convention = label_convention(prepared, level)
    picked = label_map_rows(manifest, level)
    selected = np.flatnonzero([int(r) in picked for r in fs.rows])
    if not selected.size:  # nothing of this level was extracted: the caller names what is missing
        return {}, {}, convention.num_classes
    size = label_size or 4 * int(fs.features[taps[0]].shape[-2])
    row_split = np.array([picked[int(fs.rows[i])].split for i in selected], dtype=object)
    maps: dict[str, list[np.ndarray]] = {}
    labels: dict[str, np.ndarray] = {}
    for role, names in splits.items():
        index = selected[np.isin(row_split, names.split(","))]
        if not index.size:
            continue
        maps[role] = [fs.features[t][index].astype(np.float32, copy=False) for t in taps]
        labels[role] = read_labels(prepared, [picked[int(fs.rows[i])] for i in index], size, convention)
    return maps, labels, convention.num_classes
