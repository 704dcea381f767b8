"""The job driver's ``extract`` stage: every (dataset, encoder) pair of a spec, each a cached feature set.

To enable it, the driver appends ``("extract", stage_extract)`` to ``partaware.stages.STAGES`` after
``prepare``. Later stages find the feature keys in ``ctx.outputs["extract"][dataset][encoder]``.
"""

from __future__ import annotations

import time
from contextlib import nullcontext

from partaware.driver import RunContext, StageResult
from partaware.encoders.base import EncoderSpec

#: The segmentation protocol's blocks (ViT-B/16: patch tokens of blocks 4, 6, 8 and 12, no final norm).
SEGMENTATION_BLOCKS = (4, 6, 8, 12)


def job_taps(spec: EncoderSpec, tasks: list[str], depth: int = 12) -> list[str]:
    """Taps a job needs: CLS and mean always, the projection when the encoder has one, and the
    segmentation blocks' patch maps only when the job segments (they are the large ones)."""
    taps = ["cls", "mean"] + (["proj"] if spec.has_projection else [])
    if "segmentation" in tasks:
        taps += [f"patch:{b}" for b in SEGMENTATION_BLOCKS if b <= depth]
    return taps


def stage_extract(ctx: RunContext) -> StageResult:
    """Extract features for every dataset x encoder of the spec (each a no-op when its key is complete)."""
    from partaware.extract.pipeline import extract_features, resolve_spec

    start, ran, outputs = time.perf_counter(), False, {}
    res = ctx.spec.resources
    details = []
    for ref in ctx.spec.datasets:
        version = ctx.outputs.get("prepare", {}).get(ref.name, {}).get("version")
        for name in ctx.spec.resolved_encoders():
            spec = resolve_spec(name)
            bar = ctx.progress(f"extract {name} on {ref.name}") if ctx.progress else nullcontext(None)
            with bar as update:
                r = extract_features(
                    ctx.root, ref.name, spec, taps=job_taps(spec, list(ctx.spec.tasks)), dataset_version=version,
                    seed=ctx.spec.seed, batch_size=res.extract_batch_size, min_actors=res.min_actors,
                    max_actors=res.max_actors, cpus_per_actor=res.cpus_per_actor,
                    use_gpu=True if res.gpus_per_actor > 0 else None, progress=update,
                )  # fmt: skip
            ran |= r.status == "ran"
            outputs.setdefault(ref.name, {})[name] = r.to_dict()
            details.append(f"{name}/{ref.name} {r.status} ({r.rows} rows)")
    return StageResult("extract", "ran" if ran else "cached", time.perf_counter() - start, ", ".join(details), outputs)
