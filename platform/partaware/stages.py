"""The stages of a job, in order: plain functions of a ``RunContext`` returning a ``StageResult``.

Each stage skips work whose output already exists under the storage root (a cached stage reports
``cached``). The driver (``partaware.driver``) runs ``STAGES`` in order.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import nullcontext

from partaware.driver import RunContext, StageResult


def stage_prepare(ctx: RunContext) -> StageResult:
    """Prepare every dataset of the spec (each a no-op when its recipe is already prepared)."""
    from partaware.datasets import prepare_dataset

    start, built_any, prepared = time.perf_counter(), False, {}
    for ref in ctx.spec.datasets:
        bar = ctx.progress(f"prepare {ref.name}") if ctx.progress else nullcontext(None)
        with bar as update:
            ds, built = prepare_dataset(ctx.root, ref.name, source=ref.source, options=ref.options, progress=update)
        built_any |= built
        prepared[ref.name] = {"version": ds.version, "rows": ds.info["rows"], "uri": ds.uri, "built": built}
    detail = ", ".join(f"{n} {p['version']} ({p['rows']} regions)" for n, p in prepared.items())
    return StageResult("prepare", "ran" if built_any else "cached", time.perf_counter() - start, detail, prepared)


def stage_pretrain(ctx: RunContext) -> StageResult:
    """Pretrain the job's lab encoders (``lab/<objective>``) on the job's first dataset, unless cached."""
    start = time.perf_counter()
    objectives = [name.split("/", 1)[1] for name in ctx.spec.resolved_encoders() if name.startswith("lab/")]
    if not objectives:
        return StageResult("pretrain", "skipped", 0.0, "no lab encoders in this job")
    from partaware.lab.ray_train import pretrain

    dataset = ctx.spec.datasets[0].name
    version = ctx.outputs.get("prepare", {}).get(dataset, {}).get("version")
    bar = ctx.progress(f"pretrain {len(objectives)} lab encoders") if ctx.progress else nullcontext(None)
    with bar as update:

        def on_progress(states: dict) -> None:
            if update:
                update(sum(s["step"] for s in states.values()), sum(s["total"] for s in states.values()))

        infos = pretrain(ctx.root, objectives, dataset=dataset, dataset_version=version, seed=ctx.spec.seed,
                         progress=on_progress)  # fmt: skip
    trained = [o for o, info in infos.items() if not info.get("cached")]
    detail = f"trained {', '.join(trained)}" if trained else f"all {len(infos)} cached"
    status = "ran" if trained else "cached"
    return StageResult("pretrain", status, time.perf_counter() - start, detail, {"lab": infos})


def _stage_extract(ctx: RunContext) -> StageResult:
    from partaware.extract.stage import stage_extract

    return stage_extract(ctx)


def _stage_probe(ctx: RunContext) -> StageResult:
    from partaware.evaluate import stage_probe

    return stage_probe(ctx)


def stage_gallery(ctx: RunContext) -> StageResult:
    """Patch-retrieval galleries (paper Figures 2 and 4) of the job's encoders on its first dataset's
    annotated part patches, encoded and (for encoders with a head) projected; the report embeds them."""
    start = time.perf_counter()
    dataset = ctx.spec.datasets[0].name
    if "part" not in ctx.spec.levels:
        return StageResult("gallery", "skipped", 0.0, "no part level in this job")
    from partaware.report.gallery_job import GalleryRecipe, make_gallery

    encoders = ctx.spec.resolved_encoders()
    recipe = GalleryRecipe(dataset=dataset, encoders=encoders, features=["encoded", "projected"], source="parts",
                           seed=ctx.spec.seed)  # fmt: skip
    _, paths, cache_hits = make_gallery(ctx.root, recipe, out=ctx.run_root, name="parts")
    status = "cached" if set(cache_hits) >= set(encoders) else "ran"
    return StageResult("gallery", status, time.perf_counter() - start, paths.get("png", ""), {"gallery": paths})


def _stage_report(ctx: RunContext) -> StageResult:
    from partaware.report.stage import stage_report

    return stage_report(ctx)


#: The stages a job runs, in order (stage modules are imported when their stage runs: listing or
#: validating a job never imports Ray or torch).
STAGES: list[tuple[str, Callable[[RunContext], StageResult]]] = [
    ("prepare", stage_prepare),
    ("pretrain", stage_pretrain),
    ("extract", _stage_extract),
    ("probe", _stage_probe),
    ("gallery", stage_gallery),
    ("report", _stage_report),
]
