"""Result records: one typed, self-describing record per (encoder, dataset, level, task, feature).

Probes write them, reports read only them. Each record carries what produced it (search space,
chosen configuration, seeds, protocol variant, weights and manifest digests, feature key, versions),
so a number can always be traced and two runs compared. Stored as ``results.parquet`` in the run
folder; nested fields are JSON strings so the file stays flat and readable by any Parquet reader.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any, Literal

import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field

from partaware.parquet import parquet_bytes_to_table, table_to_parquet_bytes
from partaware.storage import StorageRoot

RESULTS_FILE = "results.parquet"


class ResultRecord(BaseModel):
    """One probe's outcome. ``value`` is the primary metric (mean over seeds), in percent."""

    model_config = ConfigDict(extra="forbid")

    run_id: str = Field(description="run that produced the record")
    encoder: str = Field(description="canonical encoder id (never an alias)")
    family: str = Field(description="supervised | contrastive | mim | contrastive+mim")
    zoo: str = Field("paper", description="paper | modern | lab | custom | test")
    dataset: str
    dataset_version: str = Field(description="content digest of the dataset version")
    level: Literal["object", "part"]
    task: str = Field(description="a registered probe task (partaware.probes.tasks)")
    feature: str = Field(description="tap(s) probed: cls | mean | proj | cls+mean | patch:4+6+8+12 ...")
    metric: str = Field(description="name of the primary metric: ap | map | top1 | miou ...")
    value: float = Field(description="primary metric, mean over seeds, in percent")
    std: float | None = Field(None, description="standard deviation over seeds (None for one seed)")
    metrics: dict[str, float] = Field(default_factory=dict, description="every metric, mean over seeds")
    higher_is_better: bool = True
    seeds: list[int] = Field(default_factory=lambda: [0])
    n_train: int = 0
    n_val: int = 0
    n_test: int = 0
    search_space: dict[str, Any] = Field(default_factory=dict)
    best_config: dict[str, Any] = Field(default_factory=dict)
    trials: int = 0
    trials_stopped_early: int = 0
    trial_results: list[dict[str, Any]] = Field(default_factory=list, description="config, metric, iterations")
    wall_seconds: float = 0.0
    cpu_hours: float = 0.0
    gpu_hours: float = 0.0
    protocol: dict[str, Any] = Field(default_factory=dict, description="protocol variant flags")
    weights_digest: str = ""
    feature_key: str = ""
    random_weights: bool = Field(False, description="the encoder had random weights (reports label it)")
    control: bool = Field(False, description="a random-initialisation control added by the job: never ranked")
    control_of: str = Field("", description="for a control: the architecture (timm name) it controls for")
    per_seed: list[float] = Field(default_factory=list, description="primary metric per seed, percent")
    ci_low: float | None = Field(None, description="lower end of the bootstrap confidence interval, percent")
    ci_high: float | None = Field(None, description="upper end of the bootstrap confidence interval, percent")
    ci: dict[str, Any] = Field(default_factory=dict, description="how the interval was made: level, method, units")
    n_classes: int = 0
    baselines: dict[str, float] = Field(
        default_factory=dict,
        description="the same metric for baselines on the same split, percent: chance, majority, random_features",
    )
    versions: dict[str, str] = Field(default_factory=dict, description="code and library versions")


_NESTED = {
    name
    for name, f in ResultRecord.model_fields.items()
    if f.annotation is not None and getattr(f.annotation, "__origin__", None) in (dict, list)
}


def _arrow_type(name: str) -> pa.DataType:
    if name in _NESTED:
        return pa.string()
    ann = ResultRecord.model_fields[name].annotation
    args = set(getattr(ann, "__args__", ())) - {type(None)}
    base = next(iter(args)) if len(args) == 1 else ann
    return {float: pa.float64(), int: pa.int64(), bool: pa.bool_()}.get(base, pa.string())


#: Explicit types, so an all-null column (``std`` with one seed) keeps its type.
RESULTS_SCHEMA = pa.schema([pa.field(name, _arrow_type(name)) for name in ResultRecord.model_fields])


def records_table(records: Iterable[ResultRecord]) -> pa.Table:
    rows = []
    for r in records:
        row = r.model_dump()
        for key in _NESTED:
            row[key] = json.dumps(row[key], sort_keys=True, default=str)
        rows.append(row)
    return pa.Table.from_pylist(rows, schema=RESULTS_SCHEMA)


def write_results(run_root: StorageRoot, records: Iterable[ResultRecord]) -> str:
    """Write ``results.parquet`` atomically into a run folder."""
    return run_root.write_bytes(table_to_parquet_bytes(records_table(records)), RESULTS_FILE)


def read_results(run_root: StorageRoot) -> list[ResultRecord]:
    table = parquet_bytes_to_table(run_root.read_bytes(RESULTS_FILE))
    out = []
    for row in table.to_pylist():
        for key in _NESTED:
            if isinstance(row.get(key), str):
                row[key] = json.loads(row[key])
        out.append(ResultRecord.model_validate(row))
    return out
