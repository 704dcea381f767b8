"""What every real-dataset converter shares: options, the idempotent run, image staging, bounded threads.

A converter module only lists its source files and turns records into unified rows (the Hugging Face
``datasets`` split: hooks for the format, one base for the risky part; the hooks are ``converter.Converter``'s).
``run_conversion`` does the rest: validate options, open the source, skip the work when this recipe
(converter version, options, source digest) was prepared before, count bad records, fail above
``max_error_rate`` with a summary, and publish.

Error rate = bad records / records examined, where a record is what the converter iterates over
(an image, with its annotations); a bad record is named by file and record in ``errors.parquet``.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from itertools import islice
from typing import Any, TypeVar

import numpy as np
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from partaware.datasets.sources import Source, open_source
from partaware.datasets.store import DatasetBuild, PreparedDataset, find_prepared
from partaware.errors import SpecError
from partaware.storage import StorageRoot
from partaware.validation import format_validation_error, register_options_model

ProgressFn = Callable[[int, int], None]
T = TypeVar("T")
R = TypeVar("R")

#: Options that decide whether a build passes, not what it contains: left out of the recipe.
_OUTPUT_NEUTRAL = {"max_error_rate"}
#: What a per-image segmentation row carries in ``label``/``label_id`` (its labels are per pixel).
LABEL_MAP_LABEL, LABEL_MAP_ID = "label-map", -1
IGNORE_INDEX = 255


@register_options_model
class ConverterOptions(BaseModel):
    """Options every converter takes (subclasses add their own; unknown keys are rejected)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_error_rate: float = Field(
        0.05, ge=0.0, le=1.0, description="fail (publish nothing) if more than this fraction of records is bad"
    )
    decode_images: bool = Field(
        False, description="fully decode every image to catch truncated files (slower); default reads the header"
    )


def parse_options(model: type[BaseModel], dataset: str, options: dict[str, Any] | None) -> Any:
    try:
        return model(**(options or {}))
    except ValidationError as e:
        raise SpecError(format_validation_error(dataset, e, what="dataset options")) from None


@dataclass
class Conversion:
    """One converter run: the source, the build being staged, counters and progress."""

    name: str
    source: Source
    build: DatasetBuild
    options: Any
    workers: int
    progress: ProgressFn | None = None
    records: int = 0
    total: int = 0
    done: int = 0
    stats: dict[str, Any] = field(default_factory=dict)  # extra numbers for dataset.json

    bad: set = field(default_factory=set)

    def error(self, file: str, record: Any, kind: str, message: str, *, item: Any = None) -> None:
        """Record a bad record; ``item`` groups several errors into one bad record (default: file + record)."""
        self.build.add_error(file, record, message, kind=kind)
        self.bad.add(item if item is not None else (file, str(record)))

    def tick(self, n: int = 1) -> None:
        self.done += n
        if self.progress:
            self.progress(self.done, self.total)

    def map(self, fn: Callable[[T], R], items: Iterable[T]) -> Iterator[tuple[T, R | Exception]]:
        """``fn`` over ``items`` on ``workers`` threads, results in order, at most a window in memory.

        I/O (S3 reads) and image decoding release the GIL, so threads suffice; an exception is
        returned in place of the result, for the caller to record as a bad record.
        """
        yield from bounded_map(fn, items, self.workers)


def bounded_map(
    fn: Callable[[T], R], items: Iterable[T], workers: int, *, window: int = 64
) -> Iterator[tuple[T, R | Exception]]:
    def safe(item: T) -> R | Exception:
        try:
            return fn(item)
        except Exception as e:  # noqa: BLE001 (returned to the caller, who names the record)
            return e

    it = iter(items)
    if workers <= 1:
        for item in it:
            yield item, safe(item)
        return
    with ThreadPoolExecutor(max_workers=workers) as pool:
        while chunk := list(islice(it, window)):
            yield from zip(chunk, pool.map(safe, chunk), strict=True)


def run_conversion(
    root: StorageRoot,
    name: str,
    *,
    source: str | None,
    options: Any,
    converter_version: str,
    workers: int | None,
    progress: ProgressFn | None,
    body: Callable[[Conversion], tuple[list[dict], dict[str, Any]]],
    extra_recipe: Mapping[str, Any] | None = None,
) -> tuple[PreparedDataset, bool]:
    """Open the source, reuse a prepared version of this recipe, or run ``body`` and publish.

    ``body(conv)`` stages files through ``conv.build`` and returns ``(rows, info)``. ``extra_recipe``:
    inputs besides source and options that change the output (the class lists' digests).
    """
    with open_source(source, dataset=name) as src:
        recipe = {
            "converter": converter_version,
            "source_digest": src.digest(),
            "options": options.model_dump(mode="json", exclude=_OUTPUT_NEUTRAL),
            **(extra_recipe or {}),
        }
        found = find_prepared(root, name, recipe)
        if found is not None:
            return found, False
        with DatasetBuild(root, name, recipe) as build:
            conv = Conversion(name, src, build, options, max(1, workers or 2), progress)
            rows, info = body(conv)
            build.check_error_rate(conv.records, options.max_error_rate, bad=len(conv.bad))
            info = {**info, "source": src.uri, "records": conv.records, "bad_records": len(conv.bad), **conv.stats}
            return build.publish(rows, info), True


