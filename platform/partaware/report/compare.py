"""Two runs side by side: the verdict of both, and every probe they share with the difference.

Typical use: a new encoder's run against the paper's seven. Encoders found in only one run keep their row
(the other run's cells stay empty), so a newcomer is ranked beside the reference encoders.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from partaware.report.tables import Column, columns_of
from partaware.report.verdict import compute_verdict
from partaware.results import ResultRecord


@dataclass
class ComparisonRow:
    encoder: str
    column: Column
    a: float | None
    b: float | None

    @property
    def delta(self) -> float | None:
        return None if self.a is None or self.b is None else self.b - self.a


@dataclass
class Comparison:
    run_a: str
    run_b: str
    rows: list[ComparisonRow]
    verdict_a: list
    verdict_b: list
    verdict_joint: list  # verdict over both runs' records together (encoders ranked jointly)


def compare_runs(run_a: str, a: Sequence[ResultRecord], run_b: str, b: Sequence[ResultRecord]) -> Comparison:
    """``a`` and ``b`` are aggregated records of the two runs."""
    va = {(r.encoder, col): v for r in a for col, v in columns_of(r)}
    vb = {(r.encoder, col): v for r in b for col, v in columns_of(r)}
    keys = sorted(set(va) | set(vb), key=lambda k: (k[1].slug, k[0]))
    rows = [ComparisonRow(enc, col, va.get((enc, col)), vb.get((enc, col))) for enc, col in keys]
    # joint ranking: records of b for encoders also in a are b's (the newer numbers win)
    b_keys = {(r.encoder, r.dataset, r.level, r.task, r.feature, r.metric) for r in b}
    joint = [*b, *(r for r in a if (r.encoder, r.dataset, r.level, r.task, r.feature, r.metric) not in b_keys)]
    return Comparison(run_a, run_b, rows, compute_verdict(a), compute_verdict(b), compute_verdict(joint))
