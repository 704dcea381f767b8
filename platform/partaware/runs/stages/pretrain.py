"""``pretrain``: the job's lab encoders (``lab/<objective>``) trained on its first dataset, unless cached."""

from __future__ import annotations

import time
from contextlib import nullcontext

from partaware.runs.driver import RunContext
from partaware.runs.records import PrepareOutput, PretrainOutput, StageRecord, merge_placements


def run(ctx: RunContext) -> StageRecord:
    start = time.perf_counter()
    objectives = [name.split("/", 1)[1] for name in ctx.spec.resolved_encoders() if name.startswith("lab/")]
    if not objectives:
        return StageRecord.of(PretrainOutput(), "skipped", 0.0, "no lab encoders in this job")
    from partaware.lab.ray_tasks import pretrain

    dataset = ctx.spec.datasets[0].name
    version = ctx.input(PrepareOutput).version(dataset)
    bar = ctx.progress(f"pretrain {len(objectives)} lab encoders") if ctx.progress else nullcontext(None)
    with bar as update:

        def on_progress(states: dict) -> None:
            if update:
                update(sum(s["step"] for s in states.values()), sum(s["total"] for s in states.values()))

        res = ctx.spec.resources
        asked = {"num_cpus": res.cpus_per_worker, "num_gpus": res.gpus_per_worker,
                 **({"memory": int(res.memory_per_worker * 2**30)} if res.memory_per_worker else {})}  # fmt: skip
        infos = pretrain(ctx.root, objectives, dataset=dataset, dataset_version=version, seed=ctx.spec.seed,
                         progress=on_progress, device=ctx.spec.device, resources=asked)  # fmt: skip
    trained = [o for o, info in infos.items() if not info.get("cached")]
    from partaware.placement import summarise

    places = [infos[o]["placed"] for o in trained if infos[o].get("placed")]
    placement = summarise(places, gpus=res.gpus_per_worker, unit="tasks")
    detail = f"trained {', '.join(trained)}" if trained else f"all {len(infos)} cached"
    status = "ran" if trained else "cached"
    return StageRecord.of(
        PretrainOutput(lab=infos), status, time.perf_counter() - start, detail, placement=merge_placements(placement)
    )
