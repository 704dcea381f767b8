"""The verdict: per encoder, how object-aware and how part-aware it is, and which way it leans.

Scores on different tasks are on different scales, so the verdict leans on *ranks*: an encoder that ranks
better among the run's encoders at part level than at object level is relatively part-aware. The level score
is the mean of the encoder's primary numbers over the level's columns that every encoder of the run has
(projected features excluded: they test the projection head, not the representation), so encoders are
compared on the same probes.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from partaware.report.tables import FAMILY_LABEL, FAMILY_ORDER, Column, columns_of, encoder_sort_key
from partaware.results import ResultRecord

EXCLUDED_FEATURES = ("proj",)


@dataclass
class EncoderVerdict:
    encoder: str
    family: str
    zoo: str
    object_score: float | None
    part_score: float | None
    object_rank: int | None
    part_rank: int | None
    n_object: int  # columns behind the object score
    n_part: int
    random_weights: bool = False

    @property
    def gap(self) -> float | None:
        """Part score minus object score, in points (scales differ: read with the ranks)."""
        if self.object_score is None or self.part_score is None:
            return None
        return self.part_score - self.object_score

    @property
    def rank_shift(self) -> int | None:
        """Object rank minus part rank: positive = ranks better on parts than on objects."""
        if self.object_rank is None or self.part_rank is None:
            return None
        return self.object_rank - self.part_rank

    @property
    def leaning(self) -> str:
        shift = self.rank_shift
        if shift is None:
            return "n/a"
        return "part-aware" if shift > 0 else "object-aware" if shift < 0 else "balanced"

    @property
    def family_label(self) -> str:
        return FAMILY_LABEL.get(self.family, self.family)


def _level_columns(records: Sequence[ResultRecord], level: str) -> tuple[dict[str, dict[Column, float]], list[Column]]:
    per_enc: dict[str, dict[Column, float]] = {}
    for r in records:
        if r.level != level or r.feature in EXCLUDED_FEATURES:
            continue
        for col, value in columns_of(r):
            if r.task == "segmentation" and col.metric != "miou" and any(c.metric == "miou" for c, _ in columns_of(r)):
                continue  # mIoU is segmentation's primary number
            per_enc.setdefault(r.encoder, {})[col] = value if r.higher_is_better else -value
    if not per_enc:
        return per_enc, []
    common = set.intersection(*(set(cols) for cols in per_enc.values()))
    return per_enc, sorted(common, key=lambda c: c.slug)


def _ranks(scores: dict[str, float]) -> dict[str, int]:
    """Competition ranks, 1 = best; ties share the better rank."""
    ordered = sorted(scores.values(), reverse=True)
    return {enc: ordered.index(s) + 1 for enc, s in scores.items()}


def level_scores(records: Sequence[ResultRecord], level: str) -> tuple[dict[str, float], dict[str, int]]:
    """Encoder -> mean over the level's common columns (all its columns when none are common), and column counts."""
    per_enc, common = _level_columns(records, level)
    scores, counts = {}, {}
    for enc, cols in per_enc.items():
        use = [cols[c] for c in common] if common else list(cols.values())
        scores[enc] = statistics.fmean(use)
        counts[enc] = len(use)
    return scores, counts


def compute_verdict(records: Sequence[ResultRecord]) -> list[EncoderVerdict]:
    """One verdict per encoder, sorted by family (supervised, CL, MIM, CL+MIM), then the paper's order."""
    obj, n_obj = level_scores(records, "object")
    part, n_part = level_scores(records, "part")
    obj_rank, part_rank = _ranks(obj), _ranks(part)
    info: dict[str, ResultRecord] = {}
    for r in records:
        info.setdefault(r.encoder, r)
    out = [
        EncoderVerdict(
            encoder=enc,
            family=r.family,
            zoo=r.zoo,
            object_score=obj.get(enc),
            part_score=part.get(enc),
            object_rank=obj_rank.get(enc),
            part_rank=part_rank.get(enc),
            n_object=n_obj.get(enc, 0),
            n_part=n_part.get(enc, 0),
            random_weights=any(x.random_weights for x in records if x.encoder == enc),
        )
        for enc, r in info.items()
    ]
    return sorted(out, key=lambda v: encoder_sort_key(v.encoder, v.family))


def family_summary(verdicts: Sequence[EncoderVerdict]) -> list[dict]:
    """Per family: mean (and spread over its encoders) of the object and part scores."""
    out = []
    for fam in [*FAMILY_ORDER, *sorted({v.family for v in verdicts} - set(FAMILY_ORDER))]:
        members = [v for v in verdicts if v.family == fam]
        if not members:
            continue
        row: dict = {"family": fam, "label": FAMILY_LABEL.get(fam, fam), "encoders": [v.encoder for v in members]}
        for level in ("object", "part"):
            vals = [getattr(v, f"{level}_score") for v in members if getattr(v, f"{level}_score") is not None]
            row[level] = statistics.fmean(vals) if vals else None
            row[f"{level}_std"] = statistics.stdev(vals) if len(vals) > 1 else None
        out.append(row)
    return out


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
    """One probe at both granularities on the same images; ``values``: encoder -> (object, part)."""

    label: str
    values: dict[str, tuple[float, float]]


def same_image_pairs(records: Sequence[ResultRecord]) -> list[SameImagesPair]:
    """Probes run at both levels on the same images: one dataset with both levels (the synthetic one), or the
    paper's object/part dataset pairs (ADE20K-Object vs ADE20K-Part, Pascal-Object vs Pascal-Part)."""
    part_by_key: dict[tuple, float] = {}
    part_names: dict[str, str] = {}
    for r in records:
        if r.level == "part" and r.feature not in EXCLUDED_FEATURES:
            part_by_key[(r.encoder, _norm(r.dataset), r.task, r.feature, r.metric)] = r.value
            part_names[_norm(r.dataset)] = r.dataset
    pairs: dict[str, dict[str, tuple[float, float]]] = {}
    for r in records:
        if r.level != "object" or r.feature in EXCLUDED_FEATURES:
            continue
        ds = _norm(r.dataset)
        for part_ds in (ds, PAIRED_DATASETS.get(ds)):
            key = (r.encoder, part_ds, r.task, r.feature, r.metric)
            if part_ds is not None and key in part_by_key:
                where = r.dataset if part_ds == ds else f"{r.dataset} / {part_names[part_ds]}"
                label = f"{where} · {r.task} · {r.feature} · {r.metric}"
                pairs.setdefault(label, {})[r.encoder] = (r.value, part_by_key[key])
                break
    return [SameImagesPair(label, values) for label, values in sorted(pairs.items())]
