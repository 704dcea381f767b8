"""Weights ahead of a run: fetch them into the weight cache, stage a hand-downloaded file, describe what is there.

A run resolves weights lazily (``weights.py``) from ``<root>/weights/<cache_key>/<file>``; these put files there
first (``partctl weights fetch|stage|list``), so an air-gapped cluster sharing the storage root, or a release with
no plain download (BEiT's and CAE's Google-Drive folders), finds them. Every file in the cache has a
``<file>.sha256`` sidecar (checked whenever it is read); ``stage`` also loads the file through the encoder's
converter into its architecture, strictly, and records the state-dict digest (``digests.py``) so a wrong file is
refused before anything runs. Describing (``describe``) reads storage metadata only: no torch, timm or network.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from partaware.encoders.specs import EncoderSpec
from partaware.encoders.weights import sha256_of
from partaware.errors import CheckpointError, SpecError
from partaware.storage import StorageRoot, filesystem_for

#: weights kinds a file can be fetched or staged for (``lab`` is trained, ``random`` has none, ``uri`` is read in place)
FILE_KINDS = ("url", "timm")
_CHUNK = 1 << 20


@dataclass(frozen=True)
class FetchOutcome:
    """What ``fetch`` did for one encoder: ``status`` cached | staged | fetched | skipped, and where or why."""

    name: str
    status: str
    where: str


@dataclass(frozen=True)
class StagedWeights:
    """A file staged into the weight cache: its URI, sha256 and the converted state dict's digest."""

    uri: str
    sha256: str
    bytes: int
    weights_digest: str


def cache_filename(spec: EncoderSpec) -> str | None:
    """The file's name in the cache without importing timm (None: only timm's config can name it)."""
    from partaware.encoders.weights import weights_filename

    if spec.weights.kind == "timm" and not spec.weights.filename:
        return None
    return weights_filename(spec)


def describe(spec: EncoderSpec, root: StorageRoot, state: str) -> dict[str, Any]:
    """One row of ``partctl weights list``: where the file is (or goes), its size and recorded sha256."""
    from partaware.encoders.weights import find_staged

    row: dict[str, Any] = {
        "name": spec.name, "kind": spec.weights.kind, "file": None, "state": state, "uri": None, "bytes": None,
        "sha256": None, "source": spec.weights.location or None,
    }  # fmt: skip
    if spec.weights.kind not in FILE_KINDS:
        if spec.weights.kind == "uri":
            row["uri"] = spec.weights.location
        return row
    name = cache_filename(spec)
    row["file"] = name
    uri = find_staged(spec, root) if name else None
    row["uri"] = uri or (root.uri_of("weights", spec.cache_key, name) if name else None)
    if uri:
        fs, path = filesystem_for(uri)
        try:
            row["bytes"] = fs.info(path).get("size")
            if fs.exists(path + ".sha256"):
                row["sha256"] = fs.cat_file(path + ".sha256").decode().strip()
        except (OSError, UnicodeDecodeError):
            pass
    return row


def fetch(spec: EncoderSpec, root: StorageRoot, *, progress=None) -> FetchOutcome:
    """Put the encoder's weights file in the weight cache (``WeightsUnavailableError`` says what to stage where).

    ``url``: already cached or staged, else downloaded (``download_to_cache``: resume, retries, sha256). ``timm``:
    through ``huggingface_hub`` (its cache, resume and retries honour ``HF_HUB_OFFLINE``), then copied into the
    weight cache with its sha256, so every node reading this storage root finds it. Other kinds: skipped, saying why.
    """
    from partaware.encoders.weights import (
        WeightsUnavailableError,
        _fetch_timm_file,
        download_to_cache,
        find_staged,
        is_offline,
        staging_instruction,
    )

    kind = spec.weights.kind
    if kind not in FILE_KINDS:
        return FetchOutcome(spec.name, "skipped", _no_file(spec))
    staged = find_staged(spec, root)
    if staged:
        return FetchOutcome(spec.name, "cached" if staged.startswith(root.uri) else "staged", staged)
    if kind == "url":
        if not spec.weights.downloadable:
            why = f"{spec.weights.location} cannot be downloaded automatically"
            raise WeightsUnavailableError(staging_instruction(spec, root, why=why))
        if is_offline():
            raise WeightsUnavailableError(staging_instruction(spec, root, why="offline, nothing staged"))
        return FetchOutcome(spec.name, "fetched", download_to_cache(spec, root, progress=progress))
    hub_path = _fetch_timm_file(spec, root)  # the hub's local file (or a staged one, found above)
    uri, _ = _copy_in(spec, root, Path(hub_path))
    return FetchOutcome(spec.name, "fetched", uri)


