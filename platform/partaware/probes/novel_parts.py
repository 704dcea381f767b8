"""Part segmentation across objects (task ``segmentation_novel``): train on base objects, score novel ones.

Why generic parts: a closed-set linear head cannot name a class it never saw, and in the OV-PARTS lists every
class is one object's part ("bus's wheel"), so "novel objects' parts" would be classes the head never
trained on. The head's classes are therefore the part names of the base objects (``wheel``, ``head`` ...):
it is trained on base objects' pixels (novel objects' pixels ignored, as OV-PARTS trains on base classes
only), scored once on the novel objects' parts of the held-out split, and, with the same heads, on the base
objects' parts of that split (the in-distribution score reported beside it). A novel class whose part no
base object has cannot be predicted by such a head: it is ignored and named in the record.

Pure numpy; the class list is the one the prepared version copied (``classes/<name>.json``), its digest checked.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from partaware.errors import DatasetError
from partaware.probes.errors import ProbeInputError
from partaware.probes.metrics import IGNORE_INDEX

#: The in-distribution evaluation, scored by the same heads beside the primary (novel) score.
BASE = "base"


@dataclass(frozen=True)
class PartTransfer:
    """Lookup tables from a dataset's classes (0..K-1, 255 ignored) to the base objects' part names."""

    parts: tuple[str, ...]  # the head's classes
    train: np.ndarray  # (256,) uint8: base objects' parts -> part index; novel objects' pixels ignored
    novel: np.ndarray  # novel objects' parts -> part index (those with a base counterpart); the rest ignored
    base: np.ndarray  # base objects' parts -> part index; novel objects' pixels ignored
    unscored: tuple[str, ...]  # novel classes whose part no base object has

    def record(self, list_name: str) -> dict[str, Any]:
        return {
            "class_list": list_name,
            "head_classes": list(self.parts),
            "trained_on": "base objects' parts (novel objects' pixels ignored)",
            "scored": "novel objects' parts of the held-out split (primary metric)",
            "beside": f"{BASE}_* metrics: base objects' parts of the held-out split, same heads (in-distribution)",
            "unscored_novel_classes": list(self.unscored),
        }


def part_transfer(classes: list[Mapping[str, Any]]) -> PartTransfer:
    """The transfer of a class list whose entries carry ``part`` and ``split`` (``base``/``novel``), in id order."""
    if not classes or any(c.get("split") not in ("base", "novel") or not c.get("part") for c in classes):
        raise ProbeInputError("segmentation_novel needs a class list naming each class's part and base/novel split")
    if len(classes) >= IGNORE_INDEX:
        raise ProbeInputError(f"{len(classes)} classes; the label tables hold at most {IGNORE_INDEX - 1}")
    parts = tuple(sorted({c["part"] for c in classes if c["split"] == "base"}))
    index = {p: i for i, p in enumerate(parts)}
    tables = {k: np.full(256, IGNORE_INDEX, np.uint8) for k in ("train", "novel", "base")}
    unscored = []
    for k, c in enumerate(classes):
        if c["split"] == "base":
            tables["train"][k] = tables["base"][k] = index[c["part"]]
        elif c["part"] in index:
            tables["novel"][k] = index[c["part"]]
        else:
            unscored.append(c["name"])
    return PartTransfer(parts, tables["train"], tables["novel"], tables["base"], tuple(unscored))


def version_class_list(prepared, level: str) -> tuple[str, list[dict[str, Any]]]:
    """(name, entries) of the class list a prepared version copied for ``level``; ``DatasetError`` if it has
    none with base/novel splits or its copy does not match the digest ``dataset.json`` records."""
    from partaware.datasets.convert import class_list_of

    record = class_list_of(prepared.info, level) or {}
    where = f"dataset {prepared.name} {prepared.version}"
    if not record.get("file"):
        raise DatasetError(f"{where}: no shipped class list at level {level!r}; segmentation_novel needs one")
    data = prepared.root.read_bytes(record["file"])
    if hashlib.sha256(data).hexdigest() != record.get("sha256"):
        raise DatasetError(f"{where}: {record['file']} does not match the sha256 dataset.json records for it")
    return record["name"], list(json.loads(data)[record.get("entries") or "classes"])


def transfer_labels(
    labels: Mapping[str, np.ndarray], transfer: PartTransfer, held_out: str = "test"
) -> dict[str, np.ndarray]:
    """Labels by probe split in the head's classes: selection splits by ``train``, the held-out split by
    ``novel`` and, as ``<held_out>:base``, by ``base`` (the same maps)."""
    out = {role: transfer.train[y] for role, y in labels.items() if role != held_out}
    if held_out in labels:
        out[held_out] = transfer.novel[labels[held_out]]
        out[f"{held_out}:{BASE}"] = transfer.base[labels[held_out]]
    return out
