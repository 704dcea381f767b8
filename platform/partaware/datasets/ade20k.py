"""ADE20K label maps: the 150-class object benchmark, ADE20K-Part (209) and ADE20K-Object (59).

Sources:
- ``ade20k``: ``ADEChallengeData2016/{images,annotations}/{training,validation}`` (``.jpg`` + ``.png``,
  0 = "other", ignored); class names from ``objectInfo150.txt`` when the release has it, else the
  standard list below.
- ``ade20k-part``: ``ADE20K_Part/{img,ann}/{train,val}`` (0 = background, 1..209 parts).
- ``ade20k-object``: the same two layouts, 59 object ids.

Zhu-compatible: the 209 part and 59 object ids are the authors' release's, kept exactly (for Table 4); its
names are not published (the paper's code reuses another dataset's names, marked wrong), so the classes
are shown as ``class 17 (unnamed in the release)`` and ``dataset.json`` records the list used
(``zhu-ade20k-part-209`` / ``zhu-ade20k-object-59``, with its sha256). ``class_names`` or ``classes_file``
(one name per line, in id order) name them instead, recorded as given in options. For named parts use
``ade20k-part-234`` (OV-PARTS); no mapping between the two id sets is published.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from partaware.datasets.classlists import ClassList, load_class_list, options_class_list
from partaware.datasets.convert import Conversion, ConverterOptions, label_map_info
from partaware.datasets.labelmaps import LabelMapConverter, Pair, read_class_names
from partaware.errors import DatasetError
from partaware.validation import register_options_model

CONVERTER_VERSION = "ade20k-2"
#: The shipped list of each Zhu-compatible dataset (numeric ids, names unpublished).
ZHU_LISTS = {"ade20k-part": "zhu-ade20k-part-209", "ade20k-object": "zhu-ade20k-object-59"}
CHALLENGE_LAYOUT = {
    "train": ("images/training", "annotations/training"),
    "val": ("images/validation", "annotations/validation"),
}
PROCESSED_LAYOUT = {"train": ("img/train", "ann/train"), "val": ("img/val", "ann/val")}

ADE20K_150_CLASSES = (
    "wall", "building", "sky", "floor", "tree", "ceiling", "road", "bed", "windowpane", "grass", "cabinet",
    "sidewalk", "person", "earth", "door", "table", "mountain", "plant", "curtain", "chair", "car", "water",
    "painting", "sofa", "shelf", "house", "sea", "mirror", "rug", "field", "armchair", "seat", "fence", "desk",
    "rock", "wardrobe", "lamp", "bathtub", "railing", "cushion", "base", "box", "column", "signboard",
    "chest of drawers", "counter", "sand", "sink", "skyscraper", "fireplace", "refrigerator", "grandstand", "path",
    "stairs", "runway", "case", "pool table", "pillow", "screen door", "stairway", "river", "bridge", "bookcase",
    "blind", "coffee table", "toilet", "flower", "book", "hill", "bench", "countertop", "stove", "palm",
    "kitchen island", "computer", "swivel chair", "boat", "bar", "arcade machine", "hovel", "bus", "towel",
    "light", "truck", "tower", "chandelier", "awning", "streetlight", "booth", "television receiver", "airplane",
    "dirt track", "apparel", "pole", "land", "bannister", "escalator", "ottoman", "bottle", "buffet", "poster",
    "stage", "van", "ship", "fountain", "conveyer belt", "canopy", "washer", "plaything", "swimming pool", "stool",
    "barrel", "basket", "waterfall", "tent", "bag", "minibike", "cradle", "oven", "ball", "food", "step", "tank",
    "trade name", "microwave", "pot", "animal", "bicycle", "lake", "dishwasher", "screen", "blanket", "sculpture",
    "hood", "sconce", "vase", "traffic light", "tray", "ashcan", "fan", "pier", "crt screen", "plate", "monitor",
    "bulletin board", "shower", "radiator", "glass", "clock", "flag",
)  # fmt: skip


@register_options_model
class LabelMapOptions(ConverterOptions):
    splits: list[Literal["train", "val"]] | None = Field(
        None, description="splits to convert (default: every split found)"
    )
    class_names: list[str] | None = Field(None, description="class names in id order (1..K)")
    classes_file: str | None = Field(None, description="text file in the source, one class name per line")


class Ade20kConverter(LabelMapConverter):
    """``ade20k``, the 150-class benchmark; subclasses are the Zhu-compatible releases (a shipped list names them)."""

    name, version, options_model = "ade20k", CONVERTER_VERSION, LabelMapOptions
    level, num_classes, layouts = "object", 150, [CHALLENGE_LAYOUT]

    @classmethod
    def zhu_list(cls) -> ClassList | None:
        zhu = load_class_list(ZHU_LISTS[cls.name]) if cls.name in ZHU_LISTS else None
        if zhu is not None and len(zhu.ids) != cls.num_classes:
            raise DatasetError(
                f"{cls.name}: class list {zhu.name} has {len(zhu.ids)} classes, the dataset {cls.num_classes}"
            )
        return zhu

    @classmethod
    def extra_recipe(cls) -> dict | None:
        zhu = cls.zhu_list()
        return {"class_list": {"name": zhu.name, "sha256": zhu.sha256}} if zhu else None

    def records(self) -> list[Pair]:
        conv, opts, zhu = self.conv, self.opts, self.zhu_list()
        names, names_source = _class_names(conv, self.name, self.num_classes)
        record = None
        if names_source == "options":
            record = options_class_list(names, "class_names" if opts.class_names else "classes_file")
        elif zhu is not None:
            names, names_source, record = (
                zhu.names(),
                f"class list {zhu.name} (ids as released, names unpublished)",
                zhu.record(),
            )
            zhu.add_to(conv.build)
        self._info = {
            "description": f"{self.name}: {self.num_classes}-class {self.level} label maps",
            "label_maps": label_map_info(self.level, names, names_source=names_source, class_list=record),
        }
        if record is not None:
            self._info["class_lists"] = {self.level: record}
        return super().records()

    def info(self) -> dict:
        return self._info


class Ade20kPartConverter(Ade20kConverter):
    name, level, num_classes, layouts = "ade20k-part", "part", 209, [PROCESSED_LAYOUT, CHALLENGE_LAYOUT]


class Ade20kObjectConverter(Ade20kConverter):
    name, level, num_classes, layouts = "ade20k-object", "object", 59, [PROCESSED_LAYOUT, CHALLENGE_LAYOUT]


prepare_ade20k = Ade20kConverter.prepare
prepare_ade20k_part = Ade20kPartConverter.prepare
prepare_ade20k_object = Ade20kObjectConverter.prepare


def _class_names(conv: Conversion, name: str, num_classes: int) -> tuple[list[str], str]:
    opts: LabelMapOptions = conv.options
    given = read_class_names(conv, opts.classes_file, opts.class_names, num_classes)
    if given is not None:
        return given, "options"
    if name == "ade20k":
        info_files = [f for f in conv.source.files() if f.endswith("objectInfo150.txt")]
        if info_files:
            return _object_info_names(conv, min(info_files, key=len)), "objectInfo150.txt"
        return list(ADE20K_150_CLASSES), "built-in list (ADE20K SceneParsing objectInfo150 order)"
    return [], "class list"  # the Zhu-compatible list names them (placeholders, shown as such)


def _object_info_names(conv: Conversion, path: str) -> list[str]:
    """``Idx Ratio Train Val Name`` rows (tab-separated); the first synonym of each name."""
    names = []
    for line in conv.source.read_text(path).splitlines()[1:]:
        fields = line.split("\t") if "\t" in line else line.split(None, 4)
        if len(fields) >= 5:
            names.append(fields[4].split(";")[0].split(",")[0].strip())
    if len(names) != 150:
        return list(ADE20K_150_CLASSES)
    return names
