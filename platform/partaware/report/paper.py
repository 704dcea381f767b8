"""The paper's reference numbers (ICLR-2023 text, protocol §4) as data, and the mapping from our records to them.

Why data and not prose: the report puts these numbers beside a run's own, and the claims checklist
(``claims.py``) is computed from whichever numbers it is given, the run's or the paper's, never written by hand.

A *paper column* names one number of the paper's tables, for example ``cub_ret_enc`` (Table 3, part retrieval on
CUB with encoded features). ``paper_column_of`` maps a result record to its column by dataset, level, task and
feature; ``PaperMapping`` maps our canonical encoder ids to the paper's seven by family and a configurable alias
list, so the paper zoo's ids can change without touching this module.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from partaware.report.estimates import Estimate, estimate_of
from partaware.report.records import is_control
from partaware.results import ResultRecord

#: paper key -> (display name, family). Order is the paper's row order.
PAPER_ENCODERS: dict[str, tuple[str, str]] = {
    "deit": ("DeiT", "supervised"),
    "mocov3": ("MoCo v3", "contrastive"),
    "dino": ("DINO", "contrastive"),
    "beit": ("BEiT", "mim"),
    "mae": ("MAE", "mim"),
    "cae": ("CAE", "mim"),
    "ibot": ("iBOT", "contrastive+mim"),
}

#: paper key -> aliases matched as whole tokens of an encoder id (``vit_base_patch16_224.dino`` -> dino).
DEFAULT_ALIASES: dict[str, tuple[str, ...]] = {
    "deit": ("deit",),
    "mocov3": ("mocov3", "moco_v3", "moco-v3", "moco"),
    "dino": ("dino",),
    "beit": ("beit",),
    "mae": ("mae",),
    "cae": ("cae",),
    "ibot": ("ibot",),
}

#: paper column -> (table, human label).
PAPER_COLUMNS: dict[str, tuple[str, str]] = {
    "in1k_linear": ("Table 1", "ImageNet linear top-1"),
    "in1k_attentive": ("Table 1", "ImageNet attentive top-1"),
    "ade150_miou": ("Table 2", "ADE20K-150 mIoU"),
    "ade150_macc": ("Table 2", "ADE20K-150 mAcc"),
    "ade150_aacc": ("Table 2", "ADE20K-150 aAcc"),
    "cub_ret_enc": ("Table 3", "CUB part retrieval AP, encoded"),
    "cub_ret_proj": ("Table 3", "CUB part retrieval AP, projected"),
    "coco_ret_enc": ("Table 3", "COCO part retrieval AP, encoded"),
    "coco_ret_proj": ("Table 3", "COCO part retrieval AP, projected"),
    "cub_cls_linear": ("Table 3", "CUB part classification, linear"),
    "cub_cls_attentive": ("Table 3", "CUB part classification, attentive"),
    "coco_cls_linear": ("Table 3", "COCO part classification, linear"),
    "coco_cls_attentive": ("Table 3", "COCO part classification, attentive"),
    **{
        f"{ds}_{m}": ("Table 4", f"{label} {m_label}")
        for ds, label in (("adepart", "ADE20K-Part"), ("pascalpart", "Pascal-Part"), ("lip", "LIP"))
        for m, m_label in (("miou", "mIoU"), ("macc", "mAcc"), ("aacc", "aAcc"))
    },
    # Figure 6 / Appendix A.3: object segmentation on the part datasets' images (the paper's numbers were not
    # retrieved, so these columns have no reference value; C12 and C13 read a run's own)
    **{
        f"{ds}_{m}": ("Figure 6", f"{label} {m_label}")
        for ds, label in (("adeobj", "ADE20K-Object-59"), ("pascalobj", "Pascal-Object-16"))
        for m, m_label in (("miou", "mIoU"), ("macc", "mAcc"), ("aacc", "aAcc"))
    },
}

_T4 = {  # Table 4: (mIoU, mAcc, aAcc) per dataset
    "deit": ((27.3, 34.7, 69.2), (27.4, 36.1, 65.8), (41.4, 52.6, 73.5)),
    "mocov3": ((27.1, 34.7, 70.1), (27.1, 35.8, 66.0), (41.9, 53.0, 74.5)),
    "dino": ((28.9, 36.8, 70.3), (27.8, 36.5, 66.4), (41.0, 51.9, 74.0)),
    "beit": ((18.6, 25.8, 58.2), (14.8, 21.4, 47.0), (27.2, 36.5, 60.1)),
    "mae": ((26.3, 35.0, 67.3), (24.3, 32.9, 61.5), (38.2, 48.7, 71.3)),
    "cae": ((28.4, 36.9, 71.1), (27.8, 37.0, 66.3), (43.7, 55.1, 75.9)),
    "ibot": ((32.2, 40.0, 73.4), (30.7, 40.0, 69.7), (44.6, 55.7, 76.6)),
}
_T123 = {  # in1k lin, att | ade150 miou, macc, aacc | Table 3 (8 numbers, None = not applicable)
    "deit": ((81.8, 81.8), (34.9, 44.2, 75.4), (35.0, None, 44.1, None, 90.9, 92.9, 88.5, 91.4)),
    "mocov3": ((76.2, 77.0), (34.7, 43.9, 75.9), (50.8, 28.4, 52.3, 36.8, 93.8, 96.0, 92.4, 95.3)),
    "dino": ((77.3, 77.8), (34.5, 43.5, 76.1), (48.9, 31.7, 51.8, 41.2, 93.2, 95.2, 91.7, 94.5)),
    "beit": ((41.8, 51.9), (17.8, 23.7, 64.9), (27.9, None, 35.3, None, 55.4, 86.5, 69.3, 86.5)),
    "mae": ((67.8, 74.2), (27.1, 34.8, 71.6), (28.5, None, 37.1, None, 86.9, 92.8, 88.0, 93.9)),
    "cae": ((70.4, 77.1), (32.6, 42.2, 75.2), (58.0, None, 57.0, None, 89.5, 95.8, 91.1, 95.5)),
    "ibot": ((79.5, 79.8), (38.3, 47.4, 78.1), (49.3, 31.2, 59.2, 41.5, 93.8, 95.8, 92.1, 95.1)),
}
_T3_COLS = (
    "cub_ret_enc",
    "cub_ret_proj",
    "coco_ret_enc",
    "coco_ret_proj",
    "cub_cls_linear",
    "cub_cls_attentive",
    "coco_cls_linear",
    "coco_cls_attentive",
)


def _build_reference() -> dict[str, dict[str, float]]:
    ref: dict[str, dict[str, float]] = {}
    for enc, (t1, t2, t3) in _T123.items():
        row = {"in1k_linear": t1[0], "in1k_attentive": t1[1]}
        row.update(zip(("ade150_miou", "ade150_macc", "ade150_aacc"), t2, strict=True))
        row.update({c: v for c, v in zip(_T3_COLS, t3, strict=True) if v is not None})
        for ds, values in zip(("adepart", "pascalpart", "lip"), _T4[enc], strict=True):
            row.update({f"{ds}_{m}": v for m, v in zip(("miou", "macc", "aacc"), values, strict=True)})
        ref[enc] = row
    return ref


#: paper encoder key -> paper column -> value (percent). Figure 6's object numbers were not retrieved.
PAPER_REFERENCE: dict[str, dict[str, float]] = _build_reference()

# --- which records are which paper column -------------------------------------------------------

#: paper dataset key -> our dataset names (normalised: lower case, letters and digits only).
DATASET_ALIASES: dict[str, tuple[str, ...]] = {
    "in1k": ("imagenet", "imagenet1k", "in1k", "ilsvrc2012"),
    "ade150": ("ade20k", "ade20k150", "ade150", "adechallengedata2016"),
    "adepart": ("ade20kpart", "ade20kpart209", "adepart"),
    "adeobj": ("ade20kobject", "ade20kobject59", "adeobject", "adeobject59"),
    "pascalobj": ("pascalobject", "pascalobject16", "pascalsemantic", "pascalsemantic16"),
    "pascalpart": ("pascalpart", "pascalpart193"),
    "lip": ("lip", "lookintoperson"),
    "cub": ("cub", "cub200", "cub2002011", "cub200part", "cubparts"),
    "coco": ("coco", "cocokeypoints", "cocopart", "cocoparts", "coco2017keypoints"),
}
#: which tap is the paper's "Encoded" retrieval column; the paper does not say, the script's default is the mean.
ENCODED_FEATURES: tuple[str, ...] = ("mean", "cls")
PROJECTED_FEATURES: tuple[str, ...] = ("proj",)


def _norm(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


def paper_dataset_of(dataset: str) -> str | None:
    n = _norm(dataset)
    return next((key for key, names in DATASET_ALIASES.items() if n in names), None)


def paper_columns_of(record: ResultRecord) -> list[str]:
    """The paper columns a record fills (segmentation fills mIoU, mAcc and aAcc); [] when it has none."""
    ds = paper_dataset_of(record.dataset)
    if ds is None:
        return []
    if record.task == "segmentation":
        object_sets = ("ade150", "adeobj", "pascalobj")
        if (ds in object_sets and record.level == "object") or (ds in ("adepart", "pascalpart", "lip")):
            return [f"{ds}_{m}" for m in ("miou", "macc", "aacc")]
        return []
    if ds == "in1k" and record.level == "object" and record.task in ("linear", "attentive"):
        return [f"in1k_{record.task}"]
    if ds in ("cub", "coco") and record.level == "part":
        if record.task == "retrieval":
            if record.feature in ENCODED_FEATURES:
                return [f"{ds}_ret_enc"]
            if record.feature in PROJECTED_FEATURES:
                return [f"{ds}_ret_proj"]
        elif record.task in ("linear", "attentive"):
            return [f"{ds}_cls_{record.task}"]
    return []


def estimate_for_column(record: ResultRecord, column: str) -> Estimate | None:
    """``metric_for_column`` with the record's interval where the column is its primary metric."""
    value = metric_for_column(record, column)
    if value is None:
        return None
    primary = record.task != "segmentation" or record.metric.lower() == column.rsplit("_", 1)[-1]
    return estimate_of(record) if primary else Estimate(value)


