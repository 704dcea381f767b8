"""ADE20K label maps: the 150-class object benchmark, ADE20K-Part (209) and ADE20K-Object (59).

Sources:
- ``ade20k``: ``ADEChallengeData2016/{images,annotations}/{training,validation}`` (``.jpg`` + ``.png``,
  0 = "other", ignored); class names from ``objectInfo150.txt`` when the release has it, else the
  shipped list ``ade20k-150`` (``classes/ade20k-150.json``, its digest in the version).
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

CONVERTER_VERSION = "ade20k-3"
#: The shipped list of each dataset: the benchmark's names, or the Zhu-compatible ids (names unpublished).
LISTS = {"ade20k": "ade20k-150", "ade20k-part": "zhu-ade20k-part-209", "ade20k-object": "zhu-ade20k-object-59"}
CHALLENGE_LAYOUT = {
    "train": ("images/training", "annotations/training"),
    "val": ("images/validation", "annotations/validation"),
}
PROCESSED_LAYOUT = {"train": ("img/train", "ann/train"), "val": ("img/val", "ann/val")}


@register_options_model
class LabelMapOptions(ConverterOptions):
    splits: list[Literal["train", "val"]] | None = Field(
        None, description="splits to convert (default: every split found)"
    )
    class_names: list[str] | None = Field(None, description="class names in id order (1..K)")
    classes_file: str | None = Field(None, description="text file in the source, one class name per line")


class Ade20kConverter(LabelMapConverter):
    """``ade20k``, the 150-class benchmark; subclasses are the Zhu-compatible releases (named by shipped lists)."""

    name, version, options_model = "ade20k", CONVERTER_VERSION, LabelMapOptions
    level, num_classes, layouts = "object", 150, [CHALLENGE_LAYOUT]

    @classmethod
    def shipped_list(cls) -> ClassList:
        shipped = load_class_list(LISTS[cls.name])
        if len(shipped.ids) != cls.num_classes:
            raise DatasetError(
                f"{cls.name}: class list {shipped.name} has {len(shipped.ids)} classes, the dataset {cls.num_classes}"
            )
        return shipped

    @classmethod
    def extra_recipe(cls) -> dict | None:
        shipped = cls.shipped_list()
        return {"class_list": {"name": shipped.name, "sha256": shipped.sha256}}

    def records(self) -> list[Pair]:
        names, names_source, record = named_classes(
            self.conv, self.shipped_list(), _release_names(self.conv, self.name)
        )
        self._info = {
            "description": f"{self.name}: {self.num_classes}-class {self.level} label maps",
            "label_maps": label_map_info(self.level, names, names_source=names_source, class_list=record),
            "class_lists": {self.level: record},
        }
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


def named_classes(
    conv: Conversion, shipped: ClassList, release: tuple[list[str], str] | None = None
) -> tuple[list[str], str, dict]:
    """(names, where they come from, class-list record): ``class_names``/``classes_file`` options, else the
    release's own names (``release``: names and file), else the shipped list (copied into the version)."""
    opts: LabelMapOptions = conv.options
    given = read_class_names(conv, opts.classes_file, opts.class_names, len(shipped.ids))
    if given is not None:
        return given, "options", options_class_list(given, "class_names" if opts.class_names else "classes_file")
    if release is not None:
        names, file = release
        return names, file, options_class_list(names, file, note=f"class names of the release's {file}")
    shipped.add_to(conv.build)
    unnamed = "" if shipped.named else " (ids as released, names unpublished)"
    return shipped.names(), f"class list {shipped.name}{unnamed}", shipped.record()


def _release_names(conv: Conversion, name: str) -> tuple[list[str], str] | None:
    """ADE20K-150's names from the release's ``objectInfo150.txt`` (None without one of 150 rows)."""
    if name != "ade20k":
        return None
    info_files = [f for f in conv.source.files() if f.endswith("objectInfo150.txt")]
    names = _object_info_names(conv, min(info_files, key=len)) if info_files else None
    return (names, "objectInfo150.txt") if names else None


def _object_info_names(conv: Conversion, path: str) -> list[str] | None:
    """``Idx Ratio Train Val Name`` rows (tab-separated); the first synonym of each name (None unless 150)."""
    names = []
    for line in conv.source.read_text(path).splitlines()[1:]:
        fields = line.split("\t") if "\t" in line else line.split(None, 4)
        if len(fields) >= 5:
            names.append(fields[4].split(";")[0].split(",")[0].strip())
    return names if len(names) == 150 else None
