"""Raw dataset sources: a local folder, an fsspec folder (``s3://bucket/prefix``), or an archive.

Why one small abstraction: every converter only needs "which files are there (with sizes)" and "the
bytes of this one", wherever the user keeps the release. Archives are read where they lie when that
is cheap (zip: random access through fsspec, local or remote); tar archives, whose members can only
be reached by reading from the start, are unpacked once into a temporary folder (members that would
land outside it are refused, Python's ``tarfile`` "data" filter).

A source's *digest* (sha256 over every file's relative path, size, and etag/CRC/mtime where the
filesystem gives one) is what makes preparing idempotent: the same listing gives the same recipe.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import shutil
import tarfile
import tempfile
from collections.abc import Iterable
from functools import cached_property

import fsspec

from partaware.errors import DatasetError
from partaware.storage import filesystem_for, safe_relpath

_TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")
_ZIP_SUFFIXES = (".zip",)
_FINGERPRINT_KEYS = ("ETag", "etag", "CRC", "crc", "mtime", "LastModified", "md5Hash")


def is_archive(uri: str) -> bool:
    return uri.lower().endswith(_TAR_SUFFIXES + _ZIP_SUFFIXES)


class Source:
    """A read-only tree of files below ``base`` on ``fs``; paths are POSIX and relative to ``base``."""

    def __init__(self, uri: str, fs: fsspec.AbstractFileSystem, base: str, *, cleanup: str | None = None):
        self.uri, self.fs, self.base = uri, fs, base.rstrip("/")
        self._cleanup = cleanup  # a temporary folder to delete on close (unpacked tar)

    # --- listing -------------------------------------------------------------------------------
    @cached_property
    def _listing(self) -> dict[str, dict]:
        found = self.fs.find(self.base, detail=True, withdirs=False) if self.base else self.fs.find("", detail=True)
        out: dict[str, dict] = {}
        prefix = f"{self.base}/" if self.base else ""
        for path, info in found.items():
            path = path.lstrip("/") if not self.base else path
            if info.get("type") == "directory" or not path.startswith(prefix):
                continue
            rel = path[len(prefix) :]
            if rel and not rel.endswith("/"):
                out[rel] = info
        return dict(sorted(out.items()))

    def files(self) -> list[str]:
        """Every file, as a path relative to the source root, sorted."""
        return list(self._listing)

    def size(self, relpath: str) -> int:
        return int(self._listing[relpath].get("size") or 0)

    def exists(self, relpath: str) -> bool:
        return relpath in self._listing

    def digest(self) -> str:
        """sha256 of the listing (paths, sizes, etags/CRCs/mtimes): equal listings give equal recipes."""
        h = hashlib.sha256()
        for rel, info in self._listing.items():
            marks = [str(info.get(k)) for k in _FINGERPRINT_KEYS if info.get(k) is not None]
            h.update(f"{rel}\t{info.get('size')}\t{','.join(marks)}\n".encode())
        return h.hexdigest()

    def locate(self, marker: str) -> str:
        """The folder (relative, "" = root) holding ``marker`` (a relative path such as ``parts/parts.txt``).

        Releases are often packed with a top folder (``CUB_200_2011/...``); the shallowest match wins.
        """
        hits = [f for f in self._listing if f == marker or f.endswith("/" + marker)]
        if not hits:
            raise DatasetError(f"{self.uri}: no {marker!r} found; is this the right --source?")
        best = min(hits, key=lambda f: f.count("/"))
        return best[: -len(marker)].rstrip("/")

    def under(self, folder: str) -> list[str]:
        """Files below ``folder`` (relative to the source root), as paths relative to the source root."""
        prefix = f"{folder.rstrip('/')}/" if folder else ""
        return [f for f in self._listing if f.startswith(prefix)]

    # --- reading -------------------------------------------------------------------------------
    def read(self, relpath: str) -> bytes:
        """The bytes of one file; ``FileNotFoundError`` (naming it) if it is not in the source."""
        relpath = safe_relpath(relpath)
        if relpath not in self._listing:
            raise FileNotFoundError(f"no file {relpath!r} in the source")
        return self.fs.cat_file(posixpath.join(self.base, relpath) if self.base else relpath)

    def read_text(self, relpath: str) -> str:
        return self.read(relpath).decode("utf-8")

    def close(self) -> None:
        if self._cleanup:
            shutil.rmtree(self._cleanup, ignore_errors=True)
            self._cleanup = None

    def __enter__(self) -> Source:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_source(uri: str | None, *, dataset: str) -> Source:
    """A ``Source`` for ``uri``: folder, ``s3://``/fsspec folder, or ``.zip``/``.tar[.gz|.bz2|.xz]`` archive."""
    if not uri:
        raise DatasetError(f"{dataset}: --source is required (a folder, an archive, or an fsspec URI such as s3://...)")
    local = "://" not in uri or uri.startswith("file://")
    if local:
        uri = os.path.abspath(os.path.expanduser(uri.removeprefix("file://")))
    fs, path = filesystem_for(uri)
    if not fs.exists(path):
        raise DatasetError(f"{dataset}: source {uri} does not exist")
    if fs.isdir(path):
        return Source(uri, fs, path)
    lower = path.lower()
    if lower.endswith(_ZIP_SUFFIXES):
        zfs = fsspec.filesystem("zip", fo=fs.open(path, "rb"))
        return _ArchiveSource(uri, zfs, "", archive_info=fs.info(path))
    if lower.endswith(_TAR_SUFFIXES):
        return _unpack_tar(uri, fs, path)
    raise DatasetError(
        f"{dataset}: source {uri} is a file but not an archive; expected a folder or one of "
        f"{', '.join(_ZIP_SUFFIXES + _TAR_SUFFIXES)}"
    )