def metric_for_column(record: ResultRecord, column: str) -> float | None:
    """The record's number for a paper column: the primary value, or mIoU/mAcc/aAcc from ``metrics``."""
    suffix = column.rsplit("_", 1)[-1]
    if record.task == "segmentation" and suffix in ("miou", "macc", "aacc"):
        if record.metric.lower() == suffix:
            return record.value
        for key, value in record.metrics.items():
            if _norm(key) == suffix:
                return float(value)
        return None
    return record.value


# --- encoder ids -> paper encoders --------------------------------------------------------------


@dataclass
class PaperMapping:
    """Maps canonical encoder ids to paper keys.

    ``explicit`` (id -> paper key) wins; otherwise an encoder of the ``paper`` zoo whose id holds one of the
    paper key's aliases as a whole token and whose family is the paper's maps to it.
    """

    explicit: dict[str, str] = field(default_factory=dict)
    aliases: dict[str, tuple[str, ...]] = field(default_factory=lambda: dict(DEFAULT_ALIASES))
    zoos: tuple[str, ...] = ("paper",)

    def __post_init__(self) -> None:
        from partaware.errors import UnknownNameError

        for key in self.explicit.values():
            if key not in PAPER_ENCODERS:
                raise UnknownNameError("paper encoder", key, PAPER_ENCODERS)

    def paper_key(self, encoder: str, family: str, zoo: str) -> str | None:
        if encoder in self.explicit:
            return self.explicit[encoder]
        if zoo not in self.zoos:
            return None
        low = encoder.lower()
        best: tuple[int, str] | None = None
        for key, aliases in self.aliases.items():
            if PAPER_ENCODERS[key][1] != family:
                continue
            for alias in aliases:
                if re.search(rf"(^|[^a-z0-9]){re.escape(alias)}($|[^a-z0-9])", low) and (
                    best is None or len(alias) > best[0]
                ):
                    best = (len(alias), key)
        return best[1] if best else None

    def encoders(self, records: Iterable[ResultRecord]) -> dict[str, str]:
        """Our encoder id -> paper key, for the records' encoders that map (one id per paper key)."""
        out: dict[str, str] = {}
        taken: set[str] = set()
        for r in records:
            if r.encoder in out:
                continue
            key = self.paper_key(r.encoder, r.family, r.zoo)
            if key is not None and key not in taken:
                out[r.encoder] = key
                taken.add(key)
        return out


