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


def _stage_extract(ctx: RunContext) -> StageResult:
    from partaware.extract.stage import stage_extract

    return stage_extract(ctx)


def _stage_report(ctx: RunContext) -> StageResult:
    from partaware.report.stage import stage_report

    return stage_report(ctx)


#: The stages a job runs, in order (stage modules are imported when their stage runs: listing or
#: validating a job never imports Ray or torch).
STAGES: list[tuple[str, Callable[[RunContext], StageResult]]] = [
    ("prepare", stage_prepare),
    ("extract", _stage_extract),
    ("report", _stage_report),
]
