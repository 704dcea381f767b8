"""The verdict: per encoder, how object-aware and how part-aware it is, and which way it leans, or that the
data cannot tell.

Scores are compared within one metric only: a *group* is one (level, metric), e.g. part-level top-1, and an
encoder's group score is the mean of its primary numbers over the group's probes that every ranked encoder ran
(projected features excluded: they test the projection head, not the representation). AP is never averaged
with top-1.

Ranks come from the confidence intervals: an encoder is above another only when its interval lies wholly above
the other's (``estimates.decide``), so a rank is a range, ``1–3`` when the intervals cannot order three
encoders. A level's rank range is the mean of its groups' (ranks are unitless, so they may be averaged across
metrics where scores may not). The leaning is given only when it survives the intervals:

- *part-aware*: the worst part rank the intervals allow is better than the best object rank they allow;
- *object-aware*: the reverse;
- *balanced*: both ranks are decided (single numbers) and equal;
- *inconclusive* otherwise, whenever one of the encoder's scores has no interval, and for an encoder with
  random weights (the bootstrap covers the test items, not the draw of the weights, and nothing was
  pretrained); the reason names the overlapping scores, the missing interval or the random weights.

Controls (random-initialisation copies added by the job) are scored on the same probes, shown beside the
encoders, and never ranked nor given a leaning.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field

from partaware.report.estimates import Estimate, decide, estimate_of, overlaps
from partaware.report.records import is_control
from partaware.report.tables import FAMILY_LABEL, FAMILY_ORDER, METRIC_LABEL, Column, encoder_sort_key
from partaware.results import ResultRecord

EXCLUDED_FEATURES = ("proj",)
LEVELS = ("object", "part")
PART_AWARE, OBJECT_AWARE, BALANCED, INCONCLUSIVE, NOT_RANKED = (
    "part-aware",
    "object-aware",
    "balanced",
    "inconclusive",
    "not ranked (control)",
)
#: the baseline a level's score is read against: uniform chance, else the majority class (segmentation)
REFERENCE_BASELINES = ("chance", "majority")
#: overlapping rivals named in a reason before "and N more"
MAX_NAMED = 3


@dataclass(frozen=True)
class RankRange:
    """The ranks an encoder may hold given the intervals: ``best`` (1 = first) to ``worst``."""

    best: float
    worst: float

    @property
    def decided(self) -> bool:
        return self.best == self.worst

    def text(self) -> str:
        return f"{self.best:g}" if self.decided else f"{self.best:g}–{self.worst:g}"


@dataclass
class LevelGroup:
    """One (level, metric): the probes every ranked encoder ran, and their baselines (means over the probes)."""

    level: str
    metric: str
    columns: list[Column]
    baselines: dict[str, float] = field(default_factory=dict)
    higher_is_better: bool = True

    @property
    def key(self) -> tuple[str, str]:
        return (self.level, self.metric)

    @property
    def label(self) -> str:
        return f"{self.level} {METRIC_LABEL.get(self.metric, self.metric)}"

    @property
    def reference(self) -> tuple[str, float] | None:
        """(name, value) of the baseline this level's score is read against: chance, else majority class."""
        return next(((k, self.baselines[k]) for k in REFERENCE_BASELINES if k in self.baselines), None)


@dataclass(frozen=True)
class ChanceGap:
    """One metric scored at both levels: each level's score above its own reference baseline, in points."""

    metric: str
    object_above: float
    part_above: float
    reference: str  # "chance" or "majority"

    @property
    def gap(self) -> float:
        """(part − part chance) − (object − object chance): positive = further above chance on parts."""
        return self.part_above - self.object_above


@dataclass
class EncoderVerdict:
    encoder: str
    family: str
    zoo: str
    scores: dict[tuple[str, str], Estimate]  # (level, metric) -> score
    ranks: dict[tuple[str, str], RankRange] = field(default_factory=dict)
    object_rank: RankRange | None = None
    part_rank: RankRange | None = None
    leaning: str = INCONCLUSIVE
    reason: str = ""
    chance_gaps: list[ChanceGap] = field(default_factory=list)
    random_weights: bool = False
    control: bool = False
    control_of: str = ""

    @property
    def family_label(self) -> str:
        return FAMILY_LABEL.get(self.family, self.family)

    def level_rank(self, level: str) -> RankRange | None:
        return self.object_rank if level == "object" else self.part_rank


@dataclass
class Verdict:
    groups: list[LevelGroup]
    encoders: list[EncoderVerdict]  # ranked, in family order
    controls: list[EncoderVerdict]  # scored on the same probes, never ranked


