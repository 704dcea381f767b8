"""Weights resolution: from an official URL, a timm pretrained tag, or any fsspec URI, to a checkpoint.

Where a file is looked for, in order:
1. the storage root's weight cache, ``<root>/weights/<cache_key>/<filename>`` (``cache_key`` is the
   encoder name; a variant shares its base's folder);
2. ``$PARTAWARE_WEIGHTS_DIR/<cache_key>/<filename>`` or ``$PARTAWARE_WEIGHTS_DIR/<filename>``, any fsspec
   URI (a read-only staging area on an air-gapped cluster: ``s3://bucket/weights``);
3. a download: official URLs stream into the weight cache with ``requests`` (retried with backoff, resumed with
   HTTP ``Range`` from a local partial file, progress reported to a callback; written atomically, sha256 checked
   *before* the file becomes visible); timm tags go through ``huggingface_hub`` (its own cache, checks and
   resume). ``partctl weights fetch`` does this ahead of a run, with a progress bar.
Offline (``PARTAWARE_OFFLINE=1`` or ``HF_HUB_OFFLINE=1``), or for releases with no plain download
(Google Drive), step 3 is replaced by ``WeightsUnavailableError`` naming the file to stage and where.

Checkpoints are read with ``torch.load(weights_only=True)`` (``argparse.Namespace`` allowed: official
DINO/BEiT/CAE checkpoints store their training ``args`` as one) or safetensors; never arbitrary pickles.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import pickle
import posixpath
import shutil
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from partaware.encoders.specs import EncoderSpec
from partaware.errors import CheckpointError, PartawareError, SpecError, StorageError
from partaware.storage import StorageRoot, filesystem_for

WEIGHTS_DIR_ENV = "PARTAWARE_WEIGHTS_DIR"
OFFLINE_ENVS = ("PARTAWARE_OFFLINE", "HF_HUB_OFFLINE")
_CHUNK = 1 << 20
_NET_CHUNK = 1 << 16  # bytes per network read (a dropped connection loses the read under way)


class WeightsUnavailableError(PartawareError, FileNotFoundError):
    """No weights file could be found or fetched; the message says which file to stage where."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class UnsafeCheckpointError(CheckpointError):
    """A checkpoint that would need arbitrary unpickling (code execution) to load; never loaded."""


class WeightsChecksumError(CheckpointError):
    """A weights file whose sha256 differs from the expected one (corrupt or a different release)."""


def is_offline() -> bool:
    return any(os.environ.get(k, "").strip().lower() in ("1", "true", "yes", "on") for k in OFFLINE_ENVS)


def weights_filename(spec: EncoderSpec) -> str:
    """The file's name in the cache: ``weights.filename``, else the URL's basename, else timm's hub file."""
    if spec.weights.filename:
        return spec.weights.filename
    if spec.weights.kind == "timm":
        return _timm_filename(spec)
    name = posixpath.basename(urllib.parse.urlparse(spec.weights.location).path)
    if not name:
        raise SpecError(f"encoder {spec.name!r}: cannot name a file for weights {spec.weights.location!r}")
    return name


def cache_relpath(spec: EncoderSpec) -> tuple[str, str, str]:
    return ("weights", spec.cache_key, weights_filename(spec))


def find_staged(spec: EncoderSpec, root: StorageRoot) -> str | None:
    """URI of an already cached or staged weights file, or None (no network)."""
    rel = cache_relpath(spec)
    if root.exists(*rel):
        return root.uri_of(*rel)
    staging = os.environ.get(WEIGHTS_DIR_ENV)
    if staging:
        for uri in (f"{staging.rstrip('/')}/{rel[1]}/{rel[2]}", f"{staging.rstrip('/')}/{rel[2]}"):
            fs, path = filesystem_for(uri)
            if fs.exists(path):
                return uri
    return None


def staging_instruction(spec: EncoderSpec, root: StorageRoot, *, why: str) -> str:
    rel = cache_relpath(spec)
    source = spec.weights.location
    if spec.weights.kind == "timm":
        source = _timm_source(spec)
    return (
        f"weights for encoder {spec.name!r} are not available ({why}). Stage the file {rel[2]!r} "
        f"(from {source}) at {root.uri_of(*rel)} (partctl weights stage {spec.name} FILE --storage {root.uri}) "
        f"or under ${WEIGHTS_DIR_ENV}/{rel[1]}/, then rerun"
    )


# --- checksums and reading ----------------------------------------------------------------------


def check_sha256(data_digest: str, expected: str | None, *, what: str) -> None:
    if expected and not data_digest.startswith(expected):
        raise WeightsChecksumError(f"{what}: sha256 {data_digest} does not match the expected {expected}")


