"""An encoder's weights digest without loading its weights, so a feature-cache hit reads no checkpoint.

The digest names the converted state dict (``state_dict_digest``), which only loading can compute. It is
stored beside the weights the first time they are loaded (``<root>/weights/<cache key>/digests.json``),
under a fingerprint of the weights file as storage describes it (URI, size, ETag or modification time):
a changed or re-staged file has another fingerprint and is loaded again. Random weights need no file
(``random:<seed>``); the lab records its digest in its own ``info.json`` (``WEIGHT_DIGESTS["lab"]``).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable

from partaware.encoders.registry import WEIGHT_DIGESTS
from partaware.encoders.specs import EncoderSpec
from partaware.storage import StorageRoot, filesystem_for

DIGESTS_FILE = "digests.json"

__all__ = ["WEIGHT_DIGESTS", "known_weights_digest", "remember_weights_digest"]


def _file_uri(spec: EncoderSpec, root: StorageRoot) -> str | None:
    from partaware.encoders.weights import find_staged

    if spec.weights.kind == "uri":
        return spec.weights.location
    if spec.weights.kind in ("url", "timm"):
        return find_staged(spec, root)
    return None


def weights_fingerprint(spec: EncoderSpec, root: StorageRoot) -> str | None:
    """What the digest depends on, from storage metadata only (None: no file to describe yet)."""
    uri = _file_uri(spec, root)
    if uri is None:
        return None
    fs, path = filesystem_for(uri)
    try:
        info = fs.info(path)
    except (FileNotFoundError, OSError):
        return None
    stamp = info.get("ETag") or info.get("etag") or info.get("mtime") or info.get("LastModified")
    blob = {"uri": uri, "size": info.get("size"), "stamp": str(stamp), "arch": spec.arch,
            "arch_kwargs": spec.arch_kwargs, "converter": spec.weights.converter, "variant": spec.variant}  # fmt: skip
    return hashlib.sha256(json.dumps(blob, sort_keys=True, default=str).encode()).hexdigest()


def _table(spec: EncoderSpec, root: StorageRoot) -> dict[str, str]:
    rel = ("weights", spec.cache_key, DIGESTS_FILE)
    return root.read_json(*rel) if root.exists(*rel) else {}


def known_weights_digest(spec: EncoderSpec, root: StorageRoot | None, *, seed: int = 0) -> str | None:
    """The digest ``load_encoder`` would give, when it is known without loading; else None."""
    if spec.weights.kind == "random":
        return f"random:{seed}"
    if root is None:
        return None
    if spec.weights.kind in WEIGHT_DIGESTS:
        lookup: Callable[[EncoderSpec, StorageRoot], str | None] = WEIGHT_DIGESTS.get(spec.weights.kind)
        return lookup(spec, root)
    fingerprint = weights_fingerprint(spec, root)
    return _table(spec, root).get(fingerprint) if fingerprint else None


def remember_weights_digest(spec: EncoderSpec, root: StorageRoot | None, digest: str) -> None:
    """Store the digest of weights just loaded, beside them, for the next ``known_weights_digest``."""
    if root is None or spec.weights.kind == "random" or spec.weights.kind in WEIGHT_DIGESTS:
        return
    fingerprint = weights_fingerprint(spec, root)
    if fingerprint is None:
        return
    table = _table(spec, root)
    if table.get(fingerprint) != digest:
        root.write_json({**table, fingerprint: digest}, "weights", spec.cache_key, DIGESTS_FILE)
