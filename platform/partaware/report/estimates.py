"""A score with its confidence interval, and the one rule every comparison in a report follows.

Why one rule: the verdict, the ranks, the claims and the run comparison all ask "is A better than B?". A test
set of a few hundred items moves a score by points, so the answer is *yes* only when the difference survives the
intervals (A's lower end above B's upper end), *no* only when even the most favourable ends do not give it, and
*cannot tell* otherwise, including when an interval is missing.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from partaware.results import ResultRecord


@dataclass(frozen=True)
class Estimate:
    """A score in percent; ``low``/``high`` its confidence interval (None when the run computed none)."""

    value: float
    low: float | None = None
    high: float | None = None

    @property
    def has_interval(self) -> bool:
        return self.low is not None and self.high is not None

    def text(self, digits: int = 1) -> str:
        """``61.2 [58.0, 64.1]``, or ``61.2`` without an interval."""
        if not self.has_interval:
            return f"{self.value:.{digits}f}"
        return f"{self.value:.{digits}f} [{self.low:.{digits}f}, {self.high:.{digits}f}]"

    def minus(self, other: Estimate) -> Estimate:
        """The difference, with the widest interval its ends allow (conservative: no independence assumed)."""
        if not (self.has_interval and other.has_interval):
            return Estimate(self.value - other.value)
        return Estimate(self.value - other.value, self.low - other.high, self.high - other.low)

    def oriented(self, higher_is_better: bool) -> Estimate:
        """The same estimate with "higher = better" (a lower-is-better metric is negated)."""
        if higher_is_better:
            return self
        low, high = (-self.high, -self.low) if self.has_interval else (None, None)
        return Estimate(-self.value, low, high)

    @staticmethod
    def mean(estimates: Sequence[Estimate]) -> Estimate:
        """Mean of several scores; its interval is the mean of their ends when all have one (conservative: the
        interval their mean would have if their errors were fully correlated, never narrower than the truth)."""
        value = statistics.fmean(e.value for e in estimates)
        if not all(e.has_interval for e in estimates):
            return Estimate(value)
        return Estimate(value, statistics.fmean(e.low for e in estimates), statistics.fmean(e.high for e in estimates))


def _finite(x: float | None) -> float | None:
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else float(x)


def estimate_of(record: ResultRecord) -> Estimate:
    """The record's primary score with its bootstrap interval (none for records written before intervals)."""
    low, high = _finite(record.ci_low), _finite(record.ci_high)
    if low is None or high is None:
        return Estimate(record.value)
    return Estimate(record.value, min(low, record.value), max(high, record.value))


def decide(
    a: Estimate, b: Estimate, margin: float = 0.0, *, or_equal: bool = False, exact: bool = False
) -> bool | None:
    """Is ``a − b > margin`` (``>=`` with ``or_equal``) beyond both intervals?

    True: even the least favourable ends give it (``a.low − b.high``); False: not even the most favourable ends
    do (``a.high − b.low``); None: cannot tell, the intervals straddle the margin, or an interval is missing.
    ``exact`` reads numbers without an interval as exact (the paper's own numbers, which carry none).
    """

    def ok(d: float) -> bool:
        return d >= margin if or_equal else d > margin

    if a.has_interval and b.has_interval:
        if ok(a.low - b.high):
            return True
        return None if ok(a.high - b.low) else False
    return ok(a.value - b.value) if exact else None


def overlaps(a: Estimate, b: Estimate) -> bool:
    """The two intervals share a point (or one is missing): neither is better beyond the noise."""
    return decide(a, b) is None and decide(b, a) is None
