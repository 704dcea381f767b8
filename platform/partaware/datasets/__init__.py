"""Datasets: converters from each source format into the unified manifest, and their registry.

To add a dataset: write one module with a function
``prepare_<name>(root, *, source, options, workers, progress) -> (PreparedDataset, built_now)`` that
stages files and rows in a ``DatasetBuild`` and publishes it (``options`` validated by a pydantic
model with ``extra="forbid"``, named in the entry's ``options`` so that a job spec's options are typed
at validation), then add one ``DatasetEntry`` row below. Listing imports no converter.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from partaware.registry import Registry
from partaware.storage import StorageRoot


@dataclass(frozen=True)
class DatasetEntry:
    """What ``partctl datasets list`` shows, and where the converter lives (imported lazily)."""

    name: str
    description: str
    levels: tuple[str, ...]
    kinds: tuple[str, ...]  # what it offers the probe tasks: "regions" (boxes, keypoint patches), "label_maps"
    held_out: str  # the split scored once, after selection on data carved from train
    source: str  # what ``--source`` must point at ("built-in" needs none)
    prepare: str  # "module:function"
    gallery: tuple[str, ...] | None = None  # retrieval's gallery splits (None: every split, as CUB in the paper)
    options: str = ""  # "module:Class", the converter's options model (specs are typed by it, no torch imported)
    generated: bool = False  # built in, takes no source
    object_splits: bool = False  # its class list splits objects into base and novel (OV-PARTS): segmentation_novel


DATASETS: Registry[DatasetEntry] = Registry("dataset")


def register_dataset(entry: DatasetEntry, *, aliases: tuple[str, ...] = ()) -> DatasetEntry:
    DATASETS.register(entry.name, entry, aliases=aliases)
    return entry


register_dataset(
    DatasetEntry(
        name="synthetic",
        description="Built-in procedural objects made of shared part types; exact masks, boxes, keypoints.",
        levels=("object", "part"),
        kinds=("regions", "label_maps"),
        held_out="test",
        source="built-in (no download)",
        prepare="partaware.datasets.synthetic:prepare_synthetic",
        options="partaware.datasets.synthetic:SyntheticConfig",
        generated=True,
    )
)

_MAPS = ("label_maps",)
_ALIASES = {  # the names the paper's tables use
    "cub": ("cub-200-2011",),
    "coco": ("coco-keypoints",),
    "ade20k": ("ade20k-150",),
    "ade20k-part": ("ade20k-part-209",),
    "ade20k-object": ("ade20k-object-59",),
    "pascal-part": ("pascal-part-193",),
    "pascal-object": ("pascal-object-16",),
}
_REGIONS = ("regions",)
for _entry in (
    DatasetEntry(
        name="cub",
        description="CUB-200-2011: keypoint-centred part patches (eye, leg, wing, tail; protocol 3.3) and bird boxes.",
        levels=("object", "part"),
        kinds=_REGIONS,
        held_out="test",
        source="CUB_200_2011 folder or archive (images.txt, parts/part_locs.txt, ...)",
        prepare="partaware.datasets.cub:prepare_cub",
        options="partaware.datasets.cub:CubOptions",
    ),
    DatasetEntry(
        name="coco",
        description="COCO 2017 person keypoints: nose, right wrist, left ankle patches (protocol 3.3).",
        levels=("part",),
        kinds=_REGIONS,
        held_out="val",
        gallery=("train",),
        source="folder with annotations/person_keypoints_{train,val}2017.json and {train,val}2017/ images",
        prepare="partaware.datasets.coco:prepare_coco",
        options="partaware.datasets.coco:CocoOptions",
    ),
    DatasetEntry(
        name="ade20k",
        description="ADE20K (ADEChallengeData2016), 150 object classes, label maps.",
        levels=("object",),
        kinds=_MAPS,
        held_out="val",
        source="ADEChallengeData2016 folder or zip (images/, annotations/{training,validation})",
        prepare="partaware.datasets.ade20k:prepare_ade20k",
        options="partaware.datasets.ade20k:LabelMapOptions",
    ),
    DatasetEntry(
        name="ade20k-part",
        description="ADE20K-Part-209 of Zhu et al.: the release's 209 part ids, unnamed (class k), label maps.",
        levels=("part",),
        kinds=_MAPS,
        held_out="val",
        source="ADE20K_Part folder ({img,ann}/{train,val})",
        prepare="partaware.datasets.ade20k:prepare_ade20k_part",
        options="partaware.datasets.ade20k:LabelMapOptions",
    ),
    DatasetEntry(
        name="ade20k-object",
        description="ADE20K-Object-59 of Zhu et al.: the release's 59 object ids, unnamed (class k), label maps.",
        levels=("object",),
        kinds=_MAPS,
        held_out="val",
        source="folder with {img,ann}/{train,val} or images/annotations/{training,validation}",
        prepare="partaware.datasets.ade20k:prepare_ade20k_object",
        options="partaware.datasets.ade20k:LabelMapOptions",
    ),
    DatasetEntry(
        name="pascal-part",
        description="Pascal-Part-193: parts rendered from Annotations_Part/*.mat, or Zhu et al.'s ids as released.",
        levels=("part",),
        kinds=_MAPS,
        held_out="val",
        source="folder with Annotations_Part/*.mat, JPEGImages/, ImageSets/Main/{train,val}.txt",
        prepare="partaware.datasets.pascal_part:prepare_pascal_part",
        options="partaware.datasets.pascal_part:PascalPartOptions",
    ),
    DatasetEntry(
        name="pascal-object",
        description="Pascal-Object: the 16 VOC classes that have parts, from the same .mat files, label maps.",
        levels=("object",),
        kinds=_MAPS,
        held_out="val",
        source="as pascal-part",
        prepare="partaware.datasets.pascal_part:prepare_pascal_object",
        options="partaware.datasets.pascal_part:PascalPartOptions",
    ),
    DatasetEntry(
        name="ade20k-part-234",
        description="OV-PARTS ADE20K-Part-234: 234 named parts of 44 objects (base/novel split), label maps.",
        levels=("part",),
        kinds=_MAPS,
        held_out="val",
        source="OV-PARTS ADE20K-Part-234 folder (images/ and annotations_detectron2_part/, {training,validation})",
        prepare="partaware.datasets.ovparts:prepare_ade20k_part_234",
        options="partaware.datasets.ovparts:OvPartsOptions",
        object_splits=True,
    ),
    DatasetEntry(
        name="pascal-part-116",
        description="OV-PARTS Pascal-Part-116: 116 named parts and 20 objects (base/novel split), label maps.",
        levels=("object", "part"),
        kinds=_MAPS,
        held_out="val",
        source="OV-PARTS Pascal-Part-116 folder (images/, annotations_detectron2_{part,obj}/, {train,val})",
        prepare="partaware.datasets.ovparts:prepare_pascal_part_116",
        options="partaware.datasets.ovparts:OvPartsOptions",
        object_splits=True,
    ),
    DatasetEntry(
        name="lip",
        description="LIP (Look Into Person): 19 human part classes, label maps.",
        levels=("part",),
        kinds=_MAPS,
        held_out="val",
        source="LIP release (TrainVal_images/, TrainVal_parsing_annotations/) or {img,ann}/{train,val}",
        prepare="partaware.datasets.lip:prepare_lip",
        options="partaware.datasets.ade20k:LabelMapOptions",
    ),
    DatasetEntry(
        name="partimagenet",
        description="PartImageNet: 40 parts of 11 super-categories, class-disjoint splits; boxes, masks, label maps.",
        levels=("object", "part"),
        kinds=("regions", "label_maps"),
        held_out="test",
        source="folder with {train,val,test}.json (COCO style) and images/",
        prepare="partaware.datasets.partimagenet:prepare_partimagenet",
        options="partaware.datasets.partimagenet:PartImageNetOptions",
    ),
    DatasetEntry(
        name="imagenet",
        description="ImageNet-style class folders (train/<wnid>/*.JPEG, val/<wnid>/*.JPEG): whole-image objects.",
        levels=("object",),
        kinds=_REGIONS,
        held_out="val",
        gallery=("val",),
        source="folder with train/ and/or val/ class sub-folders",
        prepare="partaware.datasets.imagenet:prepare_imagenet",
        options="partaware.datasets.imagenet:ImageNetOptions",
    ),
):
    register_dataset(_entry, aliases=_ALIASES.get(_entry.name, ()))


def options_model(name: str) -> type[BaseModel]:
    """The converter's options model of dataset ``name``: what a spec's ``datasets[].options`` must fit."""
    module_name, _, cls = (DATASETS.get(name).options or "partaware.datasets.convert:ConverterOptions").partition(":")
    return getattr(importlib.import_module(module_name), cls)


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
