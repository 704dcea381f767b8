"""``gallery``: patch-retrieval galleries (paper Figures 2 and 4) of the job's encoders on the annotated part
patches of its first dataset that has them, encoded and (for encoders with a head) projected; the report
embeds them."""

from __future__ import annotations

import time

from partaware.runs.driver import RunContext
from partaware.runs.records import GalleryOutput, PrepareOutput, StageRecord


def run(ctx: RunContext) -> StageRecord:
    from partaware.datasets import DATASETS

    start = time.perf_counter()
    # the first dataset with annotated part regions (boxes or keypoint patches) probed at part level
    dataset = next((ref.name for ref in ctx.spec.datasets if "part" in ctx.spec.levels_of(ref)
                    and "regions" in DATASETS.get(ref.name).kinds), None)  # fmt: skip
    if dataset is None:
        return StageRecord.of(GalleryOutput(), "skipped", 0.0, "no dataset with part regions at part level")
    from partaware.report.gallery_job import GalleryRecipe, make_gallery

    encoders = ctx.spec.encoders_in_gallery()
    version = ctx.input(PrepareOutput).version(dataset)  # the run's own version (a ``limit`` subset's too)
    recipe = GalleryRecipe(dataset=dataset, encoders=encoders, features=["encoded", "projected"], source="parts",
                           seed=ctx.spec.seed, version=version)  # fmt: skip
    _, paths, cache_hits = make_gallery(ctx.root, recipe, out=ctx.run_root, name="parts")
    status = "cached" if set(cache_hits) >= set(encoders) else "ran"
    return StageRecord.of(GalleryOutput(gallery=paths), status, time.perf_counter() - start, paths.get("png", ""))
