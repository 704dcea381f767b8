"""The job driver: runs a spec's stages in order, each skipped when its output exists.

A run gets an id and a folder ``<root>/runs/<run-id>/`` holding the resolved spec (``spec.yaml``),
its state (``state.json``: running | succeeded | failed | interrupted), one record per finished stage
(``stages/<name>.json``, a typed ``StageRecord``), a log (``driver.log``) and, at the end,
``summary.json``; ``_SUCCESS`` is written last. Stages are plain functions of a ``RunContext``
returning a ``StageRecord``; they live in ``partaware.runs.stages`` (``STAGES``, in order), read what
earlier stages produced from their records in storage (``ctx.input(ExtractOutput)``), and skip work
whose output already exists under the storage root. The driver adds run-level resume: running an
existing run id again restores the stages that finished in an earlier attempt from their records
instead of calling them.

The driver knows nothing of Ray: the caller starts or attaches to a cluster first
(``partaware.runs.cluster.ray_session``) and passes its address for the record.
"""

from __future__ import annotations

import hashlib
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from partaware.errors import SpecError
from partaware.runs.records import Output, StageRecord, read_output, read_record, write_record
from partaware.spec import JobSpec, dump_spec
from partaware.storage import StorageRoot, s3_limits_applied

ProgressFactory = Callable[[str], Any]  # description -> context manager yielding update(done, total)

RUNNING, SUCCEEDED, FAILED, INTERRUPTED = "running", "succeeded", "failed", "interrupted"
TERMINAL_STATES = (SUCCEEDED, FAILED, INTERRUPTED)


@dataclass
class RunContext:
    spec: JobSpec
    root: StorageRoot
    run_id: str
    progress: ProgressFactory | None = None
    ray_address: str | None = None  # the cluster the stages run on (None: no Ray started by the caller)
    log: Callable[[str], None] | None = None  # one line into the run's driver.log (and the caller's view)

    @property
    def run_root(self) -> StorageRoot:
        return self.root.sub("runs", self.run_id)

    def encoders(self) -> list[str]:
        """Every encoder the job extracts and probes: the spec's, then its random-initialisation controls
        (registered here, in the process that runs the stages)."""
        from partaware.encoders.controls import register_controls

        if self.spec.controls:
            register_controls(self.spec.resolved_encoders())
        return self.spec.job_encoders()

    def input(self, model: type[Output]) -> Output:
        """What an earlier stage of this run produced, read back from its record in storage."""
        return read_output(self.run_root, model)

    def note(self, message: str) -> None:
        """A line in the run's log: what a stage decided (cached, skipped, retried) and why."""
        if self.log:
            self.log(message)


def new_run_id(spec: JobSpec) -> str:
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    digest = hashlib.sha256(f"{dump_spec(spec)}{time.time_ns()}".encode()).hexdigest()[:6]
    return f"{spec.name}-{stamp}-{digest}"


class _RunLog:
    """The run's ``driver.log``, rewritten whole on each line: object stores cannot append."""

    def __init__(self, run_root: StorageRoot, echo: Callable[[str], None] | None):
        self.run_root, self.echo = run_root, echo
        self.lines = run_root.read_bytes("driver.log").decode().splitlines() if run_root.exists("driver.log") else []

    def __call__(self, message: str) -> None:
        line = f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())} {message}"
        self.lines.append(line)
        self.run_root.write_bytes(("\n".join(self.lines) + "\n").encode(), "driver.log")
        if self.echo:
            self.echo(message)


def _write_state(ctx: RunContext, state: str, **extra: Any) -> None:
    previous = ctx.run_root.read_json("state.json") if ctx.run_root.exists("state.json") else {}
    record = {
        **previous,
        "run_id": ctx.run_id,
        "spec": ctx.spec.name,
        "encoders": ctx.spec.resolved_encoders(),
        "datasets": [d.name for d in ctx.spec.datasets],
        "levels": list(ctx.spec.levels),
        "state": state,
        "updated": time.time(),
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "ray_address": ctx.ray_address,
        **extra,
    }
    ctx.run_root.write_json(record, "state.json")


def _restored(run_root: StorageRoot, name: str) -> StageRecord | None:
    """The record of a stage that finished in an earlier attempt of this run, as a cached result."""
    record = read_record(run_root, name)
    if record is None:
        return None
    detail = f"finished in an earlier attempt ({record.status}, {record.seconds:.1f}s)"
    return record.model_copy(update={"status": "cached", "seconds": 0.0, "detail": detail})