# --- groups and scores ---------------------------------------------------------------------------------------


def _primary(records: Sequence[ResultRecord]) -> dict[str, dict[Column, ResultRecord]]:
    """Encoder -> its primary-metric columns (projected features left out)."""
    out: dict[str, dict[Column, ResultRecord]] = {}
    for r in records:
        if r.feature not in EXCLUDED_FEATURES:
            col = Column(r.dataset, r.level, r.task, r.feature, r.metric.lower())
            out.setdefault(r.encoder, {})[col] = r
    return out


def level_groups(records: Sequence[ResultRecord]) -> list[LevelGroup]:
    """One group per (level, metric) with the probes every ranked encoder that ran that level has; a
    (level, metric) with no such probe gets no group (encoders that share no probe are not compared)."""
    ranked = [r for r in records if not is_control(r)] or list(records)
    by_enc = _primary(ranked)
    groups = []
    for level in LEVELS:
        at_level = {e: {c: r for c, r in cols.items() if c.level == level} for e, cols in by_enc.items()}
        at_level = {e: cols for e, cols in at_level.items() if cols}
        if not at_level:
            continue
        common = set.intersection(*(set(cols) for cols in at_level.values()))
        for metric in sorted({c.metric for c in common}, key=lambda m: (m != "top1", m)):
            cols = sorted((c for c in common if c.metric == metric), key=lambda c: c.slug)
            recs = [at_level[e][c] for e in at_level for c in cols]
            groups.append(LevelGroup(level, metric, cols, _group_baselines(recs, cols), recs[0].higher_is_better))
    return groups


def _group_baselines(records: Sequence[ResultRecord], cols: Sequence[Column]) -> dict[str, float]:
    """Per baseline present on every column: the mean over columns of its mean over the columns' records."""
    out = {}
    names = set.intersection(*(set(r.baselines) for r in records)) if records else set()
    for name in sorted(names):
        per_col = []
        for c in cols:
            vals = [
                r.baselines[name]
                for r in records
                if (r.dataset, r.task, r.feature, r.metric.lower()) == (c.dataset, c.task, c.feature, c.metric)
            ]
            per_col.append(statistics.fmean(vals))
        out[name] = statistics.fmean(per_col)
    return out


def _score(cols: dict[Column, ResultRecord], group: LevelGroup) -> Estimate | None:
    """The encoder's score in a group: the mean over the group's probes, None unless it ran them all."""
    if not all(c in cols for c in group.columns):
        return None
    return Estimate.mean([estimate_of(cols[c]) for c in group.columns])


# --- ranks and the leaning -------------------------------------------------------------------------------------


def rank_ranges(scores: dict[str, Estimate], higher_is_better: bool = True) -> dict[str, RankRange]:
    """Encoder -> the ranks its interval allows: 1 + the number of encoders decidedly above it, to n − the
    number decidedly below it. Without an interval nothing is decided about an encoder."""
    oriented = {e: s.oriented(higher_is_better) for e, s in scores.items()}
    n = len(oriented)
    out = {}
    for e, s in oriented.items():
        above = sum(1 for o, t in oriented.items() if o != e and decide(t, s) is True)
        below = sum(1 for o, t in oriented.items() if o != e and decide(s, t) is True)
        out[e] = RankRange(1 + above, n - below)
    return out


def _mean_range(ranges: Sequence[RankRange]) -> RankRange | None:
    if not ranges:
        return None
    return RankRange(
        round(statistics.fmean(r.best for r in ranges), 2), round(statistics.fmean(r.worst for r in ranges), 2)
    )


def _named(enc: str, e: Estimate) -> str:
    return f"{enc} {e.text()}" + ("" if e.has_interval else " (no interval)")


def _rivals(enc: str, group: LevelGroup, scores: dict[str, dict[tuple[str, str], Estimate]]) -> str:
    """``object top-1 61.2 [58.0, 64.1] overlaps b 60.0 [57.1, 63.0], c ...``: why a group's rank is a range."""
    mine = scores[enc][group.key]
    others = [o for o in scores if o != enc and group.key in scores[o] and overlaps(mine, scores[o][group.key])]
    if not others:
        return ""
    named = ", ".join(_named(o, scores[o][group.key]) for o in others[:MAX_NAMED])
    more = f" and {len(others) - MAX_NAMED} more" if len(others) > MAX_NAMED else ""
    return f"{group.label} {mine.text()} overlaps {named}{more}"