def _read_verified(uri: str, spec: EncoderSpec) -> bytes:
    fs, path = filesystem_for(uri)
    try:
        data = fs.cat_file(path)
    except FileNotFoundError as e:
        raise StorageError(f"weights file {uri} does not exist") from e
    digest = hashlib.sha256(data).hexdigest()
    check_sha256(digest, spec.weights.sha256, what=uri)
    sidecar = path + ".sha256"
    if spec.weights.sha256 is None and fs.exists(sidecar):  # recorded at download time
        check_sha256(digest, fs.cat_file(sidecar).decode().strip(), what=uri)
    return data


def load_checkpoint_bytes(data: bytes, *, name: str = "") -> dict[str, Any]:
    """A checkpoint from bytes: safetensors by name, else ``torch.load(weights_only=True)``.

    An empty, truncated or corrupt file is one ``CheckpointError`` naming it (torch and safetensors raise
    anything from ``EOFError`` to ``KeyError`` for those); objects beyond tensors are ``UnsafeCheckpointError``.
    """
    import torch

    what = name or "<bytes>"
    if not data:
        raise CheckpointError(f"checkpoint {what} is empty (0 bytes); re-download or re-stage it")
    if name.endswith(".safetensors"):
        from safetensors.torch import load as load_safetensors

        try:
            return load_safetensors(data)
        except Exception as e:  # noqa: BLE001 (SafetensorError and kin: a truncated or foreign file)
            raise _corrupt(what, len(data), e) from e
    with torch.serialization.safe_globals([argparse.Namespace]):
        try:
            return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as e:
            if "weights only" not in str(e).lower():  # a truncated pickle, not a refused object
                raise _corrupt(what, len(data), e) from e
            # an object beyond tensors and containers: refused, not run
            lines = [ln.strip() for ln in str(e).splitlines() if "global" in ln.lower()]
            first = lines[0] if lines else str(e).strip().splitlines()[0]
            raise UnsafeCheckpointError(
                f"checkpoint {what} holds objects other than tensors and containers and is "
                f"refused (loaded with weights_only=True): {first}. Re-save just its state dict "
                f"(torch.save({{'model': state_dict}}, path)) in a trusted environment"
            ) from e
        except Exception as e:  # noqa: BLE001 (EOFError, RuntimeError, ValueError, KeyError: a damaged file)
            raise _corrupt(what, len(data), e) from e


def _corrupt(what: str, size: int, exc: Exception) -> CheckpointError:
    reason = (str(exc).strip().splitlines() or [""])[0][:160]
    return CheckpointError(
        f"checkpoint {what} ({size} bytes) cannot be read: truncated or corrupt ({type(exc).__name__}"
        f"{': ' + reason if reason else ''}); re-download or re-stage it"
    )


def read_checkpoint(uri: str) -> dict[str, Any]:
    """A checkpoint from any fsspec URI (``weights.kind == "uri"``), never an arbitrary pickle."""
    fs, path = filesystem_for(uri)
    try:
        data = fs.cat_file(path)
    except FileNotFoundError as e:
        raise StorageError(f"checkpoint {uri} does not exist") from e
    return load_checkpoint_bytes(data, name=uri)


def resolve_uri(spec: EncoderSpec, root: StorageRoot | None) -> dict[str, Any]:
    """``weights.kind == "uri"``: the file at ``weights.location`` (any fsspec URI), sha256 checked if given."""
    return load_checkpoint_bytes(_read_verified(spec.weights.location, spec), name=spec.weights.location)


# --- official URLs ------------------------------------------------------------------------------


#: attempts per download, and the pause before the n-th retry (``RETRY_BACKOFF_S * 2**(n-1)`` seconds)
DOWNLOAD_ATTEMPTS = 4
RETRY_BACKOFF_S = 1.0
#: HTTP statuses worth retrying (timeouts, rate limits, a server's passing trouble); any other one is final
RETRY_STATUSES = (408, 425, 429, 500, 502, 503, 504)
#: where partial downloads wait to be resumed (default: ``<tmp>/partaware-downloads``)
DOWNLOAD_DIR_ENV = "PARTAWARE_DOWNLOAD_DIR"
#: seconds to connect, seconds to wait for the next bytes, and the longest ``Retry-After`` honoured
CONNECT_TIMEOUT_S, READ_TIMEOUT_S, MAX_RETRY_AFTER_S = 15.0, 60.0, 60.0
ProgressFn = Callable[[int, int], None]


