"""``prepare``: every dataset of the spec converted into the unified manifest (a no-op when prepared)."""

from __future__ import annotations

import time
from contextlib import nullcontext

from partaware.runs.driver import RunContext
from partaware.runs.records import PreparedRef, PrepareOutput, StageRecord


def run(ctx: RunContext) -> StageRecord:
    from partaware.datasets import prepare_dataset

    start, built_any, out = time.perf_counter(), False, PrepareOutput()
    for ref in ctx.spec.datasets:
        bar = ctx.progress(f"prepare {ref.name}") if ctx.progress else nullcontext(None)
        with bar as update:
            ds, built = prepare_dataset(ctx.root, ref.name, source=ref.source, options=ref.options, progress=update)
        built_any |= built
        out.datasets[ref.name] = PreparedRef(name=ref.name, version=ds.version, rows=ds.info["rows"], uri=ds.uri,
                                             built=built)  # fmt: skip
    detail = ", ".join(f"{n} {p.version} ({p.rows} regions)" for n, p in out.datasets.items())
    return StageRecord.of(out, "ran" if built_any else "cached", time.perf_counter() - start, detail)
