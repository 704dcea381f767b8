"""Paper-style tables for the tasks that ran: encoders as rows, (dataset, task, feature, metric) as columns.

A section appears only when records for it exist, so a quick synthetic run gets two small tables and a paper
run gets the paper's Tables 1-4. Cells are the mean over seeds with the standard deviation when there are
several seeds, and the bootstrap confidence interval of the test score. Below the encoders, each table has
the random-initialisation controls (labelled ``control``, never best) and the baselines of the same split
(chance, majority class, random features): a score means something only against them. A table is titled after
the paper's only when its records are the paper's dataset and probe; otherwise it says "same protocol as
Table N, on <dataset>". Built from aggregated records (``records.aggregate``) only.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from partaware.report.estimates import Estimate, decide
from partaware.report.paper import PAPER_COLUMNS, PAPER_ENCODERS, paper_columns_of
from partaware.report.records import is_control
from partaware.results import ResultRecord

FAMILY_ORDER = ("supervised", "contrastive", "mim", "contrastive+mim")
FAMILY_LABEL = {
    "supervised": "supervised",
    "contrastive": "CL",
    "mim": "MIM",
    "contrastive+mim": "CL+MIM",
    "control": "control",
}
SEG_LABEL = {"miou": "mIoU", "macc": "mAcc", "aacc": "aAcc"}
METRIC_LABEL = {"top1": "top-1", "ap": "AP", "map": "mAP", "base_miou": "base mIoU", **SEG_LABEL}
#: ``segmentation_novel``'s columns: one head, novel objects' parts beside base objects' (in-distribution)
NOVEL_LABEL = {"miou": "novel objects' parts mIoU", "base_miou": "base objects' parts mIoU (in-distribution)"}
FEATURE_LABEL = {"cls": "encoded (cls)", "mean": "encoded (mean)", "proj": "projected"}
#: baseline key -> row label (``ResultRecord.baselines``)
BASELINE_LABEL = {"chance": "chance", "majority": "majority class", "random_features": "random features"}


def metric_label(metric: str) -> str:
    """``top1`` -> ``top-1 %``: the metric's name and unit as charts and headers print it."""
    return f"{METRIC_LABEL.get(metric.lower(), metric)} %"


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
        if self.task == "segmentation_novel":
            return f"{self.dataset} {NOVEL_LABEL.get(self.metric, metric)}"
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
    low: float | None = None  # bootstrap interval of the test score (primary metric only)
    high: float | None = None

    @property
    def estimate(self) -> Estimate:
        return Estimate(self.value, self.low, self.high)

    def text(self, digits: int = 1) -> str:
        """``61.2 ± 1.3 [58.0, 64.1]``: mean ± std over seeds (several seeds only), [confidence interval]."""
        out = f"{self.value:.{digits}f}"
        if self.std is not None and self.n_seeds >= 2:
            out += f" ± {self.std:.{digits}f}"
        if self.low is not None and self.high is not None:
            out += f" [{self.low:.{digits}f}, {self.high:.{digits}f}]"
        return out


@dataclass
class Table:
    id: str
    title: str
    columns: list[Column]
    rows: list[tuple[str, str]]  # (encoder, family); controls last
    cells: dict[tuple[str, Column], Cell] = field(default_factory=dict)
    note: str = ""
    controls: dict[str, str] = field(default_factory=dict)  # control encoder -> the architecture it controls for
    baselines: dict[str, dict[Column, str]] = field(default_factory=dict)  # baseline key -> column -> text
    ci_units: list[str] = field(default_factory=list)  # what the intervals resample (test items, queries, images)
    all_intervals: bool = True  # every primary-metric cell has an interval

    def cell(self, encoder: str, column: Column) -> Cell | None:
        return self.cells.get((encoder, column))

    def best(self, column: Column) -> float | None:
        """The best encoder's number (controls never count)."""
        vals = [c.value for (enc, col), c in self.cells.items() if col == column and enc not in self.controls]
        return max(vals) if vals else None

    def decided_best(self, column: Column) -> str | None:
        """The encoder whose interval lies wholly above every other encoder's on ``column`` (controls never
        count); None when intervals overlap or are missing, or there is only one encoder."""
        cells = {enc: c for (enc, col), c in self.cells.items() if col == column and enc not in self.controls}
        if len(cells) < 2:
            return None
        top = max(cells, key=lambda e: cells[e].value)
        mine = cells[top].estimate
        return top if all(decide(mine, c.estimate) is True for e, c in cells.items() if e != top) else None