def parse_paper_names(pairs: Iterable[str]) -> dict[str, str]:
    """``["my_dino=dino", ...]`` -> ``{"my_dino": "dino"}`` (CLI ``--paper-name``)."""
    from partaware.errors import SpecError

    out = {}
    for pair in pairs:
        enc, sep, key = pair.partition("=")
        if not sep or not enc or not key:
            raise SpecError(f"--paper-name {pair!r}: expected ENCODER_ID=PAPER_KEY ({', '.join(PAPER_ENCODERS)})")
        out[enc.strip()] = key.strip().lower()
    return out


def run_paper_values(records: Iterable[ResultRecord], mapping: PaperMapping) -> dict[str, dict[str, Estimate]]:
    """This run's numbers in paper layout: paper key -> paper column -> estimate (value and interval).

    When both encoded taps ran, the first of ``ENCODED_FEATURES`` (mean, the paper script's default) fills the
    encoded column. Controls are never a paper encoder.
    """
    records = [r for r in records if not is_control(r)]
    ids = mapping.encoders(records)
    out: dict[str, dict[str, Estimate]] = {}
    chosen_rank: dict[tuple[str, str], int] = {}
    for r in records:
        key = ids.get(r.encoder)
        if key is None:
            continue
        for col in paper_columns_of(r):
            rank = ENCODED_FEATURES.index(r.feature) if r.feature in ENCODED_FEATURES else 0
            value = estimate_for_column(r, col)
            if value is None or chosen_rank.get((key, col), 99) <= rank:
                continue
            chosen_rank[(key, col)] = rank
            out.setdefault(key, {})[col] = value
    return out


def used_paper_setup(values: Mapping[str, Mapping[str, object]]) -> bool:
    """True when the run has at least one paper column for at least two paper encoders."""
    return sum(1 for cols in values.values() if cols) >= 2
