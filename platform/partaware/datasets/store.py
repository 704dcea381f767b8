"""Publishing and finding prepared datasets under ``<root>/datasets/<name>/<version>/``.

One shared writer does the risky part for every converter (as Hugging Face ``datasets``' builder
does): files are staged, checksummed and published under a version folder named by the content
digest; ``manifest.parquet``, ``checksums.json`` and ``dataset.json`` go in next, and ``_SUCCESS``
is written last, so a half-written version is never taken for a complete one.

A *recipe* (the source plus every option that changes the output) maps to the version it produced
(``_recipes/<recipe-key>.json``), so preparing the same source twice does no work the second time.

Publishing cannot race: on a local root the staged folder, ``_SUCCESS`` included, becomes the version by
one rename, and a writer that finds the version already complete discards its copy (two ``data prepare``
of one recipe both succeed, with one version). A version folder left half-published (no ``dataset.json``
or manifest beside its ``_SUCCESS``) is replaced on the next build. Each staging folder
(``.incomplete-<token>``) is held by its writer through a lock file (``flock``) beside it; the next build
removes staging folders whose writer is gone (``kill -9``), and unlocked ones older than
``$PARTAWARE_STALE_STAGING_S`` (default one hour).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
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
from partaware.storage import SUCCESS, StorageRoot, safe_relpath

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
STAGING_PREFIX = ".incomplete-"
STALE_STAGING_ENV = "PARTAWARE_STALE_STAGING_S"
#: what a complete version folder holds besides its files (a ``_SUCCESS`` alone is a half-published one)
VERSION_FILES = (SUCCESS, INFO_FILE, MANIFEST_FILE, CHECKSUMS_FILE)


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
        else:
            parent = os.path.join(tempfile.gettempdir(), "partaware-staging", name)
        os.makedirs(parent, exist_ok=True)
        remove_stale_staging(parent)
        self._lock = StagingLock.create(parent)
        self.staging = self._lock.folder
        os.makedirs(self.staging)

    def __enter__(self) -> DatasetBuild:
        return self

    def __exit__(self, *exc: object) -> None:
        shutil.rmtree(self.staging, ignore_errors=True)
        shutil.rmtree(self.staging + "-old", ignore_errors=True)
        self._lock.release()

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
        completion = {"version": version, "rows": table.num_rows}
        if self.root.is_local:
            self._publish_local(vroot, completion)
        elif not is_intact(vroot):  # object stores: upload (same keys, same bytes), then _SUCCESS last, once
            self.root.fs.put(self.staging.rstrip("/") + "/", vroot.path, recursive=True)
            with contextlib.suppress(FileExistsError):  # another writer of the recipe (or a half-publish) wrote it
                vroot.mark_complete(info=completion, exclusive=True)
        self.root.write_json({"version": version}, "datasets", self.name, RECIPES, f"{self.key}.json")
        return PreparedDataset(self.name, version, vroot, full_info)

    def _publish_local(self, vroot: StorageRoot, completion: dict[str, Any]) -> None:
        """Rename the staged folder, ``_SUCCESS`` already inside, into place: readers see all of it or none.

        A complete version already there (another writer of the same recipe) wins and ours is discarded;
        a half-published one is moved aside and replaced.
        """
        with open(os.path.join(self.staging, SUCCESS), "w") as f:
            json.dump(completion, f, indent=2, sort_keys=True)
        aside = self.staging + "-old"
        for _ in range(5):
            if is_intact(vroot):
                return
            if os.path.lexists(vroot.path):
                try:
                    os.rename(vroot.path, aside)
                except FileNotFoundError:
                    continue  # another writer moved it first
                shutil.rmtree(aside, ignore_errors=True)
            try:
                os.rename(self.staging, vroot.path)
                return
            except OSError as e:
                if e.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                    raise
        raise StorageError(f"{vroot.uri}: could not publish: other writers keep replacing it; rerun the prepare")


def is_intact(vroot: StorageRoot) -> bool:
    """A published version: its ``_SUCCESS`` and the files written before it (not ``_SUCCESS`` alone)."""
    return all(vroot.exists(name) for name in VERSION_FILES)


# --- staging folders and their writers -----------------------------------------------------------


@dataclass
class StagingLock:
    """A writer's hold on ``<parent>/.incomplete-<token>``: the lock file ``.incomplete-<token>.lock`` beside it,
    ``flock``-ed for the writer's lifetime (the kernel drops the lock when the process dies, ``kill -9`` too)."""

    folder: str
    path: str
    fd: int | None

    @classmethod
    def create(cls, parent: str) -> StagingLock:
        token = uuid.uuid4().hex
        folder = os.path.join(parent, f"{STAGING_PREFIX}{token}")
        tmp = f"{folder}.lock.tmp"
        fd = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.write(fd, json.dumps({"pid": os.getpid(), "host": os.uname().nodename, "started": time.time()}).encode())
        os.rename(tmp, f"{folder}.lock")  # appears already locked: a cleaner never sees it free
        return cls(folder, f"{folder}.lock", fd)

    def release(self) -> None:
        if self.fd is None:
            return
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        os.close(self.fd)
        self.fd = None


