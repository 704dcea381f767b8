"""The job driver: runs a spec's stages in order, each skipped when its output exists.

A run gets an id and a folder ``<root>/runs/<run-id>/`` holding the resolved spec, per-stage
records and a summary; ``_SUCCESS`` is written last. Stages are plain functions of a ``RunContext``
that return a ``StageResult``; they live in ``partaware.stages`` (``STAGES``, in order). Only stages
that exist run: the summary lists exactly what ran.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from partaware.spec import JobSpec, dump_spec
from partaware.storage import StorageRoot

ProgressFactory = Callable[[str], Any]  # description -> context manager yielding update(done, total)


@dataclass
class StageResult:
    name: str
    status: str  # "ran" | "cached" (output existed, nothing done)
    seconds: float
    detail: str = ""
    outputs: dict[str, Any] = field(default_factory=dict)


@dataclass
class RunContext:
    spec: JobSpec
    root: StorageRoot
    run_id: str
    progress: ProgressFactory | None = None
    outputs: dict[str, Any] = field(default_factory=dict)  # what earlier stages produced, by stage name

    @property
    def run_root(self) -> StorageRoot:
        return self.root.sub("runs", self.run_id)


def new_run_id(spec: JobSpec) -> str:
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    digest = hashlib.sha256(f"{dump_spec(spec)}{time.time_ns()}".encode()).hexdigest()[:6]
    return f"{spec.name}-{stamp}-{digest}"


def run_job(
    spec: JobSpec,
    *,
    storage: str | None = None,
    progress: ProgressFactory | None = None,
    on_stage: Callable[[StageResult], None] | None = None,
) -> tuple[str, list[StageResult]]:
    """Run every stage; returns the run id and the stage results. The run folder records it all."""
    from partaware.stages import STAGES

    root = StorageRoot.open(storage or spec.storage)
    ctx = RunContext(spec=spec, root=root, run_id=new_run_id(spec), progress=progress)
    ctx.run_root.write_bytes(dump_spec(spec).encode(), "spec.yaml")
    ctx.run_root.write_json({"state": "running", "started": time.time()}, "state.json")
    results: list[StageResult] = []
    try:
        for name, stage in STAGES:
            result = stage(ctx)
            ctx.outputs[name] = result.outputs
            results.append(result)
            if on_stage:
                on_stage(result)
    except BaseException as e:
        ctx.run_root.write_json({"state": "failed", "error": f"{type(e).__name__}: {e}"}, "state.json")
        raise
    ctx.run_root.write_json({"run_id": ctx.run_id, "stages": [asdict(r) for r in results]}, "summary.json")
    ctx.run_root.write_json({"state": "succeeded", "finished": time.time()}, "state.json")
    ctx.run_root.mark_complete()
    return ctx.run_id, results