# --- images ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LoadedImage:
    data: bytes
    width: int
    height: int


def load_image(source: Source, relpath: str, *, decode: bool = False) -> LoadedImage:
    """The image's bytes and size; raises ``FileNotFoundError`` or PIL's error for a bad file."""
    data = source.read(relpath)
    with Image.open(io.BytesIO(data)) as im:
        width, height = im.size
        if decode:
            im.load()
    return LoadedImage(data, width, height)


def image_error_kind(exc: Exception) -> str:
    return "missing-image" if isinstance(exc, FileNotFoundError) else "unreadable-image"


def read_label_map(data: bytes) -> np.ndarray:
    """A single-channel PNG as a 2-D integer array; ``ValueError`` for a colour or unreadable map."""
    with Image.open(io.BytesIO(data)) as im:
        if im.mode not in ("L", "P", "I", "I;16", "1"):
            raise ValueError(f"label map must be single-channel (L, P or I;16), got mode {im.mode}")
        return np.asarray(im)


def encode_png(array: np.ndarray) -> bytes:
    """A 2-D label or index map as PNG: 8-bit when it fits, else 16-bit."""
    mode_array = array.astype(np.uint8) if array.max(initial=0) <= 255 else array.astype(np.uint16)
    buf = io.BytesIO()
    Image.fromarray(mode_array).save(buf, format="PNG", optimize=False)
    return buf.getvalue()


def label_map_info(
    level: str,
    classes: list[str],
    *,
    names_source: str,
    reduce_zero_label: bool = True,
    ignore_index: int = IGNORE_INDEX,
    class_list: Mapping[str, Any] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """What ``dataset.json`` says about label maps: by default the paper's ``reduce_zero_label`` convention.

    A release kept as shipped with 0-based ids (OV-PARTS) passes ``reduce_zero_label=False`` and its own
    ``ignore_index``; ``class_list`` is the ``ClassList.record`` of the list that names the classes.
    """
    if reduce_zero_label:
        encoding = (
            f"single-channel PNG; stored value 0 = background/unlabelled, k = class k-1 (classes[k-1]); "
            f"readers apply reduce_zero_label: 0 -> 255 (ignored), k -> k-1; {ignore_index} stays ignored"
        )
    else:
        encoding = (
            f"single-channel PNG (8 or 16 bit); stored value k = class k (classes[k]), 0-based; "
            f"{ignore_index} = ignored (background and unlabelled); no reduce_zero_label"
        )
    info = {
        "level": level,
        "reduce_zero_label": reduce_zero_label,
        "ignore_index": ignore_index,
        "num_classes": len(classes),
        "classes": classes,
        "class_names_source": names_source,
        "encoding": encoding,
    }
    if class_list is not None:
        info["class_list"] = dict(class_list)
    return {**info, **(extra or {})}


def class_list_of(info: Mapping[str, Any], level: str) -> dict[str, Any] | None:
    """The class list that names ``level``'s labels in a ``dataset.json`` (``ClassList.record``), or None.

    Read from ``info["class_lists"][level]`` (every converter with a shipped list writes it), else from the
    level's label-map record.
    """
    lists = info.get("class_lists")
    if isinstance(lists, Mapping) and isinstance(lists.get(level), Mapping):
        return dict(lists[level])
    maps = level_label_map_info(info, level)
    return dict(maps["class_list"]) if maps and isinstance(maps.get("class_list"), Mapping) else None


def is_label_map_row(row: Mapping[str, Any]) -> bool:
    """A whole-image row whose labels are per pixel (its ``label_map_uri``), not a classified region."""
    return row["label_id"] == LABEL_MAP_ID and row["sample_rule"] == "whole-image" and bool(row["label_map_uri"])


def level_label_map_info(info: Mapping[str, Any], level: str) -> dict[str, Any] | None:
    """``level``'s ``label_map_info`` in a ``dataset.json``, None if it has no maps at that level.

    ``info["label_maps"]`` is one ``label_map_info`` (a dataset with maps at one level) or a mapping
    level -> ``label_map_info`` (maps at several levels, as the synthetic set): one reader for both.
    """
    maps = info.get("label_maps")
    if not isinstance(maps, Mapping):
        return None
    if "level" in maps:
        return dict(maps) if maps["level"] == level else None
    entry = maps.get(level)
    return dict(entry) if isinstance(entry, Mapping) else None
