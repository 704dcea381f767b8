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

_SEG = ("segmentation",)
_ALIASES = {  # the names the paper's tables use
    "cub": ("cub-200-2011",),
    "coco": ("coco-keypoints",),
    "ade20k": ("ade20k-150",),
    "ade20k-part": ("ade20k-part-209",),
    "ade20k-object": ("ade20k-object-59",),
    "pascal-part": ("pascal-part-193",),
    "pascal-object": ("pascal-object-16",),
}
_PATCH_TASKS = ("retrieval", "linear", "attentive", "knn")
for _entry in (
    DatasetEntry(
        name="cub",
        description="CUB-200-2011: keypoint-centred part patches (eye, leg, wing, tail; protocol 3.3) and bird boxes.",
        levels=("object", "part"),
        tasks=_PATCH_TASKS,
        source="CUB_200_2011 folder or archive (images.txt, parts/part_locs.txt, ...)",
        prepare="partaware.datasets.cub:prepare_cub",
    ),
    DatasetEntry(
        name="coco",
        description="COCO 2017 person keypoints: nose, right wrist, left ankle patches (protocol 3.3).",
        levels=("part",),
        tasks=_PATCH_TASKS,
        source="folder with annotations/person_keypoints_{train,val}2017.json and {train,val}2017/ images",
        prepare="partaware.datasets.coco:prepare_coco",
    ),
    DatasetEntry(
        name="ade20k",
        description="ADE20K (ADEChallengeData2016), 150 object classes, label maps.",
        levels=("object",),
        tasks=_SEG,
        source="ADEChallengeData2016 folder or zip (images/, annotations/{training,validation})",
        prepare="partaware.datasets.ade20k:prepare_ade20k",
    ),
    DatasetEntry(
        name="ade20k-part",
        description="ADE20K-Part: 209 part classes (of 59 objects), label maps.",
        levels=("part",),
        tasks=_SEG,
        source="ADE20K_Part folder ({img,ann}/{train,val})",
        prepare="partaware.datasets.ade20k:prepare_ade20k_part",
    ),
    DatasetEntry(
        name="ade20k-object",
        description="ADE20K-Object: the 59 object classes the ADE20K-Part parts come from, label maps.",
        levels=("object",),
        tasks=_SEG,
        source="folder with {img,ann}/{train,val} or images/annotations/{training,validation}",
        prepare="partaware.datasets.ade20k:prepare_ade20k_object",
    ),
    DatasetEntry(
        name="pascal-part",
        description="Pascal-Part (VOC2010): 193 part classes rendered from Annotations_Part/*.mat, label maps.",
        levels=("part",),
        tasks=_SEG,
        source="folder with Annotations_Part/*.mat, JPEGImages/, ImageSets/Main/{train,val}.txt",
        prepare="partaware.datasets.pascal_part:prepare_pascal_part",
    ),
    DatasetEntry(
        name="pascal-object",
        description="Pascal-Object: the 16 VOC classes that have parts, from the same .mat files, label maps.",
        levels=("object",),
        tasks=_SEG,
        source="as pascal-part",
        prepare="partaware.datasets.pascal_part:prepare_pascal_object",
    ),
    DatasetEntry(
        name="lip",
        description="LIP (Look Into Person): 19 human part classes, label maps.",
        levels=("part",),
        tasks=_SEG,
        source="LIP release (TrainVal_images/, TrainVal_parsing_annotations/) or {img,ann}/{train,val}",
        prepare="partaware.datasets.lip:prepare_lip",
    ),
    DatasetEntry(
        name="partimagenet",
        description="PartImageNet: 40 part classes of 11 super-categories; part boxes, masks and label maps.",
        levels=("object", "part"),
        tasks=(*_PATCH_TASKS, "segmentation"),
        source="folder with {train,val,test}.json (COCO style) and images/",
        prepare="partaware.datasets.partimagenet:prepare_partimagenet",
    ),
    DatasetEntry(
        name="imagenet",
        description="ImageNet-style class folders (train/<wnid>/*.JPEG, val/<wnid>/*.JPEG): whole-image objects.",
        levels=("object",),
        tasks=("linear", "attentive", "knn", "retrieval"),
        source="folder with train/ and/or val/ class sub-folders",
        prepare="partaware.datasets.imagenet:prepare_imagenet",
    ),
):
    register_dataset(_entry, aliases=_ALIASES.get(_entry.name, ()))


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
