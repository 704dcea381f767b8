"""Raw dataset sources: a local folder, an fsspec folder (``s3://bucket/prefix``), or an archive.

Why one small abstraction: every converter only needs "which files are there (with sizes)" and "the
bytes of this one", wherever the user keeps the release. Archives are read where they lie when that
is cheap (zip: random access through fsspec, local or remote); tar archives, whose members can only
be reached by reading from the start, are unpacked once into a temporary folder (members that would
land outside it are refused, Python's ``tarfile`` "data" filter).

Archives are bounded (``ArchiveLimits``: total bytes and member count, ``$PARTAWARE_MAX_UNPACK_BYTES`` and
``$PARTAWARE_MAX_UNPACK_FILES``; an unpacked tar also fits the free disk space), a truncated, corrupt or
mislabelled archive is one ``DatasetError`` line naming it, and the temporary folder is removed however
the unpacking ends (a folder left by a killed process is removed by the next unpack).

A source's *digest* (sha256 over every file's relative path, size, and etag/CRC/mtime where the
filesystem gives one) is what makes preparing idempotent: the same listing gives the same recipe.
"""

from __future__ import annotations

import hashlib
import lzma
import os
import posixpath
import shutil
import tarfile
import tempfile
import time
import zipfile
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import fsspec

from partaware.errors import DatasetError
from partaware.storage import filesystem_for, safe_relpath, storage_error

_TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")
_ZIP_SUFFIXES = (".zip",)
_FINGERPRINT_KEYS = ("ETag", "etag", "CRC", "crc", "mtime", "LastModified", "md5Hash")
#: what a truncated or corrupt archive raises while it is read (gzip/bz2 EOF, zlib, xz, zip, tar)
_CORRUPT = (tarfile.TarError, zipfile.BadZipFile, zlib.error, lzma.LZMAError, EOFError, ValueError, OSError)
MAX_UNPACK_BYTES_ENV = "PARTAWARE_MAX_UNPACK_BYTES"
MAX_UNPACK_FILES_ENV = "PARTAWARE_MAX_UNPACK_FILES"
_TMP_PREFIX = "partaware-source-"
_STALE_TMP_S = 600.0


@dataclass(frozen=True)
class ArchiveLimits:
    """The most an archive may hold: a zip bomb or a mislabelled disk image is refused, not unpacked."""

    max_bytes: int = 512 << 30
    max_files: int = 5_000_000

    @classmethod
    def from_env(cls) -> ArchiveLimits:
        """Defaults, or ``$PARTAWARE_MAX_UNPACK_BYTES`` / ``$PARTAWARE_MAX_UNPACK_FILES`` (positive integers)."""
        values = {}
        for env, name in ((MAX_UNPACK_BYTES_ENV, "max_bytes"), (MAX_UNPACK_FILES_ENV, "max_files")):
            raw = os.environ.get(env, "").strip()
            if raw:
                if not raw.isdigit() or int(raw) < 1:
                    raise DatasetError(f"${env}={raw!r}: expected a positive integer (default {getattr(cls(), name)})")
                values[name] = int(raw)
        return cls(**values)

    def check(self, uri: str, files: int, total: int) -> None:
        if files > self.max_files:
            raise DatasetError(
                f"{uri}: archive holds more than {self.max_files} files; unpack it yourself and pass the folder, "
                f"or raise ${MAX_UNPACK_FILES_ENV}"
            )
        if total > self.max_bytes:
            raise DatasetError(
                f"{uri}: archive unpacks to more than {_gib(self.max_bytes)}; unpack it yourself and pass the "
                f"folder, or raise ${MAX_UNPACK_BYTES_ENV}"
            )


def _gib(n: int) -> str:
    return f"{n / (1 << 30):.1f} GiB" if n >= 1 << 30 else f"{n} bytes"


def is_archive(uri: str) -> bool:
    return uri.lower().endswith(_TAR_SUFFIXES + _ZIP_SUFFIXES)