@dataclass(frozen=True)
class Section:
    id: str
    title: str  # what the table holds; the paper's table is added by ``section_title``
    level: str
    tasks: tuple[str, ...]
    note: str
    paper_table: str  # the paper's table for this section
    paper_tasks: tuple[str, ...]  # the probes that table uses


SECTIONS: tuple[Section, ...] = (
    Section(
        "object-probing",
        "Object-level probing",
        "object",
        ("linear", "attentive", "knn", "retrieval"),
        "top-1 accuracy (%) of probes on frozen features; retrieval in AP (%)",
        "Table 1",
        ("linear", "attentive"),
    ),
    Section(
        "object-segmentation",
        "Object-level linear segmentation",
        "object",
        ("segmentation",),
        "mIoU / mAcc / aAcc (%), frozen backbone, one 1x1 conv on blocks 4/6/8/12",
        "Table 2",
        ("segmentation",),
    ),
    Section(
        "part-retrieval",
        "Part retrieval",
        "part",
        ("retrieval",),
        "AP (%) over all queries, cosine similarity; encoded vs projected features",
        "Table 3",
        ("retrieval",),
    ),
    Section(
        "part-classification",
        "Part classification",
        "part",
        ("linear", "attentive", "knn"),
        "top-1 accuracy (%) on part patches",
        "Table 3",
        ("linear", "attentive"),
    ),
    Section(
        "part-segmentation",
        "Part-level linear segmentation",
        "part",
        ("segmentation",),
        "mIoU / mAcc / aAcc (%)",
        "Table 4",
        ("segmentation",),
    ),
    Section(
        "part-transfer",
        "Part segmentation across objects (OV-PARTS base -> novel objects)",
        "part",
        ("segmentation_novel",),
        "mIoU (%) of one head whose classes are the base objects' part names, trained on base objects: on the "
        "novel objects' parts of the held-out split, beside the base objects' parts of the same split "
        "(in-distribution); novel parts no base object has are not scored (see each record's part_transfer)",
        "",
        (),
    ),
)


def section_title(section: Section, records: Sequence[ResultRecord]) -> str:
    """The paper's table name only for records of the paper's dataset and probe (``paper_columns_of``);
    other datasets read "same protocol as Table N, on <dataset>"; probes the paper's table does not use are
    named as such. The synthetic set is never titled after a paper table."""

    if not section.paper_table:
        return f"{section.title} (no table of the paper)"

    def of_paper(r: ResultRecord) -> bool:
        return any(PAPER_COLUMNS[c][0] == section.paper_table for c in paper_columns_of(r))

    paper = sorted({r.dataset for r in records if of_paper(r)})
    same = sorted({r.dataset for r in records if not of_paper(r) and r.task in section.paper_tasks})
    other = sorted({r.task for r in records if not of_paper(r) and r.task not in section.paper_tasks})
    parts = []
    if paper:
        parts.append(f"paper {section.paper_table}" + (f" on {', '.join(paper)}" if same or other else ""))
    if same:
        parts.append(f"same protocol as {section.paper_table}, on {', '.join(same)}")
    if other:
        parts.append(f"{', '.join(other)}: not a probe of {section.paper_table}")
    return f"{section.title} ({'; '.join(parts)})"


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
    """The table columns a record fills, with its number for each: the task's report metrics (its
    ``ProbeTask.report_metrics``, e.g. mIoU, mAcc, aAcc for segmentation) that the record holds."""
    from partaware.probes.tasks import PROBE_TASKS

    base = dict(dataset=record.dataset, level=record.level, task=record.task, feature=record.feature)
    wanted = PROBE_TASKS.get(record.task).report_metrics if record.task in PROBE_TASKS else (record.metric,)
    lowered = {k.lower(): v for k, v in record.metrics.items()}
    found = []
    for m in wanted:
        if record.metric.lower() == m:
            found.append((Column(**base, metric=m), record.value))
        elif m in lowered:
            found.append((Column(**base, metric=m), float(lowered[m])))
    return found or [(Column(**base, metric=record.metric), record.value)]


