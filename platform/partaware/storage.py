"""The storage root: one fsspec URI under which every stage reads and writes.

Why one root: a stage whose output exists under its content key is skipped, so runs resume and share
work, on a laptop (a local folder) and on a cluster (``s3://bucket/prefix``) alike.

Completeness rules, so a reader never sees a partial output as complete:
- a single file is written under a temporary name and renamed into place (local), or uploaded in one
  PUT (object stores, where an object only appears once its upload finishes);
- a multi-file output (a folder) is complete only once its ``_SUCCESS`` marker exists, written last.

Credentials are never read, printed or stored here: s3fs/botocore take them from the usual AWS chain.
"""

from __future__ import annotations

import json
import os
import posixpath
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import IO, Any

import fsspec

from partaware.errors import StorageError, UnsafePathError

STORAGE_ENV = "PARTAWARE_STORAGE"
ENDPOINT_ENV = "PARTAWARE_S3_ENDPOINT"
DEFAULT_STORAGE = "./partaware-store"
SUCCESS = "_SUCCESS"
_OBJECT_STORES = {"s3", "s3a", "gs", "gcs", "az", "abfs", "abfss"}


def resolve_storage_uri(uri: str | None = None) -> str:
    """Flag, else ``$PARTAWARE_STORAGE``, else ``./partaware-store``; local paths become absolute."""
    uri = uri or os.environ.get(STORAGE_ENV) or DEFAULT_STORAGE
    if "://" not in uri or uri.startswith("file://"):
        uri = os.path.abspath(os.path.expanduser(uri.removeprefix("file://")))
    return uri.rstrip("/") or "/"


def s3_endpoint() -> str | None:
    """The S3-compatible endpoint, if one is configured (``$PARTAWARE_S3_ENDPOINT`` or ``$AWS_ENDPOINT_URL``)."""
    return os.environ.get(ENDPOINT_ENV) or os.environ.get("AWS_ENDPOINT_URL")


def filesystem_for(uri: str, **storage_options: Any) -> tuple[fsspec.AbstractFileSystem, str]:
    """An fsspec filesystem and the protocol-less path for ``uri``, honouring the S3 endpoint setting."""
    protocol = uri.split("://", 1)[0] if "://" in uri else "file"
    if protocol in ("s3", "s3a"):
        endpoint = storage_options.pop("endpoint_url", None) or s3_endpoint()
        if endpoint:
            client_kwargs = dict(storage_options.pop("client_kwargs", {}))
            client_kwargs.setdefault("endpoint_url", endpoint)
            storage_options["client_kwargs"] = client_kwargs
    fs, path = fsspec.core.url_to_fs(uri, **storage_options)
    return fs, path


def safe_relpath(relpath: str) -> str:
    """``relpath`` normalised, or ``UnsafePathError`` if it could escape the folder it is relative to."""
    if not relpath or "://" in relpath or relpath.startswith(("/", "\\")) or "\\" in relpath:
        raise UnsafePathError(f"path {relpath!r} must be relative to its root (no scheme, no leading '/')")
    norm = posixpath.normpath(relpath)
    if norm == ".." or norm.startswith("../") or norm == ".":
        raise UnsafePathError(f"path {relpath!r} escapes its root")
    return norm


