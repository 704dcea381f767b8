"""The feature cache: content keys, the on-storage layout, and the reader probes and reports use.

Layout, one folder per feature key::

    <root>/features/<feature-key>/
        plan.json              how regions were cut into shards (fixed at the first run, so a rerun resumes)
        errors-<shard>.parquet regions skipped in that shard (region id, reason), written before its part
        part-<shard>.parquet   one row per encoded region: row, region_id, one column per tap
        errors.parquet         every skipped region (merged at the end)
        _SUCCESS               written last, once: the key's inputs, taps and their shapes, rows, errors,
                               bytes, and every data file with its size (``files``)
        .writer.lock           held by the one process extracting this key (``partaware.locks``)

A part file appears whole (atomic write) and only once every region of its shard is in it, so its
existence marks the shard done. A ``_SUCCESS`` whose ``files`` disagree with the folder (a part
missing, replaced or added) marks a half-published set: readers refuse it and the next extraction
repairs it (``publish_problem``). The key is a digest of everything that changes the bytes (dataset
version, which kinds of manifest rows were encoded, encoder name and weights digest, input size,
mean/std/interpolation, preprocessing version, compute precision, taps and their storage dtype), never of
a path.
"""

from __future__ import annotations

import hashlib
import json
import math
import posixpath
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from partaware.errors import PartawareError, StorageError
from partaware.parquet import table_to_parquet_bytes
from partaware.storage import StorageRoot

FEATURES = "features"
KEY_CHARS = 20
PLAN_FILE = "plan.json"
ERRORS_FILE = "errors.parquet"
_PART = re.compile(r"^part-(\d{5})\.parquet$")
ERRORS_SCHEMA = pa.schema(
    [pa.field("row", pa.int64()), pa.field("region_id", pa.string()), pa.field("reason", pa.string())]
)


class ExtractionError(PartawareError):
    """Extraction could not produce a complete, verified feature set (error rate, lost regions)."""


def tap_dtype(tap: str) -> str:
    """Storage dtype: patch-token maps are large, so fp16; pooled vectors stay fp32."""
    return "float16" if tap.startswith("patch:") else "float32"


def feature_key(
    *,
    dataset: str,
    dataset_version: str,
    encoder: str,
    weights_digest: str,
    input_size: int,
    mean: Sequence[float],
    std: Sequence[float],
    interpolation: str,
    preprocess_version: str,
    precision: str,
    taps: Sequence[str],
    kinds: Sequence[str] = ("regions",),
    regions_digest: str | None = None,
) -> str:
    """Digest of everything that changes the feature bytes (taps and kinds order-free).

    ``kinds`` (which manifest rows were encoded) is in the key so two selections never share an entry;
    ``regions_digest`` names a region table given instead of the manifest (gallery windows and patches).
    """
    blob = {
        "dataset": dataset,
        "dataset_version": dataset_version,
        "encoder": encoder,
        "weights_digest": weights_digest,
        "input_size": int(input_size),
        "mean": [float(v) for v in mean],
        "std": [float(v) for v in std],
        "interpolation": interpolation,
        "preprocess_version": preprocess_version,
        "precision": precision,
        "taps": {t: tap_dtype(t) for t in sorted(set(taps))},
        "kinds": sorted(set(kinds)),
    }
    if regions_digest is not None:
        blob["regions"] = regions_digest
    return hashlib.sha256(json.dumps(blob, sort_keys=True).encode()).hexdigest()[:KEY_CHARS]


def part_name(shard: int) -> str:
    return f"part-{shard:05d}.parquet"


def errors_name(shard: int) -> str:
    return f"errors-{shard:05d}.parquet"


def data_files(froot: StorageRoot) -> dict[str, int]:
    """Name -> size of the folder's data files (parts and errors tables; no plan, marker or lock), one listing."""
    try:
        entries = froot.fs.ls(froot.path, detail=True)
    except FileNotFoundError:
        return {}
    names = {posixpath.basename(e["name"].rstrip("/")): int(e.get("size") or 0) for e in entries}
    return {n: size for n, size in names.items() if n.endswith(".parquet") and not n.startswith(".")}


