"""``Converter``: one dataset converter as a small class, so that a converter module is only what differs.

The flow every converter shares (parse options, open the source, reuse a prepared recipe, list the work,
load each record on threads, count it, turn it into rows or error rows, describe the result, publish)
lives here and in ``convert.run_conversion``; a subclass names itself and fills in the hooks:

- ``records()``: the work items, read from the source (may raise ``DatasetError`` for a source that does
  not fit, or record bad annotations through ``self.conv.error``);
- ``load(item)``: runs on a worker thread (I/O and decoding); an exception is one bad record;
- ``rows(item, loaded)``: the manifest rows of one good record (bad parts go to ``self.conv.error``);
- ``failed(item, exc)``: the error row of a record whose ``load`` raised;
- ``info()``: extra ``dataset.json`` fields, asked for after the last record;
- ``extra_recipe()``: inputs besides source and options that change the output (class lists' digests).

One instance converts one source: hooks keep what ``records`` read (tables, class maps) on ``self``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any, ClassVar, TypeVar

from partaware.datasets.convert import Conversion, ConverterOptions, ProgressFn, parse_options, run_conversion
from partaware.datasets.store import PreparedDataset
from partaware.storage import StorageRoot

T = TypeVar("T")
L = TypeVar("L")


class Converter:
    """Base of the real-dataset converters; subclasses set ``name``, ``version``, ``options_model`` and hooks."""

    name: ClassVar[str]
    version: ClassVar[str]  # the CONVERTER_VERSION: part of the recipe, so a change makes a new version
    options_model: ClassVar[type[ConverterOptions]] = ConverterOptions

    def __init__(self, conv: Conversion):
        self.conv = conv
        self.opts: Any = conv.options

    @classmethod
    def prepare(
        cls,
        root: StorageRoot,
        *,
        source: str | None = None,
        options: dict[str, Any] | None = None,
        workers: int | None = None,
        progress: ProgressFn | None = None,
    ) -> tuple[PreparedDataset, bool]:
        """Prepare this dataset under ``root`` (a no-op when its recipe is already prepared)."""
        opts = parse_options(cls.options_model, cls.name, options)
        return run_conversion(
            root,
            cls.name,
            source=source,
            options=opts,
            converter_version=cls.version,
            workers=workers,
            progress=progress,
            body=lambda conv: cls(conv).convert(),
            extra_recipe=cls.extra_recipe(),
        )

    @classmethod
    def extra_recipe(cls) -> dict[str, Any] | None:
        return None

    def convert(self) -> tuple[list[dict], dict[str, Any]]:
        rows = convert_records(self.conv, list(self.records()), self.load, self.rows, self.failed)
        return rows, self.info()

    def records(self) -> Iterable[Any]:
        raise NotImplementedError

    def load(self, item: Any) -> Any:
        raise NotImplementedError

    def rows(self, item: Any, loaded: Any) -> list[dict]:
        raise NotImplementedError

    def failed(self, item: Any, exc: Exception) -> None:
        raise NotImplementedError

    def info(self) -> dict[str, Any]:
        return {}


def convert_records(
    conv: Conversion,
    work: Sequence[T],
    load: Callable[[T], L],
    rows: Callable[[T, L], list[dict]],
    failed: Callable[[T, Exception], None],
) -> list[dict]:
    """The record loop: ``load`` on the worker threads, each record counted, then ``rows`` or ``failed``."""
    conv.total = len(work)
    out: list[dict] = []
    for item, loaded in conv.map(load, work):
        conv.records += 1
        conv.tick()
        if isinstance(loaded, Exception):
            failed(item, loaded)
        else:
            out.extend(rows(item, loaded))
    return out
