"""LIP (Look Into Person): 19 human part classes as label maps (protocol §6, Table 4).

Sources: the raw release (``TrainVal_images/{train,val}_images/*.jpg`` and
``TrainVal_parsing_annotations/{train,val}_segmentations/*.png``, values 0-19, 0 = background) or the
paper's processed layout ``LIP/{img,ann}/{train,val}``. Both are found anywhere under ``--source``.
"""

from __future__ import annotations

from partaware.datasets.ade20k import LabelMapOptions
from partaware.datasets.convert import label_map_info
from partaware.datasets.labelmaps import LabelMapConverter, Pair, read_class_names

CONVERTER_VERSION = "lip-1"
LIP_CLASSES = (
    "Hat", "Hair", "Glove", "Sunglasses", "UpperClothes", "Dress", "Coat", "Socks", "Pants", "Jumpsuits", "Scarf",
    "Skirt", "Face", "Left-arm", "Right-arm", "Left-leg", "Right-leg", "Left-shoe", "Right-shoe",
)  # fmt: skip
RAW_LAYOUT = {"train": ("train_images", "train_segmentations"), "val": ("val_images", "val_segmentations")}
PROCESSED_LAYOUT = {"train": ("img/train", "ann/train"), "val": ("img/val", "ann/val")}


class LipConverter(LabelMapConverter):
    name, version, options_model = "lip", CONVERTER_VERSION, LabelMapOptions
    level, num_classes, layouts = "part", len(LIP_CLASSES), [RAW_LAYOUT, PROCESSED_LAYOUT]

    def records(self) -> list[Pair]:
        self.names = read_class_names(self.conv, self.opts.classes_file, self.opts.class_names, self.num_classes)
        return super().records()

    def info(self) -> dict:
        names = self.names
        return {
            "description": "LIP: 19 human part classes, label maps",
            "label_maps": label_map_info(
                "part", names or list(LIP_CLASSES), names_source="options" if names else "LIP release"
            ),
        }


prepare_lip = LipConverter.prepare
