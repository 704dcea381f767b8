"""``extract``: every (dataset, encoder) pair of the spec, each a cached feature set.

The taps come from the probe tasks of the job (``ProbeTask.taps``): every task says which features it
reads, so the large per-block patch maps are extracted only when a task needs them. A task that runs the
encoder on the images itself (the paper's segmentation schedule) reads none: its dataset gets a record with
the identity of its input (``IN_THE_LOOP``, no rows) and nothing is encoded for it.
"""

from __future__ import annotations

import time
from contextlib import nullcontext

from partaware.runs.driver import RunContext
from partaware.runs.records import (
    IN_THE_LOOP,
    ExtractOutput,
    FeatureSetRef,
    PrepareOutput,
    StageRecord,
    merge_placements,
)


def run(ctx: RunContext) -> StageRecord:
    """Extract features for every dataset x encoder of the spec (each a no-op when its key is complete)."""
    from partaware.extract.pipeline import encoder_input_key, extract_features, resolve_spec
    from partaware.probes.tasks import get_task, job_taps

    start, ran, out, placement = time.perf_counter(), False, ExtractOutput(), []
    prepared, res = ctx.input(PrepareOutput), ctx.spec.resources
    for ref in ctx.spec.datasets:
        by_kind: dict[str, list[str]] = {}  # one feature set per kind of rows, with only the taps its tasks read
        in_the_loop: set[str] = set()  # kinds whose tasks all run the encoder themselves: nothing to extract
        for task in ctx.spec.tasks_of(ref):
            needs = get_task(task).needs
            if ctx.spec.encoder_in_the_loop(task):
                in_the_loop.add(needs)
            else:
                by_kind.setdefault(needs, []).append(task)
        for name in ctx.encoders():
            spec = resolve_spec(name)
            for kind in sorted(in_the_loop - set(by_kind)):
                key, version = encoder_input_key(
                    ctx.root, ref.name, spec, dataset_version=prepared.version(ref.name), kinds=[kind],
                    precision=ctx.spec.precision, seed=ctx.spec.seed,
                )  # fmt: skip
                out.feature_sets.append(FeatureSetRef(
                    dataset=ref.name, encoder=name, key=key, dataset_version=version, status=IN_THE_LOOP, rows=0,
                    kind=kind,
                ))  # fmt: skip
            for kind, tasks in sorted(by_kind.items()):
                taps = job_taps(spec, tasks, ctx.spec.variants)
                bar = ctx.progress(f"extract {name} on {ref.name} ({kind})") if ctx.progress else nullcontext(None)
                with bar as update:
                    r = extract_features(
                        ctx.root, ref.name, spec, dataset_version=prepared.version(ref.name), taps=taps,
                        kinds=[kind], seed=ctx.spec.seed, batch_size=res.extract_batch_size,
                        min_actors=res.min_actors, max_actors=res.max_actors, cpus_per_actor=res.cpus_per_actor,
                        gpus_per_actor=res.gpus_per_actor, memory_per_actor=res.memory_per_actor,
                        device=ctx.spec.device, precision=ctx.spec.precision, progress=update,
                    )  # fmt: skip
                placement += r.placement
                ran |= r.status == "ran"
                out.feature_sets.append(FeatureSetRef(
                    dataset=ref.name, encoder=name, key=r.key, dataset_version=r.dataset_version, status=r.status,
                    rows=r.rows, errors=r.errors, taps=taps, kind=kind, device=r.device,
                ))  # fmt: skip
    detail = ", ".join(
        f"{f.encoder}/{f.dataset}/{f.kind} " + ("nothing to extract: encoder in the loop" if f.status == IN_THE_LOOP
                                                else f"{f.status} ({f.rows} rows)")
        for f in out.feature_sets
    )  # fmt: skip
    extracted = any(f.status != IN_THE_LOOP for f in out.feature_sets)
    status = "ran" if ran else "cached" if extracted else "skipped"
    return StageRecord.of(out, status, time.perf_counter() - start, detail, placement=merge_placements(placement))
