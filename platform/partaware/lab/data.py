"""The lab's training data: a prepared dataset's images and object labels, downscaled once, in memory.

Why in memory: the lab's images are tiny (64 px), so the whole training split of the synthetic
dataset is a few MB as one ``uint8`` tensor; decoding and resizing once up front keeps every step
pure compute. Only the training split is read, so later probes never test on pretraining images.
A corrupt image is skipped and named (file and manifest row), it does not stop pretraining.
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass, field

import numpy as np
import torch
from PIL import Image

from partaware.datasets.store import PreparedDataset, open_prepared
from partaware.errors import DatasetError
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


def decode_resized(data: bytes, size: int) -> np.ndarray:
    """JPEG/PNG bytes -> ``3 x size x size`` uint8 (RGB, antialiased bicubic resize)."""
    with Image.open(io.BytesIO(data)) as im:
        im = im.convert("RGB").resize((size, size), Image.BICUBIC, reducing_gap=3.0)
        return np.asarray(im, dtype=np.uint8).transpose(2, 0, 1).copy()


def load_lab_data(
    prepared: PreparedDataset,
    *,
    size: int,
    split: str = "train",
    limit: int | None = None,
) -> LabData:
    """One image per ``object`` row of ``split`` (its whole image, not the box), resized to ``size``."""
    table = prepared.manifest()
    cols = table.select(["image_uri", "split", "level", "object_label", "object_label_id"]).to_pydict()
    names_by_id: dict[int, str] = {}
    picked: list[tuple[int, str, int]] = []
    seen: set[str] = set()
    for row, (uri, sp, level, label, label_id) in enumerate(zip(*cols.values(), strict=True)):
        if label_id is not None:
            names_by_id[int(label_id)] = label
        if level != "object" or sp != split or label_id is None or uri in seen:
            continue
        seen.add(uri)
        picked.append((row, uri, int(label_id)))
    if limit is not None:
        picked = picked[:limit]
    if not picked:
        raise DatasetError(f"dataset {prepared.name} {prepared.version} has no object rows in split {split!r}")
    images, labels, skipped = [], [], []
    for row, uri, label_id in picked:
        try:
            images.append(decode_resized(prepared.root.read_bytes(safe_relpath(uri)), size))
            labels.append(label_id)
        except (OSError, ValueError, SyntaxError) as e:  # PIL raises these for corrupt files
            skipped.append({"file": uri, "row": row, "error": f"{type(e).__name__}: {e}"})
            log.warning("lab data: skipped %s (manifest row %d): %s", uri, row, e)
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