def publish_problem(froot: StorageRoot, info: dict[str, Any]) -> str | None:
    """Why a feature folder disagrees with its ``_SUCCESS`` (None when it agrees): checked on every cache hit,
    so it costs one listing. Older markers without ``files`` are checked by their shard count."""
    found = data_files(froot)
    if "files" in info:
        expected = {n: int(size) for n, size in info["files"].items()}
        if found != expected:
            changed = sorted(n for n in set(found) | set(expected) if found.get(n) != expected.get(n))
            return f"its files differ from what _SUCCESS lists: {', '.join(changed[:5])}"
        return None
    parts = [n for n in found if _PART.match(n)]
    if "shards" in info and len(parts) != int(info["shards"]):
        return f"{len(parts)} part files where _SUCCESS says {info['shards']} shards"
    return None


def completed_shards(froot: StorageRoot) -> set[int]:
    """Shards whose part file exists (each written atomically, only once its shard was complete)."""
    return {int(m.group(1)) for name in froot.listdir() if (m := _PART.match(name))}


def shard_table(rows: np.ndarray, region_ids: Sequence[str], taps: dict[str, np.ndarray]) -> pa.Table:
    """One part file's table. A tap is a fixed-size list column (flattened), its shape in field metadata."""
    fields = [pa.field("row", pa.int64()), pa.field("region_id", pa.string())]
    arrays: list[pa.Array] = [pa.array(rows, pa.int64()), pa.array(list(region_ids), pa.string())]
    for tap, values in taps.items():
        values = np.ascontiguousarray(values, dtype=tap_dtype(tap))
        shape = values.shape[1:]
        width = int(np.prod(shape)) if shape else 1
        flat = pa.array(values.reshape(-1), type=pa.from_numpy_dtype(values.dtype))
        arrays.append(pa.FixedSizeListArray.from_arrays(flat, width))
        fields.append(pa.field(tap, pa.list_(flat.type, width), metadata={"shape": json.dumps(list(shape))}))
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields))


def errors_table(rows: Sequence[int], region_ids: Sequence[str], reasons: Sequence[str]) -> pa.Table:
    return pa.table({"row": list(rows), "region_id": list(region_ids), "reason": list(reasons)}, schema=ERRORS_SCHEMA)


def write_table(froot: StorageRoot, table: pa.Table, name: str) -> int:
    """Write one Parquet file atomically; returns its size in bytes."""
    data = table_to_parquet_bytes(table, compression="zstd")
    froot.write_bytes(data, name)
    return len(data)


# --- reading -----------------------------------------------------------------------------------


def read_columns(froot: StorageRoot, name: str, columns: Sequence[str] | None = None) -> pa.Table:
    """Some columns of one Parquet file; on object stores only their byte ranges are fetched."""
    with froot.fs.open(froot.join(name), "rb") as f:
        return pq.read_table(f, columns=list(columns) if columns is not None else None, use_threads=False)


def read_schema(froot: StorageRoot, name: str) -> pa.Schema:
    with froot.fs.open(froot.join(name), "rb") as f:
        return pq.read_schema(f)


def tap_info(schema: pa.Schema) -> dict[str, dict[str, Any]]:
    """Tap -> {shape, dtype} from a part file's schema."""
    return {
        f.name: {"shape": json.loads(f.metadata[b"shape"]), "dtype": tap_dtype(f.name)}
        for f in schema
        if f.name not in ("row", "region_id")
    }


@dataclass
class FeatureSet:
    """Features of one key, rows in manifest order.

    ``region_ids[i]`` and ``rows[i]`` (its row in the dataset manifest) name row ``i`` of every array in
    ``features``: ``features["cls"]`` is ``(N, D)`` float32, ``features["patch:4"]`` is ``(N, D, h, w)``
    float16. Regions that could not be encoded are in ``errors`` (dicts: row, region_id, reason), not in
    the arrays.
    """

    key: str
    region_ids: np.ndarray  # (N,) object array of str
    rows: np.ndarray  # (N,) int64, manifest row index
    features: dict[str, np.ndarray]
    info: dict[str, Any] = field(default_factory=dict)  # the ``_SUCCESS`` record
    errors: list[dict[str, Any]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.region_ids)


def feature_set_info(root: StorageRoot, key: str) -> dict[str, Any]:
    """The ``_SUCCESS`` record of a complete feature set (rows, taps and their shapes), without reading it."""
    froot = root.sub(FEATURES, key)
    if not froot.is_complete():
        raise StorageError(f"feature set {key} under {root.uri} is missing or incomplete (no _SUCCESS)")
    return froot.completion_info()