class _ArchiveSource(Source):
    """A source inside an archive: the digest also covers the archive file's own size and etag."""

    def __init__(self, uri: str, fs: fsspec.AbstractFileSystem, base: str, *, archive_info: dict, **kw):
        super().__init__(uri, fs, base, **kw)
        self._archive_info = archive_info

    def digest(self) -> str:
        marks = [str(self._archive_info.get(k)) for k in ("size", *_FINGERPRINT_KEYS) if k in self._archive_info]
        return hashlib.sha256(f"{super().digest()}\narchive\t{','.join(marks)}".encode()).hexdigest()


def _unpack_tar(uri: str, fs: fsspec.AbstractFileSystem, path: str) -> Source:
    tmp = tempfile.mkdtemp(prefix="partaware-source-")
    try:
        with fs.open(path, "rb") as f, tarfile.open(fileobj=f, mode="r:*") as tar:
            tar.extractall(tmp, filter="data")
    except (tarfile.TarError, OSError) as e:
        shutil.rmtree(tmp, ignore_errors=True)
        raise DatasetError(f"{uri}: cannot unpack archive: {e}") from e
    local = fsspec.filesystem("file")
    return _ArchiveSource(uri, _NoMtimeFS(local), tmp, archive_info=fs.info(path), cleanup=tmp)


class _NoMtimeFS:
    """A local filesystem whose listing leaves out mtimes (an unpacked archive's mtimes are new each time)."""

    def __init__(self, fs: fsspec.AbstractFileSystem):
        self._fs = fs

    def find(self, path: str, **kw) -> dict:
        found = self._fs.find(path, **kw)
        return {p: {k: v for k, v in info.items() if k not in ("mtime", "created")} for p, info in found.items()}

    def __getattr__(self, name: str):
        return getattr(self._fs, name)


def stems(paths: Iterable[str]) -> dict[str, str]:
    """``{file stem: path}`` for paths (the last one wins on a duplicate stem)."""
    return {posixpath.splitext(posixpath.basename(p))[0]: p for p in paths}
