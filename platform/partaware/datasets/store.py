"""Publishing and finding prepared datasets under ``<root>/datasets/<name>/<version>/``.

One shared writer does the risky part for every converter (as Hugging Face ``datasets``' builder
does): files are staged, checksummed and published under a version folder named by the content
digest; ``manifest.parquet``, ``checksums.json`` and ``dataset.json`` go in next, and ``_SUCCESS``
is written last, so a half-written version is never taken for a complete one.

A *recipe* (the source plus every option that changes the output) maps to the version it produced
(``_recipes/<recipe-key>.json``), so preparing the same source twice does no work the second time.
"""

from __future__ import annotations

import hashlib
import json
import os
import posixpath
import shutil
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from partaware.errors import DatasetError, StorageError
from partaware.manifest import CHECKSUMS_FILE, MANIFEST_FILE, content_digest, manifest_bytes, manifest_table
from partaware.manifest import read_manifest as _read_manifest
from partaware.parquet import parquet_bytes_to_table, table_to_parquet_bytes
from partaware.storage import StorageRoot, safe_relpath

INFO_FILE = "dataset.json"
ERRORS_FILE = "errors.parquet"
RECIPES = "_recipes"
FAILED = "_errors"  # errors tables of builds that failed their error-rate check
MAX_ERRORS_IN_INFO = 50

#: One row per bad source item (the build went on without it).
ERRORS_SCHEMA = pa.schema(
    [
        pa.field("file", pa.string(), nullable=False, metadata={"doc": "source file, relative to the source"}),
        pa.field("record", pa.string(), nullable=True, metadata={"doc": "record in that file (line, id, ...)"}),
        pa.field("kind", pa.string(), nullable=False, metadata={"doc": "missing-image | unreadable-image | ..."}),
        pa.field("message", pa.string(), nullable=False, metadata={"doc": "what was wrong"}),
    ]
)
VERSION_CHARS = 16


def recipe_key(name: str, recipe: Mapping[str, Any]) -> str:
    """A stable digest of everything that changes a converter's output."""
    blob = json.dumps({"dataset": name, **recipe}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:VERSION_CHARS]


@dataclass(frozen=True)
class PreparedDataset:
    """A complete, published dataset version."""

    name: str
    version: str
    root: StorageRoot  # the version folder
    info: dict[str, Any]

    @property
    def uri(self) -> str:
        return self.root.uri

    def manifest(self) -> pa.Table:
        return _read_manifest(self.root.read_bytes(MANIFEST_FILE))

    def checksums(self) -> dict[str, str]:
        return self.root.read_json(CHECKSUMS_FILE)

    def errors(self) -> pa.Table:
        """The bad source records skipped while converting (empty table if none, or for older versions)."""
        if not self.root.exists(ERRORS_FILE):
            return errors_table([])
        return parquet_bytes_to_table(self.root.read_bytes(ERRORS_FILE))


class DatasetBuild:
    """Stage a dataset's files, then ``publish`` them as one complete version.

    Files are staged on local disk (inside the storage root when it is local, so publishing is one
    rename; in a temporary folder otherwise, then uploaded). Use as a context manager so an aborted
    build leaves nothing behind.
    """

    def __init__(self, root: StorageRoot, name: str, recipe: Mapping[str, Any]):
        self.root, self.name, self.recipe = root, name, dict(recipe)
        self.key = recipe_key(name, self.recipe)
        self.checksums: dict[str, str] = {}
        self.errors: list[dict[str, Any]] = []
        if root.is_local:
            parent = root.join("datasets", name)
            os.makedirs(parent, exist_ok=True)
            self.staging = os.path.join(parent, f".incomplete-{uuid.uuid4().hex}")
            os.makedirs(self.staging)
        else:
            self.staging = tempfile.mkdtemp(prefix=f"partaware-{name}-")

    def __enter__(self) -> DatasetBuild:
        return self

    def __exit__(self, *exc: object) -> None:
        shutil.rmtree(self.staging, ignore_errors=True)

    def add_file(self, relpath: str, data: bytes) -> str:
        """Stage one file (image, mask, label map) and record its sha256; returns the safe relative path."""
        relpath = safe_relpath(relpath)
        if relpath in self.checksums:
            raise DatasetError(f"{self.name}: file {relpath!r} added twice")
        dest = os.path.join(self.staging, relpath)
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        with open(dest, "wb") as f:
            f.write(data)
        self.checksums[relpath] = hashlib.sha256(data).hexdigest()
        return relpath

    def add_error(self, file: str, row: int | str | None, message: str, *, kind: str = "error") -> None:
        """Record a bad source item (the build goes on): ``errors.parquet`` beside the manifest lists them."""
        self.errors.append({"file": file, "row": None if row is None else str(row), "kind": kind, "error": message})

    def errors_table(self) -> pa.Table:
        return errors_table(self.errors)

    def check_error_rate(self, records: int, max_rate: float, *, bad: int | None = None) -> None:
        """Fail (``DatasetError`` with a summary) if more than ``max_rate`` of ``records`` were bad.

        ``bad`` counts bad records (several errors may name one record); default: one per error.
        The failed build's errors table is kept at ``datasets/<name>/_errors/<recipe-key>.parquet``.
        """
        bad = len(self.errors) if bad is None else bad
        if not self.errors or bad <= max_rate * max(records, 1):
            return
        where = self.root.write_bytes(
            table_to_parquet_bytes(self.errors_table()), "datasets", self.name, FAILED, f"{self.key}.parquet"
        )
        raise DatasetError(
            f"{self.name}: {bad} bad records out of {records} "
            f"({bad / max(records, 1):.1%} > max_error_rate {max_rate:.1%}); nothing was published.\n"
            f"{error_summary(self.errors)}\n  full list: {where}"
        )

    def publish(self, rows: Iterable[Mapping[str, Any]], info: Mapping[str, Any] | None = None) -> PreparedDataset:
        """Write the manifest, publish the version folder, mark it complete, and remember the recipe."""
        table = manifest_table(rows)
        missing = {
            u
            for col in ("image_uri", "mask_uri", "label_map_uri")
            for u in table.column(col).to_pylist()
            if u is not None
        } - set(self.checksums)
        if missing:
            raise DatasetError(f"{self.name}: manifest names files that were not added: {sorted(missing)[:5]}")
        manifest = manifest_bytes(table)
        version = content_digest(manifest, self.checksums)[:VERSION_CHARS]
        full_info = {
            "name": self.name,
            "version": version,
            "recipe": self.recipe,
            "recipe_key": self.key,
            "rows": table.num_rows,
            "images": len(set(table.column("image_id").to_pylist())),
            "regions_per_level": dict(sorted(Counter(table.column("level").to_pylist()).items())),
            "files": len(self.checksums),
            "bytes": sum(os.path.getsize(os.path.join(self.staging, p)) for p in self.checksums),
            "errors": self.errors[:MAX_ERRORS_IN_INFO],
            "error_count": len(self.errors),
            "error_kinds": dict(Counter(e["kind"] for e in self.errors)),
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            **(info or {}),
        }
        with open(os.path.join(self.staging, MANIFEST_FILE), "wb") as f:
            f.write(manifest)
        with open(os.path.join(self.staging, CHECKSUMS_FILE), "w") as f:
            json.dump(self.checksums, f, indent=0, sort_keys=True)
        with open(os.path.join(self.staging, ERRORS_FILE), "wb") as f:
            f.write(table_to_parquet_bytes(self.errors_table()))
        with open(os.path.join(self.staging, INFO_FILE), "w") as f:
            json.dump(full_info, f, indent=2, sort_keys=True, default=str)

        vroot = self.root.sub("datasets", self.name, version)
        if not vroot.is_complete():
            if self.root.fs.exists(vroot.path):  # a crashed earlier publish: replace it
                self.root.fs.rm(vroot.path, recursive=True)
            if self.root.is_local:
                os.replace(self.staging, vroot.path)
            else:
                self.root.fs.put(self.staging.rstrip("/") + "/", vroot.path, recursive=True)
            vroot.mark_complete(info={"version": version, "rows": table.num_rows})
        self.root.write_json({"version": version}, "datasets", self.name, RECIPES, f"{self.key}.json")
        return PreparedDataset(self.name, version, vroot, full_info)


