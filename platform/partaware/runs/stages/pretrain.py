"""``pretrain``: the job's live lab encoders (``lab/<objective>``) trained under its ``lab_budget`` on its first
dataset (or the preset's own data), unless cached. Released ones (``lab-release/<objective>``) train nothing."""

from __future__ import annotations

import time
from contextlib import nullcontext

from partaware.runs.driver import RunContext
from partaware.runs.records import PrepareOutput, PretrainOutput, StageRecord, merge_placements


def run(ctx: RunContext) -> StageRecord:
    start = time.perf_counter()
    encoders = ctx.spec.resolved_encoders()
    objectives = [name.split("/", 1)[1] for name in encoders if name.startswith("lab/")]
    released = [name.split("/", 1)[1] for name in encoders if name.startswith("lab-release/")]
    from partaware.lab.release import release_rows

    released_info = release_rows(released)
    if not objectives:
        detail = f"{len(released)} released lab encoders, nothing to train" if released else "no lab encoders"
        return StageRecord.of(PretrainOutput(released=released_info), "skipped", 0.0, detail)
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
        infos = pretrain(ctx.root, objectives, dataset=dataset, dataset_version=version, budget=ctx.spec.lab_budget,
                         seed=ctx.spec.seed,
                         progress=on_progress, device=ctx.spec.device, resources=asked)  # fmt: skip
    trained = [o for o, info in infos.items() if not info.get("cached")]
    from partaware.placement import summarise

    places = [infos[o]["placed"] for o in trained if infos[o].get("placed")]
    placement = summarise(places, gpus=res.gpus_per_worker, unit="tasks")
    detail = f"trained {', '.join(trained)}" if trained else f"all {len(infos)} cached"
    status = "ran" if trained else "cached"
    return StageRecord.of(
        PretrainOutput(lab=infos, released=released_info),
        status,
        time.perf_counter() - start,
        detail,
        placement=merge_placements(placement),
    )