@dataclass
class StorageRoot:
    """A folder on any fsspec filesystem, with atomic writes and completion markers."""

    uri: str
    fs: fsspec.AbstractFileSystem = field(repr=False)
    path: str

    @classmethod
    def open(cls, uri: str | None = None, **storage_options: Any) -> StorageRoot:
        uri = resolve_storage_uri(uri)
        fs, path = filesystem_for(uri, **storage_options)
        return cls(uri=uri, fs=fs, path=path.rstrip("/"))

    # --- paths ---------------------------------------------------------------------------------
    @property
    def is_local(self) -> bool:
        return "file" in _protocols(self.fs)

    @property
    def is_object_store(self) -> bool:
        return bool(_OBJECT_STORES & set(_protocols(self.fs)))

    def join(self, *relparts: str) -> str:
        """The filesystem path of ``relparts`` under this root (each part checked for escapes)."""
        parts = [safe_relpath(p) for p in relparts if p]
        return posixpath.join(self.path, *parts) if parts else self.path

    def uri_of(self, *relparts: str) -> str:
        """The full URI (with scheme) of ``relparts``, for messages and for other tools."""
        rel = posixpath.join(*[safe_relpath(p) for p in relparts]) if relparts else ""
        return f"{self.uri}/{rel}" if rel else self.uri

    def sub(self, *relparts: str) -> StorageRoot:
        """A root for a sub-folder, sharing this filesystem."""
        return StorageRoot(uri=self.uri_of(*relparts), fs=self.fs, path=self.join(*relparts))

    # --- reads ---------------------------------------------------------------------------------
    def exists(self, *relparts: str) -> bool:
        return self.fs.exists(self.join(*relparts))

    def read_bytes(self, *relparts: str) -> bytes:
        try:
            return self.fs.cat_file(self.join(*relparts))
        except FileNotFoundError as e:
            raise StorageError(f"{self.uri_of(*relparts)} does not exist") from e

    def read_json(self, *relparts: str) -> Any:
        return json.loads(self.read_bytes(*relparts))

    def listdir(self, *relparts: str) -> list[str]:
        """Names (not paths) directly under a folder; empty if it does not exist."""
        path = self.join(*relparts)
        if not self.fs.exists(path):
            return []
        return sorted(posixpath.basename(p.rstrip("/")) for p in self.fs.ls(path, detail=False))

    # --- atomic writes -------------------------------------------------------------------------
    @contextmanager
    def open_atomic(self, *relparts: str, mode: str = "wb") -> Iterator[IO]:
        """Write a file that readers see whole or not at all.

        Local and other renaming filesystems: write ``.tmp-<uuid>-<name>`` beside it, then rename.
        Object stores: upload straight to the key; the object appears only when the upload completes,
        and on error the upload is aborted so nothing appears.
        """
        final = self.join(*relparts)
        self.fs.makedirs(posixpath.dirname(final), exist_ok=True)
        if self.is_object_store:
            with self.fs.open(final, mode) as f:
                yield f
            return
        tmp = posixpath.join(posixpath.dirname(final), f".tmp-{uuid.uuid4().hex}-{posixpath.basename(final)}")
        try:
            with self.fs.open(tmp, mode) as f:
                yield f
            if self.is_local:
                os.replace(tmp, final)
            else:
                self.fs.mv(tmp, final)
        except BaseException:
            if self.fs.exists(tmp):
                self.fs.rm(tmp)
            raise

    def write_bytes(self, data: bytes, *relparts: str) -> str:
        with self.open_atomic(*relparts) as f:
            f.write(data)
        return self.join(*relparts)

    def write_json(self, obj: Any, *relparts: str) -> str:
        return self.write_bytes(json.dumps(obj, indent=2, sort_keys=True, default=str).encode(), *relparts)

    # --- multi-file outputs --------------------------------------------------------------------
    def is_complete(self, *relparts: str) -> bool:
        """True once the folder's ``_SUCCESS`` marker exists."""
        return self.fs.exists(self.join(*relparts, SUCCESS))

    def mark_complete(self, *relparts: str, info: dict[str, Any] | None = None) -> None:
        """Write the folder's ``_SUCCESS`` marker, last, with optional JSON metadata."""
        self.write_json(info or {}, *relparts, SUCCESS)

    def completion_info(self, *relparts: str) -> dict[str, Any]:
        return self.read_json(*relparts, SUCCESS)


def _protocols(fs: fsspec.AbstractFileSystem) -> tuple[str, ...]:
    proto = fs.protocol
    return (proto,) if isinstance(proto, str) else tuple(proto)