def stage(spec: EncoderSpec, path: str | Path, root: StorageRoot, *, sha256: str | None = None) -> StagedWeights:
    """Copy a hand-downloaded file into the weight cache after checking it is this encoder's.

    Checked before it counts: the sha256 (``--sha256`` and the spec's own, when known), then a load with
    ``weights_only=True`` through the spec's converter into its architecture, strictly. A file that fails is
    removed again (``CheckpointError``: the line says why). The state-dict digest is recorded beside it.
    """
    from partaware.encoders.digests import remember_weights_digest
    from partaware.encoders.weights import cache_relpath, check_sha256

    if spec.weights.kind not in FILE_KINDS:
        raise SpecError(f"encoder {spec.name!r}: {_no_file(spec)}; nothing to stage")
    path = Path(path).expanduser()
    if not path.is_file():
        raise SpecError(f"{path}: no such file; give the downloaded checkpoint's path")
    digest = sha256_of(path)
    for expected in (sha256, spec.weights.sha256):
        check_sha256(digest, expected, what=str(path))
    if spec.weights.kind == "url":  # checked where it is, so a wrong file never replaces a cached one
        in_place = spec.weights.model_copy(update={"kind": "uri", "location": str(path), "sha256": None})
        loaded = _load(spec.model_copy(update={"weights": in_place}), None)
        uri, size = _copy_in(spec, root, path, digest=digest)
    else:  # timm's own loading path reads the cache: copy, check, and take it out again if it fails
        uri, size = _copy_in(spec, root, path, digest=digest)
        try:
            loaded = _load(spec, root)
        except BaseException:
            rel = cache_relpath(spec)
            for name in (rel[-1], rel[-1] + ".sha256"):
                with contextlib.suppress(FileNotFoundError):
                    root.fs.rm_file(root.join(*rel[:-1], name))
            raise
    remember_weights_digest(spec, root, loaded)
    return StagedWeights(uri=uri, sha256=digest, bytes=size, weights_digest=loaded)


def _load(spec: EncoderSpec, root: StorageRoot | None) -> str:
    """The staged file, loaded as a run would (strict); its state-dict digest. Any failure is a ``CheckpointError``."""
    from partaware.encoders.loading import load_encoder
    from partaware.errors import PartawareError

    try:
        return load_encoder(spec, root=root).weights_digest
    except PartawareError as e:
        if isinstance(e, CheckpointError):
            raise
        raise CheckpointError(f"{e}; the file was not staged") from e
    except (RuntimeError, KeyError, ValueError) as e:  # a converter meeting another layout
        first = (str(e).strip().splitlines() or [""])[0][:300]
        why = f"{type(e).__name__}: {first}"
        raise CheckpointError(f"encoder {spec.name!r}: the file does not fit its architecture or converter "
                              f"{spec.weights.converter!r} ({why}); the file was not staged") from e  # fmt: skip


def _copy_in(spec: EncoderSpec, root: StorageRoot, src: Path, *, digest: str | None = None) -> tuple[str, int]:
    """Copy ``src`` into ``<root>/weights/<cache_key>/<file>`` atomically, its sha256 sidecar after it."""
    from partaware.encoders.weights import cache_relpath

    rel = cache_relpath(spec)
    digest = digest or sha256_of(src)
    with src.open("rb") as f, root.open_atomic(*rel) as out:
        shutil.copyfileobj(f, out, _CHUNK)
    root.write_bytes(digest.encode(), *rel[:-1], rel[-1] + ".sha256")
    return root.uri_of(*rel), os.path.getsize(src)


def _no_file(spec: EncoderSpec) -> str:
    kind = spec.weights.kind
    if kind == "lab":
        objective = spec.weights.location.split("/")[0]
        return f"lab weights are trained, not fetched: partctl pretrain --objectives {objective}"
    if kind == "random":
        return "random weights: no file"
    return f"weights are read where they are ({spec.weights.location})"
