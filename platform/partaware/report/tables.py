"""Paper-style tables for the tasks that ran: encoders as rows, (dataset, task, feature, metric) as columns.

A section appears only when records for it exist, so a quick synthetic run gets two small tables and a paper
run gets the paper's Tables 1-4. Cells are the mean over seeds, with the standard deviation when there are
several seeds. Built from aggregated records (``records.aggregate``) only.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from partaware.report.paper import PAPER_ENCODERS
from partaware.results import ResultRecord

FAMILY_ORDER = ("supervised", "contrastive", "mim", "contrastive+mim")
FAMILY_LABEL = {"supervised": "supervised", "contrastive": "CL", "mim": "MIM", "contrastive+mim": "CL+MIM"}
SEG_METRICS = ("miou", "macc", "aacc")
SEG_LABEL = {"miou": "mIoU", "macc": "mAcc", "aacc": "aAcc"}
FEATURE_LABEL = {"cls": "encoded (cls)", "mean": "encoded (mean)", "proj": "projected"}


@dataclass(frozen=True)
class Column:
    dataset: str
    level: str
    task: str
    feature: str
    metric: str

    @property
    def label(self) -> str:
        feat = FEATURE_LABEL.get(self.feature, self.feature)
        metric = SEG_LABEL.get(self.metric, self.metric)
        if self.task == "segmentation":
            return f"{self.dataset} {metric}"
        return f"{self.dataset} {self.task} · {feat} · {metric}"

    @property
    def slug(self) -> str:
        return "_".join(
            x.replace(":", "").replace("+", "")
            for x in (self.dataset, self.level, self.task, self.feature, self.metric)
        )


@dataclass(frozen=True)
class Cell:
    value: float
    std: float | None = None
    n_seeds: int = 1

    def text(self, digits: int = 1) -> str:
        if self.std is None or self.n_seeds < 2:
            return f"{self.value:.{digits}f}"
        return f"{self.value:.{digits}f} ± {self.std:.{digits}f}"


@dataclass
class Table:
    id: str
    title: str
    columns: list[Column]
    rows: list[tuple[str, str]]  # (encoder, family)
    cells: dict[tuple[str, Column], Cell] = field(default_factory=dict)
    note: str = ""

    def cell(self, encoder: str, column: Column) -> Cell | None:
        return self.cells.get((encoder, column))

    def best(self, column: Column) -> float | None:
        vals = [c.value for (_, col), c in self.cells.items() if col == column]
        return max(vals) if vals else None


#: (id, title, level, tasks, note)
SECTIONS: tuple[tuple[str, str, str, tuple[str, ...], str], ...] = (
    (
        "object-probing",
        "Object-level probing (paper Table 1)",
        "object",
        ("linear", "attentive", "knn", "retrieval"),
        "top-1 accuracy (%) of probes on frozen features; retrieval in AP (%)",
    ),
    (
        "object-segmentation",
        "Object-level linear segmentation (paper Table 2)",
        "object",
        ("segmentation",),
        "mIoU / mAcc / aAcc (%), frozen backbone, one 1x1 conv on blocks 4/6/8/12",
    ),
    (
        "part-retrieval",
        "Part retrieval (paper Table 3, left)",
        "part",
        ("retrieval",),
        "AP (%) over all queries, cosine similarity; encoded vs projected features",
    ),
    (
        "part-classification",
        "Part classification (paper Table 3, right)",
        "part",
        ("linear", "attentive", "knn"),
        "top-1 accuracy (%) on part patches",
    ),
    (
        "part-segmentation",
        "Part-level linear segmentation (paper Table 4)",
        "part",
        ("segmentation",),
        "mIoU / mAcc / aAcc (%)",
    ),
)


def encoder_sort_key(encoder: str, family: str) -> tuple:
    paper_order = next((i for i, k in enumerate(PAPER_ENCODERS) if k in encoder.lower()), 99)
    fam = FAMILY_ORDER.index(family) if family in FAMILY_ORDER else len(FAMILY_ORDER)
    return (fam, paper_order, encoder)


def encoder_rows(records: Iterable[ResultRecord]) -> list[tuple[str, str]]:
    seen: dict[str, str] = {}
    for r in records:
        seen.setdefault(r.encoder, r.family)
    return sorted(seen.items(), key=lambda kv: encoder_sort_key(*kv))


def columns_of(record: ResultRecord) -> list[tuple[Column, float]]:
    """The table columns a record fills, with its number for each (segmentation: mIoU, mAcc, aAcc)."""
    base = dict(dataset=record.dataset, level=record.level, task=record.task, feature=record.feature)
    if record.task == "segmentation":
        found = []
        lowered = {k.lower(): v for k, v in record.metrics.items()}
        for m in SEG_METRICS:
            if record.metric.lower() == m:
                found.append((Column(**base, metric=m), record.value))
            elif m in lowered:
                found.append((Column(**base, metric=m), float(lowered[m])))
        if found:
            return found
    return [(Column(**base, metric=record.metric), record.value)]


def _col_order(c: Column) -> tuple:
    task_order = ("retrieval", "linear", "attentive", "knn", "segmentation")
    feat_order = ("mean", "cls", "proj")
    return (
        c.dataset,
        task_order.index(c.task) if c.task in task_order else 9,
        feat_order.index(c.feature) if c.feature in feat_order else 9,
        c.feature,
        SEG_METRICS.index(c.metric) if c.metric in SEG_METRICS else -1,
        c.metric,
    )


def build_tables(records: Sequence[ResultRecord]) -> list[Table]:
    """The paper-style tables for the sections that have records (aggregated records expected)."""
    tables = []
    for sid, title, level, tasks, note in SECTIONS:
        chosen = [r for r in records if r.level == level and r.task in tasks]
        if not chosen:
            continue
        table = Table(sid, title, [], encoder_rows(chosen), note=note)
        cols: set[Column] = set()
        for r in chosen:
            n = max(1, len(r.seeds))
            for col, value in columns_of(r):
                cols.add(col)
                table.cells[(r.encoder, col)] = Cell(value, r.std if n > 1 else None, n)
        table.columns = sorted(cols, key=_col_order)
        tables.append(table)
    return tables


def records_csv_rows(records: Sequence[ResultRecord]) -> list[dict]:
    """Flat rows for ``results.csv``: one per record, scalar fields plus every metric as ``metric:<name>``."""
    rows = []
    scalar = [
        "run_id",
        "encoder",
        "family",
        "zoo",
        "dataset",
        "dataset_version",
        "level",
        "task",
        "feature",
        "metric",
        "value",
        "std",
        "higher_is_better",
        "n_train",
        "n_val",
        "n_test",
        "trials",
        "trials_stopped_early",
        "wall_seconds",
        "cpu_hours",
        "gpu_hours",
        "weights_digest",
        "feature_key",
        "random_weights",
    ]
    for r in records:
        row = {k: getattr(r, k) for k in scalar}
        row["seeds"] = " ".join(str(s) for s in r.seeds)
        row["best_config"] = " ".join(f"{k}={v}" for k, v in sorted(r.best_config.items()))
        for k, v in sorted(r.metrics.items()):
            row[f"metric:{k}"] = v
        rows.append(row)
    return rows
