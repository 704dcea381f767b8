"""The storage root: one fsspec URI under which every stage reads and writes.

Why one root: a stage whose output exists under its content key is skipped, so runs resume and share
work, on a laptop (a local folder) and on a cluster (``s3://bucket/prefix``) alike.

Completeness rules, so a reader never sees a partial output as complete:
- a single file is written under a temporary name and renamed into place (local), or uploaded in one
  PUT (object stores, where an object only appears once its upload finishes);
- a multi-file output (a folder) is complete only once its ``_SUCCESS`` marker exists, written last.

Credentials are never read, printed or stored here: s3fs/botocore take them from the usual AWS chain.

Waits are bounded: S3 calls get connect/read timeouts and a bounded number of attempts
(``$PARTAWARE_S3_CONNECT_TIMEOUT``, ``$PARTAWARE_S3_READ_TIMEOUT``, ``$PARTAWARE_S3_MAX_ATTEMPTS``, or a job
spec's ``storage_options``, applied for a run by ``s3_limits_applied``), and an endpoint that refuses, never
answers or denies access ends in one ``StorageError`` line naming it.
"""

from __future__ import annotations

import json
import os
import posixpath
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from typing import IO, Any

import fsspec

from partaware.errors import StorageError, StorageUnusableError, UnsafePathError

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
    """An fsspec filesystem and the protocol-less path for ``uri``, honouring the S3 endpoint setting.

    S3 gets bounded waits (``s3_limits``) and never waits for a ``100-continue`` that may not come.
    """
    protocol = uri.split("://", 1)[0] if "://" in uri else "file"
    if protocol in ("s3", "s3a") and "::" not in uri:
        endpoint = storage_options.pop("endpoint_url", None) or s3_endpoint()
        if endpoint:
            client_kwargs = dict(storage_options.pop("client_kwargs", {}))
            client_kwargs.setdefault("endpoint_url", endpoint)
            storage_options["client_kwargs"] = client_kwargs
        storage_options["config_kwargs"] = {**s3_limits().config_kwargs(), **storage_options.get("config_kwargs", {})}
        from partaware._s3 import BoundedS3FileSystem

        fs = BoundedS3FileSystem(**storage_options)
        return fs, fs._strip_protocol(uri)
    fs, path = fsspec.core.url_to_fs(uri, **storage_options)
    return fs, path


S3_CONNECT_TIMEOUT_ENV = "PARTAWARE_S3_CONNECT_TIMEOUT"
S3_READ_TIMEOUT_ENV = "PARTAWARE_S3_READ_TIMEOUT"
S3_MAX_ATTEMPTS_ENV = "PARTAWARE_S3_MAX_ATTEMPTS"
#: ``S3Limits`` field -> the variable that sets it (a job spec's ``storage_options`` use the field names)
S3_LIMIT_ENVS = {
    "connect_timeout": S3_CONNECT_TIMEOUT_ENV,
    "read_timeout": S3_READ_TIMEOUT_ENV,
    "max_attempts": S3_MAX_ATTEMPTS_ENV,
}
MAX_S3_TIMEOUT_S = 3600.0
MAX_S3_ATTEMPTS = 20


@dataclass(frozen=True)
class S3Limits:
    """How long one S3 call may wait: seconds to connect, seconds between bytes, attempts in all."""

    connect_timeout: float = 10.0
    read_timeout: float = 30.0
    max_attempts: int = 3

    def config_kwargs(self) -> dict[str, Any]:
        """botocore ``Config`` arguments (s3fs ``config_kwargs``): botocore retries, s3fs does not."""
        return {
            "connect_timeout": self.connect_timeout,
            "read_timeout": self.read_timeout,
            "retries": {"total_max_attempts": self.max_attempts, "mode": "standard"},
        }

    @property
    def worst_case_s(self) -> float:
        """An upper bound on one call's wait (backoff between attempts included)."""
        return self.max_attempts * (self.connect_timeout + self.read_timeout) + 20.0 * (self.max_attempts - 1)


