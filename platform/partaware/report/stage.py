"""The ``report`` stage: the last stage of every job builds the run's report from its records."""

from __future__ import annotations

import time

from partaware.driver import RunContext, StageResult
from partaware.results import RESULTS_FILE


def stage_report(ctx: RunContext) -> StageResult:
    """report.md, report.html, results.csv and figures/ in the run folder (skipped when no stage wrote results)."""
    from partaware.report.build import build_report

    start = time.perf_counter()
    if not ctx.run_root.exists(RESULTS_FILE):
        return StageResult("report", "skipped", time.perf_counter() - start, "no results to report")
    paths = build_report(ctx.run_root, formats=["md", "html", "csv"])
    return StageResult("report", "ran", time.perf_counter() - start, ctx.run_root.uri_of("report.html"), paths)
