"""LIP (Look Into Person): 19 human part classes as label maps (protocol §6, Table 4).

Sources: the raw release (``TrainVal_images/{train,val}_images/*.jpg`` and
``TrainVal_parsing_annotations/{train,val}_segmentations/*.png``, values 0-19, 0 = background) or the
paper's processed layout ``LIP/{img,ann}/{train,val}``. Both are found anywhere under ``--source``.
"""

from __future__ import annotations

from partaware.datasets.ade20k import LabelMapOptions
from partaware.datasets.convert import Conversion, label_map_info, parse_options, run_conversion
from partaware.datasets.labelmaps import convert_label_map_pairs, find_pairs, read_class_names
from partaware.datasets.store import PreparedDataset
from partaware.storage import StorageRoot

CONVERTER_VERSION = "lip-1"
LIP_CLASSES = (
    "Hat", "Hair", "Glove", "Sunglasses", "UpperClothes", "Dress", "Coat", "Socks", "Pants", "Jumpsuits", "Scarf",
    "Skirt", "Face", "Left-arm", "Right-arm", "Left-leg", "Right-leg", "Left-shoe", "Right-shoe",
)  # fmt: skip
RAW_LAYOUT = {"train": ("train_images", "train_segmentations"), "val": ("val_images", "val_segmentations")}
PROCESSED_LAYOUT = {"train": ("img/train", "ann/train"), "val": ("img/val", "ann/val")}


def prepare_lip(
    root: StorageRoot, *, source=None, options=None, workers=None, progress=None
) -> tuple[PreparedDataset, bool]:
    opts = parse_options(LabelMapOptions, "lip", options)

    def body(conv: Conversion):
        names = read_class_names(conv, opts.classes_file, opts.class_names, len(LIP_CLASSES))
        pairs = find_pairs(conv, [RAW_LAYOUT, PROCESSED_LAYOUT], splits=opts.splits)
        rows = convert_label_map_pairs(conv, pairs, level="part", num_classes=len(LIP_CLASSES))
        info = {
            "description": "LIP: 19 human part classes, label maps",
            "label_maps": label_map_info(
                "part", names or list(LIP_CLASSES), names_source="options" if names else "LIP release"
            ),
        }
        return rows, info

    return run_conversion(
        root,
        "lip",
        source=source,
        options=opts,
        converter_version=CONVERTER_VERSION,
        workers=workers,
        progress=progress,
        body=body,
    )