def _leaning(enc: str, v: EncoderVerdict, groups: Sequence[LevelGroup], scores: dict, n_ranked: int) -> tuple[str, str]:
    """(leaning, reason) by the rules in the module docstring."""
    if v.random_weights:  # its ranks measure the architecture and the test set's noise, not a pretraining
        return INCONCLUSIVE, "random weights: nothing was pretrained, so there is no awareness to attribute"
    missing = [lv for lv in LEVELS if v.level_rank(lv) is None]
    if missing:
        return INCONCLUSIVE, f"no {' or '.join(missing)}-level probe that every encoder ran"
    if n_ranked < 2:
        return INCONCLUSIVE, "only one encoder: a leaning is relative to the run's other encoders"
    no_ci = [f"{g.label} ({v.scores[g.key].text()})" for g in groups if not v.scores[g.key].has_interval]
    if no_ci:
        return INCONCLUSIVE, "no confidence interval for " + ", ".join(no_ci)
    obj, part = v.object_rank, v.part_rank
    ranks = f"object rank {obj.text()}, part rank {part.text()}"
    if part.worst < obj.best:
        return PART_AWARE, f"{ranks}: better on parts beyond the intervals"
    if obj.worst < part.best:
        return OBJECT_AWARE, f"{ranks}: better on objects beyond the intervals"
    if obj.decided and part.decided:
        return BALANCED, f"{ranks}: the same rank at both levels"
    overlapping = [t for t in (_rivals(enc, g, scores) for g in groups) if t]
    return INCONCLUSIVE, f"{ranks}: the intervals overlap ({'; '.join(overlapping) or 'between other encoders'})"


def _chance_gaps(v: EncoderVerdict, groups: Sequence[LevelGroup]) -> list[ChanceGap]:
    """Per metric scored at both levels with the same kind of baseline: each level's score above it."""
    by_key = {g.key: g for g in groups}
    out = []
    for metric in dict.fromkeys(g.metric for g in groups):
        go, gp = by_key.get(("object", metric)), by_key.get(("part", metric))
        if go is None or gp is None or go.reference is None or gp.reference is None:
            continue
        if go.reference[0] != gp.reference[0] or go.key not in v.scores or gp.key not in v.scores:
            continue
        above_o = v.scores[go.key].value - go.reference[1]
        above_p = v.scores[gp.key].value - gp.reference[1]
        out.append(ChanceGap(metric, above_o, above_p, go.reference[0]))
    return out


def _encoder_verdict(enc: str, first: ResultRecord, records: Sequence[ResultRecord], scores: dict) -> EncoderVerdict:
    return EncoderVerdict(
        encoder=enc,
        family=first.family,
        zoo=first.zoo,
        scores=scores.get(enc, {}),
        random_weights=any(r.random_weights for r in records if r.encoder == enc),
        control=is_control(first),
        control_of=first.control_of,
    )


def verdict_of(records: Sequence[ResultRecord]) -> Verdict:
    """Groups, ranked encoders (family order, then the paper's order) and controls, from aggregated records."""
    groups = level_groups(records)
    by_enc = _primary(records)
    scores: dict[str, dict[tuple[str, str], Estimate]] = {}
    for enc, cols in by_enc.items():
        for g in groups:
            s = _score(cols, g)
            if s is not None:
                scores.setdefault(enc, {})[g.key] = s
    first: dict[str, ResultRecord] = {}
    for r in records:
        first.setdefault(r.encoder, r)
    ranked = [e for e, r in first.items() if not is_control(r)]
    ranked_scores = {e: scores[e] for e in ranked if e in scores}
    out, controls = [], []
    for enc, r in first.items():
        v = _encoder_verdict(enc, r, records, scores)
        v.chance_gaps = _chance_gaps(v, groups)
        if v.control:
            v.leaning, v.reason = NOT_RANKED, f"random-initialisation control of {r.control_of or 'its architecture'}"
            controls.append(v)
        else:
            out.append(v)
    for g in groups:
        ranges = rank_ranges({e: s[g.key] for e, s in ranked_scores.items() if g.key in s}, g.higher_is_better)
        for v in out:
            if v.encoder in ranges:
                v.ranks[g.key] = ranges[v.encoder]
    for v in out:
        mine = [g for g in groups if g.key in v.ranks]
        v.object_rank = _mean_range([v.ranks[g.key] for g in mine if g.level == "object"])
        v.part_rank = _mean_range([v.ranks[g.key] for g in mine if g.level == "part"])
        v.leaning, v.reason = _leaning(v.encoder, v, mine, ranked_scores, len(ranked_scores))
    key = lambda v: encoder_sort_key(v.encoder, v.family)  # noqa: E731
    return Verdict(groups, sorted(out, key=key), sorted(controls, key=key))