def _col_order(c: Column) -> tuple:
    from partaware.probes.tasks import PROBE_TASKS, get_task

    task_order = ("retrieval", "linear", "attentive", "knn", "segmentation", "segmentation_novel")
    metrics = get_task(c.task).report_metrics if c.task in PROBE_TASKS else ()
    feat_order = ("mean", "cls", "proj")
    return (
        c.dataset,
        task_order.index(c.task) if c.task in task_order else 9,
        feat_order.index(c.feature) if c.feature in feat_order else 9,
        c.feature,
        metrics.index(c.metric) if c.metric in metrics else -1,
        c.metric,
    )


def _cell(r: ResultRecord, col: Column, value: float) -> Cell:
    """The record's number for a column; the interval belongs to the primary metric only."""
    n = max(1, len(r.seeds))
    primary = col.metric == r.metric.lower()
    other = (r.ci.get("secondary") or {}).get(col.metric, {})  # a further held-out split's own interval
    return Cell(
        value,
        r.std if n > 1 and primary else None,
        n,
        r.ci_low if primary else other.get("low"),
        r.ci_high if primary else other.get("high"),
    )


def _baseline_text(values: list[float]) -> str:
    """One number when every record of the column agrees, else the range (random features depend on the
    encoder's dimension)."""
    lo, hi = min(values), max(values)
    return f"{lo:.1f}" if hi - lo < 0.05 else f"{lo:.1f}–{hi:.1f}"


def column_baselines(records: Sequence[ResultRecord]) -> dict[str, dict[Column, str]]:
    """Baseline key -> column -> its number on the column's split (primary metric columns only)."""
    found: dict[str, dict[Column, list[float]]] = {}
    for r in records:
        col = Column(r.dataset, r.level, r.task, r.feature, r.metric.lower())
        for key, value in r.baselines.items():
            found.setdefault(key, {}).setdefault(col, []).append(value)
    order = [*BASELINE_LABEL, *sorted(set(found) - set(BASELINE_LABEL))]
    return {k: {c: _baseline_text(v) for c, v in found[k].items()} for k in order if k in found}


def build_tables(records: Sequence[ResultRecord]) -> list[Table]:
    """The paper-style tables for the sections that have records (aggregated records expected)."""
    tables = []
    for sec in SECTIONS:
        chosen = [r for r in records if r.level == sec.level and r.task in sec.tasks]
        if not chosen:
            continue
        controls = {r.encoder: r.control_of for r in chosen if is_control(r)}
        rows = encoder_rows(r for r in chosen if not is_control(r)) + encoder_rows(r for r in chosen if is_control(r))
        table = Table(sec.id, section_title(sec, chosen), [], rows, note=sec.note, controls=controls)
        cols: set[Column] = set()
        for r in chosen:
            for col, value in columns_of(r):
                cols.add(col)
                table.cells[(r.encoder, col)] = _cell(r, col, value)
        table.columns = sorted(cols, key=_col_order)
        table.baselines = column_baselines(chosen)
        table.ci_units = sorted({str(r.ci["units"]) for r in chosen if r.ci.get("units")})
        table.all_intervals = all(r.ci_low is not None and r.ci_high is not None for r in chosen)
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
        "control",
        "control_of",
        "n_classes",
        "ci_low",
        "ci_high",
    ]
    for r in records:
        row = {k: getattr(r, k) for k in scalar}
        row["seeds"] = " ".join(str(s) for s in r.seeds)
        row["best_config"] = " ".join(f"{k}={v}" for k, v in sorted(r.best_config.items()))
        row["per_seed"] = " ".join(f"{v:g}" for v in r.per_seed)
        row["ci"] = " ".join(f"{k}={v}" for k, v in sorted(r.ci.items()))
        for k, v in sorted(r.baselines.items()):
            row[f"baseline:{k}"] = v
        for k, v in sorted(r.metrics.items()):
            row[f"metric:{k}"] = v
        rows.append(row)
    return rows