def tap_bytes(info: dict[str, Any], tap: str, dtype: str | None = None) -> int:
    """Bytes of one tap of a feature set as an array (as stored, or as ``dtype``): rows x shape x item size."""
    shape = info["taps"][tap]["shape"]
    return int(info.get("rows", 0)) * math.prod(shape) * np.dtype(dtype or tap_dtype(tap)).itemsize


def _column_array(table: pa.Table, tap: str) -> np.ndarray:
    col = table.column(tap).combine_chunks()
    shape = json.loads((table.schema.field(tap).metadata or {}).get(b"shape", b"[]"))
    flat = col.values.to_numpy(zero_copy_only=False)
    return flat.reshape(len(table), *shape)


def read_features(root: StorageRoot, key: str, taps: Sequence[str] | None = None) -> FeatureSet:
    """The complete feature set under ``key`` (``StorageError`` if missing or incomplete).

    Reads only the requested taps' columns (all taps when ``taps`` is None), shard by shard.
    """
    froot = root.sub(FEATURES, key)
    info = feature_set_info(root, key)
    available = list(info.get("taps", {}))
    wanted = list(taps) if taps is not None else available
    unknown = [t for t in wanted if t not in available]
    if unknown:
        raise StorageError(f"feature set {key} has no tap(s) {unknown}; it holds: {', '.join(available)}")
    shards = sorted(completed_shards(froot))
    heads = [read_columns(froot, part_name(shard), ["row", "region_id"]) for shard in shards]  # small columns first
    row_arr = np.concatenate([h.column("row").to_numpy() for h in heads]) if heads else np.zeros(0, np.int64)
    if len(row_arr) != int(info.get("rows", len(row_arr))) or len(np.unique(row_arr)) != len(row_arr):
        raise StorageError(
            f"feature set {key} under {root.uri} holds {len(row_arr)} rows ({len(np.unique(row_arr))} distinct) "
            f"where its _SUCCESS says {info.get('rows')}: rerun the extraction to repair it"
        )
    order = np.argsort(row_arr, kind="stable")
    position = np.empty_like(order)
    position[order] = np.arange(len(order))
    # Each tap is filled in place, shard by shard, at its rows' sorted positions: the peak is the set plus one
    # shard, not the two or three copies a concatenate-then-reorder makes (attentive tokens are the largest).
    features = {t: np.empty((len(row_arr), *info["taps"][t]["shape"]), dtype=tap_dtype(t)) for t in wanted}
    offset = 0
    for shard, head in zip(shards, heads, strict=True):
        n = head.num_rows
        if wanted:
            table = read_columns(froot, part_name(shard), wanted)
            for t in wanted:
                features[t][position[offset : offset + n]] = _column_array(table, t)
            del table
        offset += n
    errors = []
    if froot.exists(ERRORS_FILE):
        errors = read_columns(froot, ERRORS_FILE).to_pylist()
    ids = [np.asarray(h.column("region_id").to_pylist(), dtype=object) for h in heads]
    id_arr = np.concatenate(ids) if ids else np.zeros(0, dtype=object)
    return FeatureSet(key, id_arr[order], row_arr[order], features, info, errors)


@dataclass(frozen=True)
class FeatureInfo:
    """One cached feature set, as ``partctl features list`` shows it."""

    key: str
    encoder: str
    dataset: str
    dataset_version: str
    taps: list[str]
    rows: int
    errors: int
    bytes: int
    complete: bool


def list_features(root: StorageRoot, *, include_incomplete: bool = False) -> list[FeatureInfo]:
    """Feature sets under ``root`` (complete ones; also partial ones with ``include_incomplete``)."""
    out = []
    for key in root.listdir(FEATURES):
        if key.startswith((".", "_")):
            continue
        froot = root.sub(FEATURES, key)
        if froot.is_complete():
            i = froot.completion_info()
            out.append(
                FeatureInfo(
                    key,
                    i.get("encoder", "?"),
                    i.get("dataset", "?"),
                    i.get("dataset_version", "?"),
                    list(i.get("taps", {})),
                    int(i.get("rows", 0)),
                    int(i.get("errors", 0)),
                    int(i.get("bytes", 0)),
                    True,
                )
            )
        elif include_incomplete:
            plan = froot.read_json(PLAN_FILE) if froot.exists(PLAN_FILE) else {}
            out.append(
                FeatureInfo(
                    key,
                    plan.get("encoder", "?"),
                    plan.get("dataset", "?"),
                    plan.get("dataset_version", "?"),
                    list(plan.get("taps", [])),
                    0,
                    0,
                    0,
                    False,
                )
            )
    return out
