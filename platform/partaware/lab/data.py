"""The lab's training data: a prepared dataset's object crops and labels, downscaled once, in memory.

Why object crops: pretraining sets such as ImageNet are object-centric, and the object-level probes
see exactly these crops (cut by ``partaware.extract.crops``, the extraction's own code). Measured on the
quickstart set (docs/lab.md): whole cluttered images at 64 px left a small ViT at chance for ten epochs,
the object crops did not. Why in memory: 64-px crops of the synthetic training split are a few MB as
one ``uint8`` tensor; decoding and resizing once keeps every step pure compute. Only the training split
is read, so later probes never test on pretraining images. A corrupt image or box is skipped and named
(file and manifest row); it does not stop pretraining.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import torch

from partaware.datasets.store import PreparedDataset, open_prepared
from partaware.errors import DatasetError
from partaware.extract.crops import crop_regions
from partaware.storage import StorageRoot, safe_relpath

log = logging.getLogger(__name__)


@dataclass
class LabData:
    """Training images and their object labels."""

    images: torch.Tensor  # N x 3 x S x S uint8
    labels: torch.Tensor  # N int64 object class ids
    class_names: list[str]
    dataset: str
    version: str
    skipped: list[dict] = field(default_factory=list)  # corrupt images: {"file", "row", "error"}

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


def load_lab_data(
    prepared: PreparedDataset,
    *,
    size: int,
    split: str = "train",
    limit: int | None = None,
) -> LabData:
    """One crop per ``object`` row of ``split`` (its box, stretched to the square as extraction does),
    resized to ``size``."""
    table = prepared.manifest()
    columns = ["image_uri", "split", "level", "object_label", "object_label_id", "box", "label_id"]
    cols = table.select(columns).to_pydict()
    names_by_id: dict[int, str] = {}
    picked: list[tuple[int, str, int, list[float] | None]] = []
    for row, (uri, sp, level, label, label_id, box, own_id) in enumerate(zip(*cols.values(), strict=True)):
        if label_id is not None:
            names_by_id[int(label_id)] = label
        if level != "object" or sp != split or label_id is None or own_id < 0:  # -1: a label-map row, not a crop
            continue
        picked.append((row, uri, int(label_id), box))
    if limit is not None:
        picked = picked[:limit]
    if not picked:
        raise DatasetError(f"dataset {prepared.name} {prepared.version} has no object rows in split {split!r}")
    images, labels, skipped = [], [], []
    for row, uri, label_id, box in picked:
        try:
            crop = crop_regions(prepared.root.read_bytes(safe_relpath(uri)), [box], size=size)
            error = crop.errors[0]
        except OSError as e:
            error = f"unreadable image: {type(e).__name__}: {e}"
        if error:
            skipped.append({"file": uri, "row": row, "error": error})
            log.warning("lab data: skipped %s (manifest row %d): %s", uri, row, error)
            continue
        images.append(crop.pixels[0].transpose(2, 0, 1))
        labels.append(label_id)
    if not images:
        raise DatasetError(f"dataset {prepared.name} {prepared.version}: every {split} image failed to decode")
    class_names = [names_by_id[i] for i in sorted(names_by_id)]
    return LabData(
        images=torch.from_numpy(np.stack(images)),
        labels=torch.tensor(labels, dtype=torch.int64),
        class_names=class_names,
        dataset=prepared.name,
        version=prepared.version,
        skipped=skipped,
    )


def open_lab_dataset(root: StorageRoot, name: str = "synthetic", version: str | None = None) -> PreparedDataset:
    """The prepared dataset the lab trains on (the newest version when ``version`` is None)."""
    return open_prepared(root, name, version)