def _stale_after_s() -> float:
    raw = os.environ.get(STALE_STAGING_ENV, "").strip()
    try:
        return max(0.0, float(raw)) if raw else 3600.0
    except ValueError:
        return 3600.0


def remove_stale_staging(parent: str) -> list[str]:
    """Remove the staging folders under ``parent`` that no live writer holds; return their names.

    Locked (a writer is alive): kept. Lock free (the writer died): removed. No lock file (an older
    layout, or a moved-aside version): removed once older than ``$PARTAWARE_STALE_STAGING_S``.
    """
    removed = []
    now, stale_after = time.time(), _stale_after_s()
    try:
        entries = list(os.scandir(parent))
    except FileNotFoundError:
        return removed
    for entry in entries:
        if not entry.name.startswith(STAGING_PREFIX) or entry.name.endswith(".lock.tmp"):
            continue
        token = entry.name[len(STAGING_PREFIX) :].split("-", 1)[0].removesuffix(".lock")
        lock = os.path.join(parent, f"{STAGING_PREFIX}{token}.lock")
        if entry.name.endswith(".lock"):
            if not any(e.name.startswith(f"{STAGING_PREFIX}{token}") and e.is_dir() for e in entries):
                _remove_if_unheld(lock, None)
            continue
        if os.path.exists(lock):
            if _remove_if_unheld(lock, entry.path):
                removed.append(entry.name)
        elif now - _mtime(entry.path) > stale_after:
            shutil.rmtree(entry.path, ignore_errors=True)
            removed.append(entry.name)
    return removed


def _remove_if_unheld(lock: str, folder: str | None) -> bool:
    """If no process holds ``lock``, remove ``folder`` (if given) and the lock file; True if removed."""
    try:
        fd = os.open(lock, os.O_RDWR)
    except FileNotFoundError:
        return False
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False  # its writer is alive
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(lock)
        return True
    finally:
        os.close(fd)


def _mtime(path: str) -> float:
    try:
        return os.stat(path).st_mtime
    except OSError:
        return time.time()


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
        try:
            out.append(open_prepared(root, name, entry))
        except StorageError:  # half-published: the next prepare of its recipe repairs it
            continue
    return sorted(out, key=lambda d: d.info.get("created", ""))


def open_prepared(root: StorageRoot, name: str, version: str | None = None) -> PreparedDataset:
    """A complete version (the newest when ``version`` is None); ``StorageError`` if there is none."""
    if version is None:
        versions = list_versions(root, name)
        full = [v for v in versions if "subset" not in v.info]  # a job's ``limit`` subset is never "the" dataset
        versions = full or versions
        if not versions:
            raise StorageError(f"dataset {name!r} is not prepared under {root.uri}: run `partctl data prepare {name}`")
        return versions[-1]
    vroot = root.sub("datasets", name, version)
    if not is_intact(vroot):
        raise StorageError(
            f"dataset {name!r} version {version} under {root.uri} is missing or incomplete: "
            f"run `partctl data prepare {name}` again"
        )
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