def download_to_cache(
    spec: EncoderSpec,
    root: StorageRoot,
    *,
    progress: ProgressFn | None = None,
    attempts: int = DOWNLOAD_ATTEMPTS,
) -> str:
    """Fetch ``weights.location`` into the weight cache; the file appears only whole and with the right sha256.

    Each attempt continues the bytes already fetched (a local ``.part`` file, kept across attempts and processes)
    with an HTTP ``Range`` request; a server that ignores it (200, or a ``Content-Range`` that starts elsewhere)
    sends the whole file again. Connection errors, bodies cut short and retryable statuses (``RETRY_STATUSES``,
    honouring ``Retry-After``) are retried ``attempts`` times with exponential backoff; any other status fails at
    once. ``progress(done, total)`` is called as bytes arrive (the CLI passes a rich bar). Concurrent downloads of
    one file (two extraction actors) wait for each other: the second finds it cached. The HTTP client is
    ``requests`` (proxies, certificates and connection reuse as users configure them).
    """
    rel = cache_relpath(spec)
    url = spec.weights.location
    part = _partial_path(url, rel[-1])
    with _download_lock(part):
        if root.exists(*rel):  # another process finished it while this one waited
            return root.uri_of(*rel)
        _fetch_with_retries(spec, root, part, progress=progress, attempts=attempts)
        digest = sha256_of(part)
        try:
            check_sha256(digest, spec.weights.sha256, what=url)
        except WeightsChecksumError:
            part.unlink(missing_ok=True)  # a wrong file is not worth resuming
            raise
        with part.open("rb") as src, root.open_atomic(*rel) as out:
            shutil.copyfileobj(src, out, _CHUNK)
        root.write_bytes(digest.encode(), *rel[:-1], rel[-1] + ".sha256")
        part.unlink(missing_ok=True)
    return root.uri_of(*rel)


class _RetryableStatus(Exception):
    """A status worth another attempt; ``wait`` is the server's ``Retry-After`` in seconds (0: none given)."""

    def __init__(self, message: str, wait: float = 0.0):
        super().__init__(message)
        self.wait = wait


def _fetch_with_retries(spec: EncoderSpec, root: StorageRoot, part: Path, *, progress, attempts: int) -> None:
    import requests

    last: Exception | None = None
    with requests.Session() as session:
        for attempt in range(1, max(1, attempts) + 1):
            wait = RETRY_BACKOFF_S * 2 ** (attempt - 1)
            try:
                _fetch_into(session, spec.weights.location, part, progress=progress)
                return
            except _RetryableStatus as e:
                last, wait = e, max(wait, min(e.wait, MAX_RETRY_AFTER_S))
            except requests.HTTPError as e:
                raise WeightsUnavailableError(staging_instruction(spec, root, why=f"download failed: {e}")) from e
            except (requests.RequestException, OSError) as e:
                last = e
            if attempt < attempts:
                time.sleep(wait)
    why = f"download failed after {attempts} attempts: {last}"
    raise WeightsUnavailableError(staging_instruction(spec, root, why=why)) from last


def _fetch_into(session, url: str, part: Path, *, progress: ProgressFn | None) -> None:
    """One attempt: append the rest of ``url`` to ``part`` (from its current size); raise if cut short."""
    import requests

    have = part.stat().st_size if part.exists() else 0
    headers = {"Range": f"bytes={have}-", "Accept-Encoding": "identity"} if have else {"Accept-Encoding": "identity"}
    with session.get(url, headers=headers, stream=True, timeout=(CONNECT_TIMEOUT_S, READ_TIMEOUT_S)) as response:
        if response.status_code == 416:  # the range is past the end: the partial file is not this file's prefix
            part.unlink(missing_ok=True)
            raise _RetryableStatus(f"HTTP 416 for {url}: restarting from the first byte")
        if response.status_code in RETRY_STATUSES:
            raise _RetryableStatus(f"HTTP {response.status_code} {response.reason} from {url}",
                                   _retry_after(response.headers.get("Retry-After")))  # fmt: skip
        if response.status_code >= 400:
            raise requests.HTTPError(f"HTTP {response.status_code} {response.reason} from {url}", response=response)
        if have and _range_start(response) != have:  # the range was ignored: the whole file follows
            have = 0
        length = response.headers.get("Content-Length", "")
        total = have + int(length) if length.isdigit() else 0
        done = have
        with part.open("ab" if have else "wb") as out:
            for chunk in response.iter_content(_NET_CHUNK):  # small reads: a cut loses at most one
                out.write(chunk)
                done += len(chunk)
                if progress:
                    progress(done, total)
    if total and done < total:
        raise OSError(f"connection closed after {done} of {total} bytes")


def _range_start(response) -> int | None:
    """Where a 206's ``Content-Range: bytes START-END/TOTAL`` starts (None: not a partial answer)."""
    if response.status_code != 206:
        return None
    value = response.headers.get("Content-Range", "")
    first = value.removeprefix("bytes ").split("-", 1)[0].strip()
    return int(first) if first.isdigit() else None