def s3_limits() -> S3Limits:
    """``S3Limits`` from the environment (defaults where unset); ``StorageError`` for a bad value."""
    default = S3Limits()
    values: dict[str, float] = {}
    for name, env in S3_LIMIT_ENVS.items():
        raw = os.environ.get(env, "").strip()
        if not raw:
            continue
        try:
            value = int(raw) if name == "max_attempts" else float(raw)
        except ValueError:
            value = -1
        if not 0 < value <= (MAX_S3_ATTEMPTS if name == "max_attempts" else MAX_S3_TIMEOUT_S):
            limit = f"an integer 1..{MAX_S3_ATTEMPTS}" if name == "max_attempts" else "seconds in (0, 3600]"
            raise StorageUnusableError(f"${env}={raw!r}: expected {limit} (default {getattr(default, name)})")
        values[name] = value
    return S3Limits(**values)


def s3_limits_env() -> dict[str, str]:
    """The ``$PARTAWARE_S3_*`` limits set in this process, for workers started elsewhere (Ray runtime envs)."""
    return {env: os.environ[env] for env in S3_LIMIT_ENVS.values() if os.environ.get(env, "").strip()}


@contextmanager
def s3_limits_applied(overrides: Mapping[str, float]) -> Iterator[S3Limits]:
    """Set the limits in ``overrides`` (``S3Limits`` field names) as ``$PARTAWARE_S3_*`` while the block runs.

    Why the environment: every S3 filesystem this process opens reads it, and Ray workers and jobs
    started from here inherit it (a submitted job forwards it), so one setting reaches every call of the
    run. Values not in ``overrides`` keep the variable, else the default; the old values come back after.
    """
    saved = {env: os.environ.get(env) for env in S3_LIMIT_ENVS.values()}
    try:
        for name, value in overrides.items():
            os.environ[S3_LIMIT_ENVS[name]] = str(int(value)) if name == "max_attempts" else f"{float(value):g}"
        yield s3_limits()
    finally:
        for env, value in saved.items():
            if value is None:
                os.environ.pop(env, None)
            else:
                os.environ[env] = value


def storage_error(exc: BaseException, uri: str | None = None) -> StorageError | None:
    """One ``StorageError`` line for a connection, timeout, credentials or access failure (or None).

    It names the endpoint (or the URI) and what to check; botocore's own messages run to many lines.
    """
    if isinstance(exc, StorageError):
        return exc
    chain = _exception_chain(exc)
    if not any(type(e).__module__.split(".")[0] in _S3_MODULES for e in chain):
        return None  # not an S3 call's failure (a refused Ray address is not a storage problem)
    names = {type(e).__name__ for e in chain}
    endpoint = s3_endpoint() or "the default AWS endpoint"
    where = f"{uri} (endpoint {endpoint})" if uri else f"S3 endpoint {endpoint}"
    limits = s3_limits() if names & _TIMEOUTS else None
    if names & {"EndpointConnectionError", "ConnectionRefusedError", "ClientConnectorError"} and not limits:
        return StorageUnusableError(
            f"cannot connect to {where}: connection refused or host unreachable; check the endpoint "
            f"(${ENDPOINT_ENV} or $AWS_ENDPOINT_URL) and that the server is up"
        )
    if limits is not None:
        return StorageUnusableError(
            f"{where} did not answer (timeouts {limits.connect_timeout:g} s to connect, {limits.read_timeout:g} s "
            f"to read, {limits.max_attempts} attempts); check the endpoint, or raise ${S3_READ_TIMEOUT_ENV} "
            "(or storage_options.read_timeout in the job spec)"
        )
    if names & {"NoCredentialsError", "PartialCredentialsError"}:
        return StorageUnusableError(
            f"no credentials for {uri or 'S3'}: set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or an AWS profile"
        )
    if uri and "://" in uri and any(isinstance(e, PermissionError) for e in chain):
        return StorageUnusableError(f"access denied to {uri}: check the credentials and the bucket policy")
    return None