class Source:
    """A read-only tree of files below ``base`` on ``fs``; paths are POSIX and relative to ``base``."""

    def __init__(self, uri: str, fs: fsspec.AbstractFileSystem, base: str, *, cleanup: str | None = None):
        self.uri, self.fs, self.base = uri, fs, base.rstrip("/")
        self._cleanup = cleanup  # a temporary folder to delete on close (unpacked tar)
        self._handle: Any = None  # an open archive file to close on close (zip)

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
        try:
            return self.fs.cat_file(posixpath.join(self.base, relpath) if self.base else relpath)
        except FileNotFoundError:
            raise
        except _CORRUPT as e:
            mapped = storage_error(e, self.uri)
            if mapped is not None:
                raise mapped from e
            raise DatasetError(f"{self.uri}: cannot read {relpath} ({_why(e)}); is the source complete?") from e

    def read_text(self, relpath: str) -> str:
        return self.read(relpath).decode("utf-8")

    def close(self) -> None:
        if self._cleanup:
            shutil.rmtree(self._cleanup, ignore_errors=True)
            self._cleanup = None
        handle, self._handle = self._handle, None
        if handle is not None:
            handle.close()

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
        return _open_zip(uri, fs, path, ArchiveLimits.from_env())
    if lower.endswith(_TAR_SUFFIXES):
        return _unpack_tar(uri, fs, path, ArchiveLimits.from_env())
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


def _open_zip(uri: str, fs: fsspec.AbstractFileSystem, path: str, limits: ArchiveLimits) -> Source:
    """A zip read where it lies (members on demand); its central directory is checked against ``limits``."""
    handle = fs.open(path, "rb")
    try:
        zfs = fsspec.filesystem("zip", fo=handle, skip_instance_cache=True)
        members = [i for i in zfs.zip.infolist() if not i.is_dir()]
        limits.check(uri, len(members), sum(i.file_size for i in members))
        source = _ArchiveSource(uri, zfs, "", archive_info=fs.info(path))
    except BaseException as e:
        handle.close()
        if isinstance(e, _CORRUPT) and not isinstance(e, FileNotFoundError | DatasetError):
            why = _why(e)
            raise DatasetError(f"{uri}: not a readable zip archive ({why}); check the file or re-download it") from e
        raise
    source._handle = handle
    return source


def _unpack_tar(uri: str, fs: fsspec.AbstractFileSystem, path: str, limits: ArchiveLimits) -> Source:
    """Unpack a tar into a temporary folder, member by member within ``limits`` and the free disk space."""
    _remove_stale_unpacks()
    tmp = tempfile.mkdtemp(prefix=f"{_TMP_PREFIX}{os.getpid()}-")
    try:
        free = shutil.disk_usage(tmp).free
        files = total = 0
        with fs.open(path, "rb") as f, tarfile.open(fileobj=f, mode="r:*") as tar:
            for member in tar:
                files, total = files + 1, total + max(member.size, 0)
                limits.check(uri, files, total)
                if total > free:
                    raise DatasetError(
                        f"{uri}: unpacking needs more than the {_gib(free)} free in {tempfile.gettempdir()}; "
                        "set TMPDIR to a larger disk, or unpack it yourself and pass the folder"
                    )
                tar.extract(member, tmp, filter="data")
    except DatasetError:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    except tarfile.FilterError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        raise DatasetError(f"{uri}: cannot unpack archive: unsafe member refused ({e})") from e
    except (tarfile.TarError, zlib.error, lzma.LZMAError, EOFError) as e:
        shutil.rmtree(tmp, ignore_errors=True)
        raise DatasetError(
            f"{uri}: cannot unpack archive: truncated, corrupt or not a tar ({_why(e)}); check the file or "
            "re-download it"
        ) from e
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        mapped = storage_error(e, uri)
        raise mapped or DatasetError(f"{uri}: cannot unpack archive ({_why(e)})") from e
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    local = fsspec.filesystem("file")
    return _ArchiveSource(uri, _NoMtimeFS(local), tmp, archive_info=fs.info(path), cleanup=tmp)


def _why(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0].rstrip(":") if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _remove_stale_unpacks() -> None:
    """Remove unpack folders whose process is gone (``kill -9``): named ``partaware-source-<pid>-...``."""
    base = tempfile.gettempdir()
    now = time.time()
    for entry in os.scandir(base):
        pid = entry.name.removeprefix(_TMP_PREFIX).split("-", 1)[0]
        if not entry.name.startswith(_TMP_PREFIX) or not pid.isdigit() or _alive(int(pid)):
            continue
        try:
            if now - entry.stat(follow_symlinks=False).st_mtime > _STALE_TMP_S and entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path, ignore_errors=True)
        except OSError:
            continue


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


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