def _retry_after(value: str | None) -> float:
    """``Retry-After`` in seconds (only the delta-seconds form; a date reads as no hint)."""
    try:
        return max(0.0, float(value)) if value else 0.0
    except ValueError:
        return 0.0


def _partial_path(url: str, filename: str) -> Path:
    folder = Path(os.environ.get(DOWNLOAD_DIR_ENV) or Path(tempfile.gettempdir()) / "partaware-downloads")
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"{hashlib.sha256(url.encode()).hexdigest()[:16]}-{filename}.part"


@contextmanager
def _download_lock(part: Path) -> Iterator[None]:
    """An exclusive lock on ``<part>.lock`` (POSIX ``flock``; none where that does not exist)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield
        return
    with open(f"{part}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def sha256_of(path: Path) -> str:
    """sha256 of a local file, read in chunks."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def resolve_url(spec: EncoderSpec, root: StorageRoot | None) -> dict[str, Any]:
    root = root or StorageRoot.open()
    uri = find_staged(spec, root)
    if uri is None:
        if not spec.weights.downloadable:
            why = f"{spec.weights.location} cannot be downloaded automatically"
            raise WeightsUnavailableError(staging_instruction(spec, root, why=why))
        if is_offline():
            raise WeightsUnavailableError(staging_instruction(spec, root, why="offline, nothing staged"))
        uri = download_to_cache(spec, root)
    return load_checkpoint_bytes(_read_verified(uri, spec), name=uri)


# --- timm pretrained tags -----------------------------------------------------------------------


def _timm_cfg(spec: EncoderSpec):
    import timm

    tag = spec.weights.location or spec.arch
    cfg = timm.models.get_pretrained_cfg(tag)
    if cfg is None:
        raise SpecError(f"encoder {spec.name!r}: timm has no pretrained tag {tag!r}")
    return tag, cfg


def _timm_filename(spec: EncoderSpec) -> str:
    _, cfg = _timm_cfg(spec)
    if cfg.hf_hub_id:
        return cfg.hf_hub_filename or "model.safetensors"
    if cfg.url:
        return posixpath.basename(urllib.parse.urlparse(cfg.url).path)
    raise SpecError(f"encoder {spec.name!r}: timm tag has neither a hub id nor a URL")


def _timm_source(spec: EncoderSpec) -> str:
    _, cfg = _timm_cfg(spec)
    return f"huggingface.co/{cfg.hf_hub_id}" if cfg.hf_hub_id else cfg.url


def _fetch_timm_file(spec: EncoderSpec, root: StorageRoot) -> str:
    """A local path or URI of the tag's weights: staged, else the hub (its cache honours HF_HUB_OFFLINE)."""
    staged = find_staged(spec, root)
    if staged:
        return staged
    _, cfg = _timm_cfg(spec)
    if cfg.hf_hub_id:
        from huggingface_hub import hf_hub_download

        try:
            return hf_hub_download(cfg.hf_hub_id, _timm_filename(spec))
        except Exception as e:  # offline with an empty hub cache, no network, missing file
            why = "offline, nothing staged or in the hub cache" if is_offline() else f"hub: {type(e).__name__}"
            raise WeightsUnavailableError(staging_instruction(spec, root, why=why)) from e
    if is_offline():
        raise WeightsUnavailableError(staging_instruction(spec, root, why="offline, nothing staged"))
    url_spec = spec.model_copy(update={"weights": spec.weights.model_copy(update={"location": cfg.url})})
    return download_to_cache(url_spec, root)


def resolve_timm(spec: EncoderSpec, root: StorageRoot | None) -> dict[str, Any]:
    """A timm-layout backbone state dict for a timm tag, loaded strictly (classifier removed after).

    timm's own ``checkpoint_filter_fn`` for the architecture adapts the file (open_clip and original
    DINOv2/EVA layouts, position-embedding resampling to ``arch_kwargs['img_size']``); the model is built
    with the tag's classifier so that every key, the head's included, must match.
    """
    import timm

    from partaware.encoders.base import load_strict

    root = root or StorageRoot.open()
    uri = _fetch_timm_file(spec, root)
    state = load_checkpoint_bytes(_read_verified(uri, spec), name=uri)
    state = state.get("model", state) if isinstance(state.get("model"), dict) else state
    tag, cfg = _timm_cfg(spec)
    model = timm.create_model(tag, pretrained=False, num_classes=cfg.num_classes, **spec.arch_kwargs)
    filter_fn = getattr(sys.modules[type(model).__module__], "checkpoint_filter_fn", None)
    if filter_fn is not None:
        state = filter_fn(state, model)
    load_strict(model, state, what=f"encoder {spec.name!r} ({tag})")
    model.reset_classifier(0)
    return model.state_dict()
