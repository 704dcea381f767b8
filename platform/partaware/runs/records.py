"""Typed stage records: what each stage of a run produced, written to the run folder and read back.

A stage never hands a later one a dict in memory: it returns a ``StageRecord`` whose ``outputs`` is
its typed output model, the driver writes it to ``<run>/stages/<name>.json`` (atomically), and a later
stage reads it back from storage with ``read_output(run_root, ExtractOutput)``. The outputs name
content keys (dataset versions, feature keys, probe keys), so what a record points at is itself
immutable and shared between runs.
"""

from __future__ import annotations

from typing import Any, ClassVar, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from partaware.errors import PartawareError
from partaware.storage import StorageRoot

STAGES_DIR = "stages"


class StageOutput(BaseModel):
    """Base of every stage's output model; ``stage`` names the record it lives in."""

    model_config = ConfigDict(extra="forbid")
    stage: ClassVar[str] = ""


class PreparedRef(BaseModel):
    name: str
    version: str  # what every later stage reads: the subset's version under a ``limit``
    rows: int
    uri: str
    built: bool = False
    limit: int | None = None  # images per split (the spec's ``limit``), None: every image
    full_version: str | None = None  # the version the subset was cut from (== version when nothing was cut)


class PrepareOutput(StageOutput):
    stage: ClassVar[str] = "prepare"
    datasets: dict[str, PreparedRef] = Field(default_factory=dict)

    def version(self, name: str) -> str | None:
        ref = self.datasets.get(name)
        return ref.version if ref else None


class PretrainOutput(StageOutput):
    stage: ClassVar[str] = "pretrain"
    lab: dict[str, dict[str, Any]] = Field(default_factory=dict)  # objective -> training record
    #: objective -> the release record of the ``lab-release/<objective>`` encoders the job evaluates
    released: dict[str, dict[str, Any]] = Field(default_factory=dict)


#: a ``FeatureSetRef`` status: its tasks run the encoder on the images themselves, so nothing was extracted
IN_THE_LOOP = "in-loop"


class FeatureSetRef(BaseModel):
    """One feature set in the cache: ``<root>/features/<key>/`` (complete: ``_SUCCESS`` exists)."""

    dataset: str
    encoder: str
    key: str
    dataset_version: str
    status: str
    rows: int
    errors: int = 0
    taps: list[str] = Field(default_factory=list)
    kind: str = "regions"  # which manifest rows: "regions" (boxes, keypoint patches) | "label_maps" (whole images)
    device: str = ""


class ExtractOutput(StageOutput):
    stage: ClassVar[str] = "extract"
    feature_sets: list[FeatureSetRef] = Field(default_factory=list)

    def find(self, dataset: str, encoder: str, kind: str = "regions") -> FeatureSetRef:
        for ref in self.feature_sets:
            if (ref.dataset, ref.encoder, ref.kind) == (dataset, encoder, kind):
                return ref
        raise PartawareError(f"the extract stage recorded no {kind} feature set for {encoder} on {dataset}")


class ProbeOutput(StageOutput):
    stage: ClassVar[str] = "probe"
    results: int = 0
    searched: int = 0
    cached: int = 0
    probe_keys: list[str] = Field(default_factory=list)


class GalleryOutput(StageOutput):
    stage: ClassVar[str] = "gallery"
    gallery: dict[str, str] = Field(default_factory=dict)  # format -> path in the run folder


class ReportOutput(StageOutput):
    stage: ClassVar[str] = "report"
    files: dict[str, str] = Field(default_factory=dict)  # md | html | csv | figures -> URI


class Placement(BaseModel):
    """Where part of a stage's Ray work ran (``partaware.placement.summarise``): one node type and device."""

    node_type: str  # as the autoscaler or KubeRay named it ("gpu", "cpu"), else "gpu node" / "cpu node" / "head"
    device: str  # what the work computed on: "cuda" | "cpu"
    gpus_asked: float  # GPUs each unit asked Ray for
    unit: str  # what ``count`` counts: regions, trials, tasks, workers
    count: int
    nodes: list[str] = Field(default_factory=list)  # Ray node ids that did the work
    note: str = ""  # e.g. a GPU resource without a CUDA device (computed on the CPU)


def merge_placements(places: list[dict[str, Any]]) -> list[Placement]:
    """Placements of several runs of one stage (one per feature set, per search) added up by kind."""
    merged: dict[tuple, dict[str, Any]] = {}
    for p in places:
        key = (p["node_type"], p["device"], p["gpus_asked"], p["unit"], p.get("note", ""))
        m = merged.setdefault(key, {**p, "count": 0, "nodes": []})
        m["count"] += p["count"]
        m["nodes"] = sorted({*m["nodes"], *p.get("nodes", [])})
    return [Placement.model_validate(m) for m in merged.values()]


class StageRecord(BaseModel):
    """One finished stage: how it ended, its typed output (``stages/<name>.json``) and where its Ray work ran
    (empty for work done in the driver alone, and for a stage whose outputs were all cached)."""

    name: str
    status: str  # "ran" | "cached" | "skipped"
    seconds: float
    detail: str = ""
    outputs: dict[str, Any] = Field(default_factory=dict)
    placement: list[Placement] = Field(default_factory=list)

    @classmethod
    def of(cls, output: StageOutput, status: str, seconds: float, detail: str = "",
           placement: list[Placement] | None = None) -> StageRecord:  # fmt: skip
        return cls(name=output.stage, status=status, seconds=seconds, detail=detail, outputs=output.model_dump(),
                   placement=placement or [])  # fmt: skip


Output = TypeVar("Output", bound=StageOutput)


def write_record(run_root: StorageRoot, record: StageRecord) -> None:
    run_root.write_json(record.model_dump(mode="json"), STAGES_DIR, f"{record.name}.json")


def read_record(run_root: StorageRoot, name: str) -> StageRecord | None:
    if not run_root.exists(STAGES_DIR, f"{name}.json"):
        return None
    return StageRecord.model_validate(run_root.read_json(STAGES_DIR, f"{name}.json"))


def read_output(run_root: StorageRoot, model: type[Output]) -> Output:
    """The typed output of an earlier stage of this run, read from storage (empty when it was skipped)."""
    record = read_record(run_root, model.stage)
    if record is None:
        raise PartawareError(f"stage {model.stage!r} has no record in {run_root.uri}: it has not run yet")
    return model.model_validate(record.outputs)
