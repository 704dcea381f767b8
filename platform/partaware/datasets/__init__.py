"""Datasets: converters from each source format into the unified manifest, and their registry.

To add a dataset: write one module with a function
``prepare_<name>(root, *, source, options, workers, progress) -> (PreparedDataset, built_now)`` that
stages files and rows in a ``DatasetBuild`` and publishes it (``options`` validated by a pydantic
model with ``extra="forbid"``), then add one ``DatasetEntry`` row below. Listing imports no converter.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from partaware.registry import Registry
from partaware.storage import StorageRoot


@dataclass(frozen=True)
class DatasetEntry:
    """What ``partctl datasets list`` shows, and where the converter lives (imported lazily)."""

    name: str
    description: str
    levels: tuple[str, ...]
    tasks: tuple[str, ...]
    source: str  # what ``--source`` must point at ("built-in" needs none)
    prepare: str  # "module:function"


DATASETS: Registry[DatasetEntry] = Registry("dataset")


def register_dataset(entry: DatasetEntry, *, aliases: tuple[str, ...] = ()) -> DatasetEntry:
    DATASETS.register(entry.name, entry, aliases=aliases)
    return entry


register_dataset(
    DatasetEntry(
        name="synthetic",
        description="Built-in procedural objects made of shared part types; exact masks, boxes, keypoints.",
        levels=("object", "part"),
        tasks=("retrieval", "linear", "attentive", "knn", "segmentation"),
        source="built-in (no download)",
        prepare="partaware.datasets.synthetic:prepare_synthetic",
    )
)


def prepare_dataset(
    root: StorageRoot,
    name: str,
    *,
    source: str | None = None,
    options: dict[str, Any] | None = None,
    workers: int | None = None,
    progress: Callable[[int, int], None] | None = None,
):
    """Prepare ``name`` under ``root`` (a no-op when this recipe is already prepared).

    Returns ``(PreparedDataset, built_now)``.
    """
    entry = DATASETS.get(name)
    module_name, _, func_name = entry.prepare.partition(":")
    prepare = getattr(importlib.import_module(module_name), func_name)
    return prepare(root, source=source, options=options or {}, workers=workers, progress=progress)
