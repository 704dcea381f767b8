"""``report``: the last stage of every job builds the run's report from its result and stage records."""

from __future__ import annotations

import time

from partaware.results import RESULTS_FILE
from partaware.runs.driver import RunContext
from partaware.runs.records import ReportOutput, StageRecord


def run(ctx: RunContext) -> StageRecord:
    """report.md, report.html, results.csv and figures/ in the run folder (skipped when no stage wrote results)."""
    from partaware.report.build import build_report

    start = time.perf_counter()
    if not ctx.run_root.exists(RESULTS_FILE):
        return StageRecord.of(ReportOutput(), "skipped", time.perf_counter() - start, "no results to report")
    paths = build_report(ctx.run_root, formats=["md", "html", "csv"])
    files = {k: v for k, v in paths.items() if isinstance(v, str)}
    seconds = time.perf_counter() - start
    return StageRecord.of(ReportOutput(files=files), "ran", seconds, ctx.run_root.uri_of("report.html"))