def find_prepared(root: StorageRoot, name: str, recipe: Mapping[str, Any]) -> PreparedDataset | None:
    """The complete version this recipe produced before, or None."""
    key = recipe_key(name, recipe)
    if not root.exists("datasets", name, RECIPES, f"{key}.json"):
        return None
    version = root.read_json("datasets", name, RECIPES, f"{key}.json")["version"]
    try:
        return open_prepared(root, name, version)
    except StorageError:
        return None


def list_versions(root: StorageRoot, name: str) -> list[PreparedDataset]:
    """Complete versions of a dataset, oldest first."""
    out = []
    for entry in root.listdir("datasets", name):
        if entry.startswith((".", "_")) or not root.is_complete("datasets", name, entry):
            continue
        out.append(open_prepared(root, name, entry))
    return sorted(out, key=lambda d: d.info.get("created", ""))


def open_prepared(root: StorageRoot, name: str, version: str | None = None) -> PreparedDataset:
    """A complete version (the newest when ``version`` is None); ``StorageError`` if there is none."""
    if version is None:
        versions = list_versions(root, name)
        if not versions:
            raise StorageError(f"dataset {name!r} is not prepared under {root.uri}: run `partctl data prepare {name}`")
        return versions[-1]
    vroot = root.sub("datasets", name, version)
    if not vroot.is_complete():
        raise StorageError(f"dataset {name!r} version {version} under {root.uri} is missing or incomplete")
    return PreparedDataset(name, version, vroot, vroot.read_json(INFO_FILE))


def dataset_file(prepared: PreparedDataset, relpath: str) -> str:
    """The filesystem path of a file named by a manifest row; rejects paths escaping the dataset."""
    return posixpath.join(prepared.root.path, safe_relpath(relpath))


def errors_table(errors: Iterable[Mapping[str, Any]]) -> pa.Table:
    """Error dicts (``file, row, kind, error``) as a table in ``ERRORS_SCHEMA`` (explicit types, even empty)."""
    errors = list(errors)
    return pa.table(
        {
            "file": [e["file"] for e in errors],
            "record": [e.get("row") for e in errors],
            "kind": [e.get("kind", "error") for e in errors],
            "message": [e["error"] for e in errors],
        },
        schema=ERRORS_SCHEMA,
    )


def error_summary(errors: list[Mapping[str, Any]], *, examples: int = 5) -> str:
    """Counts per kind and the first few errors, one per line, for messages and the CLI."""
    kinds = Counter(e.get("kind", "error") for e in errors)
    lines = ["  " + ", ".join(f"{k}: {n}" for k, n in kinds.most_common())]
    for e in errors[:examples]:
        record = f", {e['row']}" if e.get("row") is not None else ""
        lines.append(f"  {e['file']}{record}: {e['error']}")
    if len(errors) > examples:
        lines.append(f"  ... and {len(errors) - examples} more")
    return "\n".join(lines)
