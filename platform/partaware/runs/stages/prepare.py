"""``prepare``: every dataset of the spec converted into the unified manifest (a no-op when prepared), then cut to
the spec's ``limit`` images per split when it has one (``datasets/subset.py``: a version of its own, so every later
stage reads the subset by its version and nothing else needs to know about limits)."""

from __future__ import annotations

import time
from contextlib import nullcontext

from partaware.runs.driver import RunContext
from partaware.runs.records import PreparedRef, PrepareOutput, StageRecord


def run(ctx: RunContext) -> StageRecord:
    from partaware.datasets import prepare_dataset
    from partaware.datasets.subset import subset_dataset

    start, built_any, out = time.perf_counter(), False, PrepareOutput()
    for ref in ctx.spec.datasets:
        bar = ctx.progress(f"prepare {ref.name}") if ctx.progress else nullcontext(None)
        with bar as update:
            full, built = prepare_dataset(ctx.root, ref.name, source=ref.source, options=ref.options, progress=update)
        limit = ctx.spec.limit_of(ref)
        ds = subset_dataset(ctx.root, full, limit)
        built_any |= built
        out.datasets[ref.name] = PreparedRef(name=ref.name, version=ds.version, rows=ds.info["rows"], uri=ds.uri,
                                             built=built, limit=limit, full_version=full.version)  # fmt: skip
    detail = ", ".join(f"{n} {p.version} ({p.rows} regions{_cut(p)})" for n, p in out.datasets.items())
    return StageRecord.of(out, "ran" if built_any else "cached", time.perf_counter() - start, detail)


def _cut(ref: PreparedRef) -> str:
    if ref.limit is None:
        return ""
    of = f" of {ref.full_version}" if ref.full_version != ref.version else ", nothing cut"
    return f"; limit {ref.limit} images per split{of}"
