"""The unified region manifest: one row per region to encode, the schema every stage reads.

Every dataset converter (synthetic, CUB, COCO keypoints, PartImageNet, Pascal-Part, ADE20K, LIP,
ImageNet folders) emits exactly this schema, so extraction, probes and reports never special-case a
dataset. Paths inside a manifest are relative to the dataset version folder and are checked on read
(``safe_relpath``): a manifest can never point outside its own dataset.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from typing import Any

import pyarrow as pa

from partaware.errors import DatasetError
from partaware.parquet import parquet_bytes_to_table, table_to_parquet_bytes
from partaware.storage import safe_relpath

MANIFEST_FILE = "manifest.parquet"
CHECKSUMS_FILE = "checksums.json"
LEVELS = ("object", "part")
SPLITS = ("train", "val", "test")

#: One row per region. Descriptions travel in the Parquet schema metadata.
MANIFEST_SCHEMA = pa.schema(
    [
        pa.field("region_id", pa.string(), nullable=False, metadata={"doc": "unique, stable id of the region"}),
        pa.field("image_id", pa.string(), nullable=False, metadata={"doc": "id of the source image"}),
        pa.field("image_uri", pa.string(), nullable=False, metadata={"doc": "image path, relative to the dataset"}),
        pa.field("width", pa.int32(), nullable=False, metadata={"doc": "image width in pixels"}),
        pa.field("height", pa.int32(), nullable=False, metadata={"doc": "image height in pixels"}),
        pa.field("split", pa.string(), nullable=False, metadata={"doc": "train | val | test"}),
        pa.field("level", pa.string(), nullable=False, metadata={"doc": "object | part"}),
        pa.field("label", pa.string(), nullable=False, metadata={"doc": "class name at this level"}),
        pa.field("label_id", pa.int32(), nullable=False, metadata={"doc": "class index at this level"}),
        pa.field("object_label", pa.string(), nullable=True, metadata={"doc": "class of the whole object"}),
        pa.field("object_label_id", pa.int32(), nullable=True, metadata={"doc": "object class index"}),
        pa.field(
            "box",
            pa.list_(pa.float32(), 4),
            nullable=True,
            metadata={"doc": "region box x0,y0,x1,y1 in pixels (x1,y1 exclusive); null = whole image"},
        ),
        pa.field(
            "keypoint",
            pa.list_(pa.float32(), 2),
            nullable=True,
            metadata={"doc": "x,y of the keypoint the region is centred on, if any"},
        ),
        pa.field("keypoint_visible", pa.bool_(), nullable=True, metadata={"doc": "keypoint not occluded"}),
        pa.field("mask_uri", pa.string(), nullable=True, metadata={"doc": "index map holding the region's mask"}),
        pa.field("mask_index", pa.int32(), nullable=True, metadata={"doc": "mask = (map at mask_uri == index)"}),
        pa.field(
            "label_map_uri",
            pa.string(),
            nullable=True,
            metadata={"doc": "per-image segmentation map at this level (0 = background/ignored)"},
        ),
        pa.field(
            "sample_rule",
            pa.string(),
            nullable=False,
            metadata={"doc": "how the region was built: whole-image | object-box | part-box | keypoint-code | ..."},
        ),
    ]
)
_PATH_COLUMNS = ("image_uri", "mask_uri", "label_map_uri")


def manifest_table(rows: Iterable[Mapping[str, Any]]) -> pa.Table:
    """Rows (dicts) as a table in the unified schema, validated; missing nullable columns become null."""
    rows = list(rows)
    columns = {f.name: [r.get(f.name) for r in rows] for f in MANIFEST_SCHEMA}
    table = pa.table(columns, schema=MANIFEST_SCHEMA)
    validate_manifest(table)
    return table


def validate_manifest(table: pa.Table) -> None:
    """Raise ``DatasetError`` naming the first bad row: unknown level/split, duplicate id, unsafe path."""
    if not table.schema.equals(MANIFEST_SCHEMA, check_metadata=False):
        raise DatasetError(f"manifest schema differs from the unified schema:\n{table.schema}")
    data = table.select(["region_id", "split", "level", *_PATH_COLUMNS]).to_pylist()
    seen: set[str] = set()
    for i, row in enumerate(data):
        if row["region_id"] in seen:
            raise DatasetError(f"manifest row {i}: duplicate region_id {row['region_id']!r}")
        seen.add(row["region_id"])
        if row["level"] not in LEVELS:
            raise DatasetError(f"manifest row {i}: level {row['level']!r} is not one of {LEVELS}")
        if row["split"] not in SPLITS:
            raise DatasetError(f"manifest row {i}: split {row['split']!r} is not one of {SPLITS}")
        for col in _PATH_COLUMNS:
            if row[col] is not None:
                try:
                    safe_relpath(row[col])
                except DatasetError as e:
                    raise type(e)(f"manifest row {i} ({row['region_id']}), column {col}: {e}") from None


def manifest_bytes(table: pa.Table) -> bytes:
    """Deterministic Parquet bytes of a manifest (same rows, same bytes), so digests are stable."""
    return table_to_parquet_bytes(table)


def read_manifest(data: bytes) -> pa.Table:
    table = parquet_bytes_to_table(data)
    validate_manifest(table)
    return table


def content_digest(manifest: bytes, checksums: Mapping[str, str]) -> str:
    """The dataset version: sha256 over the manifest bytes and every file's checksum, in path order."""
    h = hashlib.sha256(manifest)
    for path in sorted(checksums):
        h.update(f"\n{path}\t{checksums[path]}".encode())
    return h.hexdigest()
