"""What a prepared dataset holds, in numbers: for the CLI's summary table and for reports.

Plain data (no rich): images, regions per level and per class, bad records per kind.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from partaware.datasets.store import PreparedDataset


@dataclass
class DatasetSummary:
    name: str
    version: str
    images: int
    regions: int
    per_level: dict[str, int]
    per_class: dict[tuple[str, str], int]  # (level, label) -> regions
    per_split: dict[str, int]
    errors_per_kind: dict[str, int]
    examples: list[dict] = field(default_factory=list)  # first bad records: file, record, kind, message
    size_bytes: int | None = None


def summarize(prepared: PreparedDataset, *, examples: int = 5) -> DatasetSummary:
    table = prepared.manifest().select(["image_id", "split", "level", "label"]).to_pydict()
    errors = prepared.errors().to_pylist()
    return DatasetSummary(
        name=prepared.name,
        version=prepared.version,
        images=len(set(table["image_id"])),
        regions=len(table["image_id"]),
        per_level=dict(sorted(Counter(table["level"]).items())),
        per_class=dict(sorted(Counter(zip(table["level"], table["label"], strict=True)).items())),
        per_split=dict(sorted(Counter(table["split"]).items())),
        errors_per_kind=dict(Counter(e["kind"] for e in errors).most_common()),
        examples=errors[:examples],
        size_bytes=version_size(prepared),
    )


def version_size(prepared: PreparedDataset) -> int:
    """Bytes of the version's files (recorded at publish time; measured for older versions)."""
    if "bytes" in prepared.info:
        return int(prepared.info["bytes"])
    try:
        return int(prepared.root.fs.du(prepared.root.path))
    except (OSError, ValueError):
        return 0


def human_bytes(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"
