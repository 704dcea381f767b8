"""LIP (Look Into Person): 19 human part classes as label maps (protocol §6, Table 4).

Sources: the raw release (``TrainVal_images/{train,val}_images/*.jpg`` and
``TrainVal_parsing_annotations/{train,val}_segmentations/*.png``, values 0-19, 0 = background) or the
paper's processed layout ``LIP/{img,ann}/{train,val}``. Both are found anywhere under ``--source``.
"""

from __future__ import annotations

from partaware.datasets.ade20k import LabelMapOptions, named_classes
from partaware.datasets.classlists import load_class_list
from partaware.datasets.convert import label_map_info
from partaware.datasets.labelmaps import LabelMapConverter, Pair

CONVERTER_VERSION = "lip-2"
CLASS_LIST = "lip-19"  # the benchmark's 19 names (``classes/lip-19.json``), its digest in the version
RAW_LAYOUT = {"train": ("train_images", "train_segmentations"), "val": ("val_images", "val_segmentations")}
PROCESSED_LAYOUT = {"train": ("img/train", "ann/train"), "val": ("img/val", "ann/val")}


class LipConverter(LabelMapConverter):
    name, version, options_model = "lip", CONVERTER_VERSION, LabelMapOptions
    level, num_classes, layouts = "part", 19, [RAW_LAYOUT, PROCESSED_LAYOUT]

    @classmethod
    def extra_recipe(cls) -> dict:
        shipped = load_class_list(CLASS_LIST)
        return {"class_list": {"name": shipped.name, "sha256": shipped.sha256}}

    def records(self) -> list[Pair]:
        names, names_source, record = named_classes(self.conv, load_class_list(CLASS_LIST))
        self._info = {
            "description": "LIP: 19 human part classes, label maps",
            "label_maps": label_map_info("part", names, names_source=names_source, class_list=record),
            "class_lists": {"part": record},
        }
        return super().records()

    def info(self) -> dict:
        return self._info


prepare_lip = LipConverter.prepare