_S3_MODULES = {"botocore", "aiobotocore", "s3fs", "aiohttp"}
_TIMEOUTS = {"ConnectTimeoutError", "ReadTimeoutError", "SocketTimeoutError", "ServerTimeoutError", "FSTimeoutError"}


def _exception_chain(exc: BaseException) -> list[BaseException]:
    out: list[BaseException] = []
    while exc is not None and exc not in out and len(out) < 20:
        out.append(exc)
        exc = exc.__cause__ or exc.__context__
    return out


@contextmanager
def mapped_errors(uri: str) -> Iterator[None]:
    """Turn a connection, timeout or access failure below into one ``StorageError`` line naming ``uri``."""
    try:
        yield
    except (StorageError, UnsafePathError):
        raise
    except Exception as e:
        mapped = storage_error(e, uri)
        if mapped is None:
            raise
        raise mapped from e


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
    def open(cls, uri: str | None = None, *, writable: bool = False, **storage_options: Any) -> StorageRoot:
        """The root at ``uri`` (flag, ``$PARTAWARE_STORAGE``, default); ``writable``: refused up front
        (``StorageUnusableError``) unless a file can be written there."""
        uri = resolve_storage_uri(uri)
        fs, path = filesystem_for(uri, **storage_options)
        root = cls(uri=uri, fs=fs, path=path.rstrip("/"))
        if root.is_local and os.path.exists(root.path) and not os.path.isdir(root.path):
            raise StorageUnusableError(f"storage root {uri} is a file, not a folder; pass a folder to --storage")
        if writable:
            root.ensure_writable()
        return root

    def ensure_writable(self) -> None:
        """Create the root and write (then remove) a probe file: a read-only root, a file in its path, a
        missing bucket or an unreachable endpoint is one ``StorageUnusableError`` line, before any work."""
        probe = posixpath.join(self.path, f".write-probe-{uuid.uuid4().hex}")
        try:
            with mapped_errors(self.uri):
                if not self.is_object_store:  # an object store has no folders: one PUT tells (one wait at most)
                    self.fs.makedirs(self.path, exist_ok=True)
                try:
                    self.fs.pipe_file(probe, b"")
                except FileNotFoundError:  # no such bucket: create it, as every write would
                    self.fs.makedirs(self.path, exist_ok=True)
                    self.fs.pipe_file(probe, b"")
                self.fs.rm_file(probe)
        except StorageError as e:
            raise StorageUnusableError(str(e)) from e
        except (OSError, ValueError) as e:
            why = e.strerror if isinstance(e, OSError) and e.strerror else f"{type(e).__name__}: {e}"
            raise StorageUnusableError(
                f"storage root {self.uri} cannot be written ({why}); pass a writable folder or bucket to --storage"
            ) from e

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
        with mapped_errors(self.uri):
            return self.fs.exists(self.join(*relparts))

    def read_bytes(self, *relparts: str) -> bytes:
        try:
            with mapped_errors(self.uri):
                return self.fs.cat_file(self.join(*relparts))
        except FileNotFoundError as e:
            raise StorageError(f"{self.uri_of(*relparts)} does not exist") from e

    def read_json(self, *relparts: str) -> Any:
        return json.loads(self.read_bytes(*relparts))

    def listdir(self, *relparts: str) -> list[str]:
        """Names (not paths) directly under a folder; empty if it does not exist."""
        path = self.join(*relparts)
        with mapped_errors(self.uri):
            if not self.fs.exists(path):
                return []
            return sorted(posixpath.basename(p.rstrip("/")) for p in self.fs.ls(path, detail=False))

    # --- atomic writes -------------------------------------------------------------------------
    @contextmanager
    def open_atomic(self, *relparts: str, mode: str = "wb") -> Iterator[IO]:
        """Write a file that readers see whole or not at all.

        Local and other renaming filesystems: write ``.tmp-<uuid>-<name>`` beside it, then rename.
        Object stores: upload straight to the key; the object appears only when the upload completes,
        and on error the upload is discarded (a plain ``close`` would publish the bytes written so far).
        """
        final = self.join(*relparts)
        with mapped_errors(self.uri):
            self.fs.makedirs(posixpath.dirname(final), exist_ok=True)
        if self.is_object_store:
            with mapped_errors(self.uri):
                f = self.fs.open(final, mode)
            try:
                with mapped_errors(self.uri):  # parts of a large file are uploaded while it is written
                    yield f
            except BaseException:
                f.discard()  # aborts a multipart upload; a one-shot upload was never sent
                f.closed = True
                raise
            with mapped_errors(self.uri):
                f.close()
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

    def write_bytes(self, data: bytes, *relparts: str, exclusive: bool = False) -> str:
        """Write ``data`` in one atomic step: readers see the old file, or the new one whole.

        Object stores: one PUT (a multipart upload above 100 MB, completed in one call). ``exclusive``:
        create only, ``FileExistsError`` when the file exists (local: a hard link, which never replaces;
        S3: ``If-None-Match: *``), so of two writers of one marker exactly one succeeds.
        """
        final = self.join(*relparts)
        if self.is_object_store:
            kwargs = {"mode": "create"} if exclusive else {}
            with mapped_errors(self.uri):
                try:
                    self.fs.pipe_file(final, data, **kwargs)
                except FileNotFoundError:  # no such bucket: create it, as other filesystems create folders
                    self.fs.makedirs(posixpath.dirname(final), exist_ok=True)
                    self.fs.pipe_file(final, data, **kwargs)
            return final
        if not exclusive:
            with self.open_atomic(*relparts) as f:
                f.write(data)
            return final
        if not self.is_local:  # no exclusive primitive known: check, then write (best effort)
            if self.fs.exists(final):
                raise FileExistsError(final)
            return self.write_bytes(data, *relparts)
        tmp = os.path.join(os.path.dirname(final), f".tmp-{uuid.uuid4().hex}-{os.path.basename(final)}")
        os.makedirs(os.path.dirname(final), exist_ok=True)
        try:
            with open(tmp, "wb") as f:
                f.write(data)
            try:
                os.link(tmp, final)  # FileExistsError if another writer got there first
            except FileExistsError:
                raise
            except OSError:  # no hard links on this filesystem: check, then rename (best effort)
                if os.path.exists(final):
                    raise FileExistsError(final) from None
                os.replace(tmp, final)
        finally:
            with suppress(FileNotFoundError):
                os.unlink(tmp)
        return final

    def write_json(self, obj: Any, *relparts: str, exclusive: bool = False) -> str:
        data = json.dumps(obj, indent=2, sort_keys=True, default=str).encode()
        return self.write_bytes(data, *relparts, exclusive=exclusive)

    # --- multi-file outputs --------------------------------------------------------------------
    def is_complete(self, *relparts: str) -> bool:
        """True once the folder's ``_SUCCESS`` marker exists."""
        return self.fs.exists(self.join(*relparts, SUCCESS))

    def mark_complete(self, *relparts: str, info: dict[str, Any] | None = None, exclusive: bool = False) -> None:
        """Write the folder's ``_SUCCESS`` marker, last, with optional JSON metadata; ``exclusive``: only if
        there is none yet (``FileExistsError`` otherwise: another writer published the folder)."""
        self.write_json(info or {}, *relparts, SUCCESS, exclusive=exclusive)

    def completion_info(self, *relparts: str) -> dict[str, Any]:
        return self.read_json(*relparts, SUCCESS)


def _protocols(fs: fsspec.AbstractFileSystem) -> tuple[str, ...]:
    proto = fs.protocol
    return (proto,) if isinstance(proto, str) else tuple(proto)