def compute_verdict(records: Sequence[ResultRecord]) -> list[EncoderVerdict]:
    """One verdict per ranked encoder (controls left out: ``verdict_of(...).controls``)."""
    return verdict_of(records).encoders


def decided_best(verdicts: Sequence[EncoderVerdict], level: str) -> EncoderVerdict | None:
    """The encoder whose rank 1 at ``level`` the intervals decide, if one is."""
    return next((v for v in verdicts if (r := v.level_rank(level)) is not None and r.worst == 1), None)


# --- families --------------------------------------------------------------------------------------------------


@dataclass
class FamilyRow:
    family: str
    label: str
    encoders: list[str]
    scores: dict[tuple[str, str], Estimate]  # mean over the family's encoders, interval = mean of their ends
    spread: dict[tuple[str, str], float | None]  # std over the family's encoders


def family_summary(verdicts: Sequence[EncoderVerdict], groups: Sequence[LevelGroup]) -> list[FamilyRow]:
    """Per family (controls as their own row): per group, the mean of its encoders' scores and their spread."""
    out = []
    families = [*FAMILY_ORDER, *sorted({v.family for v in verdicts} - set(FAMILY_ORDER))]
    for fam in families:
        members = [v for v in verdicts if v.family == fam]
        if not members:
            continue
        row = FamilyRow(fam, FAMILY_LABEL.get(fam, fam), [v.encoder for v in members], {}, {})
        for g in groups:
            vals = [v.scores[g.key] for v in members if g.key in v.scores]
            if vals:
                row.scores[g.key] = Estimate.mean(vals)
                row.spread[g.key] = statistics.stdev(e.value for e in vals) if len(vals) > 1 else None
        out.append(row)
    return out


# --- Figure 6: the same images at both granularities -------------------------------------------------------------

#: object-level dataset -> part-level dataset of the same images (normalised names): the paper's Figure 6 pairs.
PAIRED_DATASETS = {
    "ade20kobject": "ade20kpart",
    "ade20kobject59": "ade20kpart",
    "pascalobject": "pascalpart",
    "pascalobject16": "pascalpart",
    "pascalsemantic": "pascalpart",
}


def _norm(name: str) -> str:
    return "".join(ch for ch in name.lower() if ch.isalnum())


@dataclass
class SameImagesPair:
    """One probe at both granularities on the same images (one metric); ``values``: encoder -> (object, part)
    estimates; ``chance``: the reference baseline of each level (None where the run recorded none)."""

    label: str
    metric: str
    values: dict[str, tuple[Estimate, Estimate]]
    chance: tuple[float | None, float | None] = (None, None)
    controls: set[str] = field(default_factory=set)


def _reference(r: ResultRecord) -> float | None:
    return next((r.baselines[k] for k in REFERENCE_BASELINES if k in r.baselines), None)


def same_image_pairs(records: Sequence[ResultRecord]) -> list[SameImagesPair]:
    """Probes run at both levels on the same images: one dataset with both levels (the synthetic one), or the
    paper's object/part dataset pairs (ADE20K-Object vs ADE20K-Part, Pascal-Object vs Pascal-Part)."""
    part_by_key: dict[tuple, ResultRecord] = {}
    part_names: dict[str, str] = {}
    for r in records:
        if r.level == "part" and r.feature not in EXCLUDED_FEATURES:
            part_by_key[(r.encoder, _norm(r.dataset), r.task, r.feature, r.metric)] = r
            part_names[_norm(r.dataset)] = r.dataset
    pairs: dict[str, SameImagesPair] = {}
    for r in records:
        if r.level != "object" or r.feature in EXCLUDED_FEATURES:
            continue
        ds = _norm(r.dataset)
        for part_ds in (ds, PAIRED_DATASETS.get(ds)):
            key = (r.encoder, part_ds, r.task, r.feature, r.metric)
            if part_ds is not None and key in part_by_key:
                p = part_by_key[key]
                where = r.dataset if part_ds == ds else f"{r.dataset} / {part_names[part_ds]}"
                label = f"{where} · {r.task} · {r.feature} · {r.metric}"
                pair = pairs.setdefault(label, SameImagesPair(label, r.metric.lower(), {}))
                pair.values[r.encoder] = (estimate_of(r), estimate_of(p))
                if pair.chance == (None, None):
                    pair.chance = (_reference(r), _reference(p))
                if is_control(r):
                    pair.controls.add(r.encoder)
                break
    return [pairs[k] for k in sorted(pairs)]
