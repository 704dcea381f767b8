"""Two runs side by side: the verdict of both, and every probe they share with the difference, where the two
numbers can be compared at all.

Typical use: a new encoder's run against the paper's seven. Encoders found in only one run keep their row
(the other run's cells stay empty), so a newcomer is ranked beside the reference encoders. Two numbers of one
probe are comparable only when both runs scored it on the same dataset version under the same protocol
(``protocol`` flags, search-budget settings aside); a cell that is not says why and gets no difference, and
the joint ranking leaves that probe out for every encoder.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field

from partaware.report.estimates import Estimate, estimate_of, overlaps
from partaware.report.tables import Column
from partaware.report.verdict import EncoderVerdict, compute_verdict
from partaware.results import ResultRecord

#: protocol flags that set the search budget, not what is scored: they may differ between comparable runs
BUDGET_FLAGS = ("asha", "heads_per_trial")


@dataclass(frozen=True)
class Signature:
    """What must agree for two scores of one probe to be comparable."""

    dataset_version: str
    protocol: str  # canonical JSON of the protocol flags that matter

    @staticmethod
    def of(r: ResultRecord) -> Signature:
        flags = {k: v for k, v in r.protocol.items() if k not in BUDGET_FLAGS}
        return Signature(r.dataset_version, json.dumps(flags, sort_keys=True, default=str))


@dataclass
class ComparisonRow:
    encoder: str
    column: Column
    a: Estimate | None
    b: Estimate | None
    not_comparable: str = ""  # why the two numbers may not be compared ("" = comparable)

    @property
    def delta(self) -> float | None:
        if self.a is None or self.b is None or self.not_comparable:
            return None
        return self.b.value - self.a.value

    @property
    def within_noise(self) -> bool:
        """The two runs' intervals overlap (or one is missing): the difference may be noise."""
        return self.a is not None and self.b is not None and overlaps(self.a, self.b)


@dataclass
class Comparison:
    run_a: str
    run_b: str
    rows: list[ComparisonRow]
    verdict_a: list[EncoderVerdict]
    verdict_b: list[EncoderVerdict]
    verdict_joint: list[EncoderVerdict]  # over both runs' comparable probes (encoders ranked jointly)
    not_comparable: dict[Column, str] = field(default_factory=dict)  # probe -> why
    only_a: list[str] = field(default_factory=list)  # datasets only run a scored
    only_b: list[str] = field(default_factory=list)


def _column(r: ResultRecord) -> Column:
    return Column(r.dataset, r.level, r.task, r.feature, r.metric.lower())


def _differences(a: set[Signature], b: set[Signature], run_a: str, run_b: str) -> str:
    """Why two sets of signatures disagree, in words."""
    why = []
    va, vb = sorted({s.dataset_version for s in a}), sorted({s.dataset_version for s in b})
    if va != vb:
        why.append(f"dataset version {', '.join(va)} ({run_a}) ≠ {', '.join(vb)} ({run_b})")
    pa, pb = [json.loads(s.protocol) for s in a], [json.loads(s.protocol) for s in b]
    keys = sorted({k for p in pa + pb for k in p})
    for k in keys:
        xa = sorted({json.dumps(p.get(k), sort_keys=True) for p in pa})
        xb = sorted({json.dumps(p.get(k), sort_keys=True) for p in pb})
        if xa != xb:
            why.append(f"protocol {k}: {', '.join(xa)} ({run_a}) ≠ {', '.join(xb)} ({run_b})")
    return "; ".join(why)


def comparability(run_a: str, a: Sequence[ResultRecord], run_b: str, b: Sequence[ResultRecord]) -> dict[Column, str]:
    """Probe -> why it is not comparable, for every probe both runs scored that differ in dataset version or
    protocol."""
    sig_a: dict[Column, set[Signature]] = {}
    sig_b: dict[Column, set[Signature]] = {}
    for recs, sigs in ((a, sig_a), (b, sig_b)):
        for r in recs:
            sigs.setdefault(_column(r), set()).add(Signature.of(r))
    out = {}
    for col in sorted(set(sig_a) & set(sig_b), key=lambda c: c.slug):
        if sig_a[col] != sig_b[col]:
            out[col] = _differences(sig_a[col], sig_b[col], run_a, run_b)
    return out


def compare_runs(run_a: str, a: Sequence[ResultRecord], run_b: str, b: Sequence[ResultRecord]) -> Comparison:
    """``a`` and ``b`` are aggregated records of the two runs."""
    bad = comparability(run_a, a, run_b, b)
    va = {(r.encoder, _column(r)): estimate_of(r) for r in a}
    vb = {(r.encoder, _column(r)): estimate_of(r) for r in b}
    keys = sorted(set(va) | set(vb), key=lambda k: (k[1].slug, k[0]))
    rows = [ComparisonRow(enc, col, va.get((enc, col)), vb.get((enc, col)), bad.get(col, "")) for enc, col in keys]
    # joint ranking: comparable probes only; where both runs scored an encoder, the second run's number wins
    b_keys = {(r.encoder, _column(r)) for r in b}
    joint = [*b, *(r for r in a if (r.encoder, _column(r)) not in b_keys)]
    joint = [r for r in joint if _column(r) not in bad]
    ds_a, ds_b = {r.dataset for r in a}, {r.dataset for r in b}
    return Comparison(
        run_a,
        run_b,
        rows,
        compute_verdict(a),
        compute_verdict(b),
        compute_verdict(joint),
        bad,
        sorted(ds_a - ds_b),
        sorted(ds_b - ds_a),
    )
