"""A deterministic subset of a prepared dataset version (a job's ``limit``: smoke tests), published as a version.

Why a version of its own: every later stage (pretraining, extraction, probes, galleries) names a dataset by its
version, so a subset that *is* a version is honoured end to end with no stage knowing about limits, its features
and probe results are cached apart from the full set's, and results name it (``dataset_version``). Its
``dataset.json`` says what it is: ``subset: {of, limit, rule, images}``.

The rule (``SUBSET_RULE``): per split, images are dealt round-robin over their object classes (classes in label-id
order; within a class, images by the sha256 of their id, a fixed shuffle that does not follow file naming) and the
first ``limit`` are kept, so each split keeps up to ``limit`` images spread over as many classes as it can. Every
manifest row of a kept image is kept (objects, parts, label maps); files are those of kept rows plus every file
no row names (class lists, palettes).
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from typing import Any

from partaware.datasets.store import DatasetBuild, PreparedDataset, find_prepared
from partaware.storage import StorageRoot

SUBSET_RULE = "per split: round-robin over object classes (label-id order), sha256(image_id) order within a class"
SUBSET_VERSION = 1
_FILE_COLUMNS = ("image_uri", "mask_uri", "label_map_uri")
#: what ``DatasetBuild.publish`` computes itself: never copied from the full version's info
_COMPUTED = {"name", "version", "recipe", "recipe_key", "rows", "images", "regions_per_level", "files", "bytes",
             "errors", "error_count", "error_kinds", "created", "subset"}  # fmt: skip


def choose_images(rows: list[dict[str, Any]], limit: int) -> set[str]:
    """The image ids ``SUBSET_RULE`` keeps: up to ``limit`` per split (rows: ``image_id, split, object_label_id``)."""
    split_of: dict[str, str] = {}
    class_of: dict[str, int] = {}
    for r in rows:
        image = r["image_id"]
        split_of.setdefault(image, r["split"])
        label = r.get("object_label_id")
        if label is not None and label >= 0:
            class_of[image] = min(class_of.get(image, label), label)
    by_split: dict[str, dict[int, list[str]]] = defaultdict(lambda: defaultdict(list))
    for image, split in split_of.items():
        by_split[split][class_of.get(image, -1)].append(image)
    keep: set[str] = set()
    for classes in by_split.values():
        queues = [sorted(imgs, key=_hash_key) for _, imgs in sorted(classes.items())]
        taken, depth = 0, 0
        while taken < limit and any(depth < len(q) for q in queues):
            for q in queues:
                if depth < len(q) and taken < limit:
                    keep.add(q[depth])
                    taken += 1
            depth += 1
    return keep


def subset_dataset(root: StorageRoot, prepared: PreparedDataset, limit: int | None) -> PreparedDataset:
    """``prepared`` cut down to ``limit`` images per split, published (once) as its own version; ``prepared``
    itself when there is no limit or every image is kept."""
    if limit is None:
        return prepared
    recipe = {"subset_of": prepared.version, "limit": limit, "rule": SUBSET_RULE, "subset_version": SUBSET_VERSION}
    found = find_prepared(root, prepared.name, recipe)
    if found is not None:
        return found
    table = prepared.manifest()
    keep = choose_images(table.select(["image_id", "split", "object_label_id"]).to_pylist(), limit)
    if len(keep) == len(set(table.column("image_id").to_pylist())):
        return prepared
    rows = [r for r in table.to_pylist() if r["image_id"] in keep]
    named = {r[c] for c in _FILE_COLUMNS for r in table.to_pylist() if r[c] is not None}
    kept = {r[c] for c in _FILE_COLUMNS for r in rows if r[c] is not None}
    files = sorted(kept | (set(prepared.checksums()) - named))
    info = {k: v for k, v in prepared.info.items() if k not in _COMPUTED}
    info["subset"] = {"of": prepared.version, "limit": limit, "rule": SUBSET_RULE, "images": len(keep)}
    with DatasetBuild(root, prepared.name, recipe) as build:
        for rel in files:
            build.add_file(rel, prepared.root.read_bytes(rel))
        return build.publish(rows, info=info)


def _hash_key(image_id: str) -> str:
    return hashlib.sha256(image_id.encode()).hexdigest()