def report_uri(results: list[StageRecord]) -> str | None:
    """Where the run's report is: the ``report`` stage's html (else md) file."""
    for r in reversed(results):
        if r.name == "report":
            files = r.outputs.get("files", {})
            return files.get("html") or files.get("md")
    return None


def _write_cluster_resources(run_root: StorageRoot, ray_address: str | None) -> None:
    """``ray_resources.json``: what the cluster offered when the run (re)started, for the report's provenance."""
    if not ray_address:
        return
    import ray

    if ray.is_initialized():
        resources = {k: v for k, v in ray.cluster_resources().items() if not k.startswith("node:")}
        run_root.write_json({"address": ray_address, "resources": resources}, "ray_resources.json")


def run_job(
    spec: JobSpec,
    *,
    storage: str | None = None,
    progress: ProgressFactory | None = None,
    on_stage: Callable[[StageRecord], None] | None = None,
    on_start: Callable[[str], None] | None = None,
    run_id: str | None = None,
    ray_address: str | None = None,
    echo: Callable[[str], None] | None = None,
) -> tuple[str, list[StageRecord]]:
    """Run every stage; returns the run id and the stage results. The run folder records it all.

    With ``run_id`` of an existing run the run is resumed: it must have been started with the same
    resolved spec, and its finished stages are restored from their records, not run again. Any
    exception (Ctrl-C included) marks the run ``failed`` or ``interrupted`` and is re-raised. The spec's
    ``storage_options`` (S3 timeouts and attempts) hold for the whole run, over ``$PARTAWARE_S3_*``.
    """
    with s3_limits_applied(spec.storage_options.overrides()):
        return _run_stages(spec, storage=storage, progress=progress, on_stage=on_stage, on_start=on_start,
                           run_id=run_id, ray_address=ray_address, echo=echo)  # fmt: skip


def _run_stages(
    spec: JobSpec,
    *,
    storage: str | None,
    progress: ProgressFactory | None,
    on_stage: Callable[[StageRecord], None] | None,
    on_start: Callable[[str], None] | None,
    run_id: str | None,
    ray_address: str | None,
    echo: Callable[[str], None] | None,
) -> tuple[str, list[StageRecord]]:
    from partaware.runs.stages import STAGES

    root = StorageRoot.open(storage or spec.storage)
    ctx = RunContext(spec=spec, root=root, run_id=run_id or new_run_id(spec), progress=progress,
                     ray_address=ray_address)  # fmt: skip
    run_root, spec_text = ctx.run_root, dump_spec(spec)
    resuming = run_root.exists("spec.yaml")
    if resuming and run_root.read_bytes("spec.yaml").decode() != spec_text:
        raise SpecError(f"run {ctx.run_id} was started with a different spec; submit without --resume to start anew")
    ctx.log = _RunLog(run_root, echo)
    if not resuming:
        run_root.write_bytes(spec_text.encode(), "spec.yaml")
    started = time.time()
    _write_state(ctx, RUNNING, started=started, finished=None, error=None, stage=None)
    ctx.log(f"{'resumed' if resuming else 'started'} run {ctx.run_id} on {ray_address or 'no cluster'}")
    _write_cluster_resources(run_root, ray_address)
    results: list[StageRecord] = []
    try:
        for name, stage in STAGES:
            result = _restored(run_root, name) if resuming else None
            if result is None:
                _write_state(ctx, RUNNING, stage=name)
                if on_start:
                    on_start(name)
                result = stage(ctx)
                write_record(run_root, result)
            results.append(result)
            ctx.log(f"stage {name}: {result.status} in {result.seconds:.1f}s {result.detail}".rstrip())
            if on_stage:
                on_stage(result)
    except BaseException as e:
        state = INTERRUPTED if isinstance(e, KeyboardInterrupt | SystemExit) else FAILED
        error = f"{type(e).__name__}: {e}".rstrip(": ")
        _write_state(ctx, state, error=error, finished=time.time())
        ctx.log(f"{state}: {error}")
        raise
    finished = time.time()
    summary = {
        "run_id": ctx.run_id,
        "spec": spec.name,
        "encoders": spec.resolved_encoders(),
        "datasets": [d.name for d in spec.datasets],
        "started": started,
        "finished": finished,
        "seconds": finished - started,
        "report": report_uri(results),
        "stages": [r.model_dump(mode="json") for r in results],
    }
    run_root.write_json(summary, "summary.json")
    _write_state(ctx, SUCCEEDED, finished=finished, stage=None, report=summary["report"])
    ctx.log(f"succeeded in {finished - started:.1f}s")
    run_root.mark_complete()
    return ctx.run_id, results
