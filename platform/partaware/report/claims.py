"""The paper's claims C1-C14 (protocol §5), each checked on a set of numbers in paper layout.

Every claim is a conjunction of *checks*: a comparison between named numbers with a stated tolerance (a
margin in points, and the numbers' confidence intervals). A check *holds* when the comparison survives the
intervals, *fails* when not even the most favourable ends of the intervals give it, is *inconclusive* when the
intervals straddle it or a number has no interval, and is *missing* when the run lacks its numbers
(``estimates.decide``). A claim:

- *fails* when any check fails;
- else is *inconclusive* when any check is;
- else is *partial* when some checks lacked their numbers (the ones that ran hold);
- else *holds*; it is *not applicable* when no check could run.

The paper's own numbers carry no interval and are read as exact (``check_claims(..., exact=True)``): on them
the checker reproduces the paper's reading, including its two known exceptions (C6: CAE beats iBOT on CUB; C9:
MAE trails DeiT on CUB attentive by 0.1), and C12 is partial (Figure 6's object numbers were not retrieved).
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from partaware.report.estimates import Estimate, decide
from partaware.report.paper import PAPER_ENCODERS

HOLDS, FAILS, INCONCLUSIVE, PARTIAL, NA = "holds", "fails", "inconclusive", "partial", "not applicable"
MISSING = "missing"
#: "much" lower/better, in points (C7: projected vs encoded retrieval)
MUCH = 5.0
#: "by more than" (C8)
C8_MARGIN = 2.0
#: "competitive": within this many points (C3, C9)
COMPETITIVE = 5.0
#: "generally loses" (C12): at least this fraction of the other encoders beat DeiT at part granularity
GENERALLY = 0.5
#: C14: MAE's mean rank at part level must beat its mean object rank by more than this many places
C14_RANK_SHIFT = 0.5

CL = ("mocov3", "dino", "ibot")
PURE_CL = ("mocov3", "dino")
MIM = ("beit", "mae", "cae")
SSL = ("mocov3", "dino", "beit", "mae", "cae", "ibot")
Values = Mapping[str, Mapping[str, "float | Estimate"]]
#: Figure 6 pairs: object column on the part dataset's images -> part column
SAME_IMAGES = (("adeobj_miou", "adepart_miou"), ("pascalobj_miou", "pascalpart_miou"))
OBJECT_SEG = ("ade150_miou", "adeobj_miou", "pascalobj_miou")
PART_SEG = ("adepart_miou", "pascalpart_miou", "lip_miou")
PART_RETRIEVAL = ("cub_ret_enc", "coco_ret_enc")


@dataclass
class Check:
    text: str
    outcome: str  # HOLDS | FAILS | INCONCLUSIVE | MISSING

    @property
    def ok(self) -> bool | None:
        """True / False when decided, None when inconclusive or missing."""
        return {HOLDS: True, FAILS: False}.get(self.outcome)


_MARK = {HOLDS: "✓", FAILS: "✗", INCONCLUSIVE: "?"}


@dataclass
class ClaimResult:
    id: str
    claim: str
    evidence: str  # where the paper shows it
    tolerance: str = ""
    checks: list[Check] = field(default_factory=list)

    @property
    def status(self) -> str:
        outcomes = [c.outcome for c in self.checks]
        if not outcomes or all(o == MISSING for o in outcomes):
            return NA
        for status in (FAILS, INCONCLUSIVE):
            if status in outcomes:
                return status
        return PARTIAL if MISSING in outcomes else HOLDS

    @property
    def detail(self) -> str:
        ran = [c for c in self.checks if c.outcome != MISSING]
        missing = [c for c in self.checks if c.outcome == MISSING]
        parts = [f"{_MARK[c.outcome]} {c.text}" + (" (intervals overlap)" if c.outcome == INCONCLUSIVE else "")
                 for c in ran]  # fmt: skip
        if missing:
            parts.append(f"{len(missing)} check(s) lacked numbers: " + ", ".join(c.text for c in missing))
        return "; ".join(parts) if parts else "no numbers for this claim in this run"


def _outcome(decision: bool | None) -> str:
    return {True: HOLDS, False: FAILS, None: INCONCLUSIVE}[decision]


def _as_estimate(v) -> Estimate | None:
    if v is None:
        return None
    if isinstance(v, Estimate):
        return v
    v = float(v)
    return None if v != v else Estimate(v)  # NaN: no number


class _Ctx:
    def __init__(self, values: Values, exact: bool):
        self.values = values
        self.exact = exact

    def get(self, enc: str, col: str) -> Estimate | None:
        return _as_estimate(self.values.get(enc, {}).get(col))

    def name(self, enc: str) -> str:
        return PAPER_ENCODERS[enc][0]

    def present(self, encs, col: str) -> list[str]:
        return [e for e in encs if self.get(e, col) is not None]

    def decide(self, a: Estimate, b: Estimate, margin: float = 0.0, *, or_equal: bool = False) -> str:
        return _outcome(decide(a, b, margin, or_equal=or_equal, exact=self.exact))

    def gt(self, a: str, b: str, col: str, *, margin: float = 0.0, label: str = "") -> Check:
        va, vb = self.get(a, col), self.get(b, col)
        label = label or col
        if va is None or vb is None:
            return Check(f"{self.name(a)} > {self.name(b)} on {label}", MISSING)
        extra = f" by > {margin:g}" if margin else ""
        return Check(f"{self.name(a)} {va.text()} > {self.name(b)} {vb.text()}{extra} on {label}",
                     self.decide(va, vb, margin))  # fmt: skip

    def best(self, enc: str, col: str, *, among=tuple(PAPER_ENCODERS), exclude=()) -> Check:
        """``enc`` is at least as good as every other present encoder (2+ needed): fails when one is decidedly
        better, holds when it is decidedly at least as good as all."""
        others = [e for e in self.present(among, col) if e != enc and e not in exclude]
        v = self.get(enc, col)
        if v is None or not others:
            return Check(f"{self.name(enc)} best on {col}", MISSING)
        outcomes = {e: self.decide(v, self.get(e, col), or_equal=True) for e in others}
        top = max(others, key=lambda e: self.get(e, col).value)
        text = f"{self.name(enc)} {v.text()} vs best other {self.name(top)} {self.get(top, col).text()} on {col}"
        return Check(text, _all(outcomes.values()))

    def within(self, a: str, b: str, col: str, points: float) -> Check:
        """``a`` is no more than ``points`` below ``b`` ("competitive")."""
        va, vb = self.get(a, col), self.get(b, col)
        if va is None or vb is None:
            return Check(f"{self.name(a)} competitive with {self.name(b)} on {col}", MISSING)
        return Check(f"{self.name(a)} {va.text()} within {points:g} of {self.name(b)} {vb.text()} on {col}",
                     self.decide(va, vb, -points, or_equal=True))  # fmt: skip

    def mean_of(self, enc: str, cols: Sequence[str]) -> Estimate | None:
        found = [self.get(enc, c) for c in cols]
        return Estimate.mean([e for e in found if e is not None]) if all(e is not None for e in found) else None


def _all(outcomes) -> str:
    """A conjunction of outcomes: fails if any fails, inconclusive if any is, else holds."""
    outcomes = list(outcomes)
    return FAILS if FAILS in outcomes else INCONCLUSIVE if INCONCLUSIVE in outcomes else HOLDS


def _c1(c: _Ctx) -> list[Check]:
    return [
        c.best("deit", "in1k_linear"),
        c.best("deit", "in1k_attentive"),
        c.best("deit", "ade150_miou", exclude=("ibot",)),
    ]


def _c2(c: _Ctx) -> list[Check]:
    cl, mim = c.present(CL, "in1k_linear"), c.present(MIM, "in1k_linear")
    if not cl or not mim:
        return [Check("CL linear top-1 > MIM linear top-1", MISSING)]
    lo = min(cl, key=lambda e: c.get(e, "in1k_linear").value)
    hi = max(mim, key=lambda e: c.get(e, "in1k_linear").value)
    return [c.gt(lo, hi, "in1k_linear", label="ImageNet linear (weakest CL vs strongest MIM)")]


def _c3(c: _Ctx) -> list[Check]:
    lin, att = c.get("cae", "in1k_linear"), c.get("cae", "in1k_attentive")
    cl = [e for e in CL if c.get(e, "in1k_linear") is not None and c.get(e, "in1k_attentive") is not None]
    if lin is None or att is None or not cl:
        return [Check("CAE weak linear, competitive attentive", MISSING)]
    weak = min((c.get(e, "in1k_linear") for e in cl), key=lambda x: x.value)
    gains = [c.get(e, "in1k_attentive").minus(c.get(e, "in1k_linear")) for e in cl]
    best_gain = max(gains, key=lambda x: x.value)
    weakest_att = min((c.get(e, "in1k_attentive") for e in cl), key=lambda x: x.value)
    gain = att.minus(lin)
    return [
        Check(f"CAE linear {lin.text()} < every CL linear (min {weak.text()})", c.decide(weak, lin)),
        Check(
            f"CAE attentive gain {gain.text()} > every CL gain (max {best_gain.text()})",
            _all(c.decide(gain, g) for g in gains),
        ),
        Check(
            f"CAE attentive {att.text()} within {COMPETITIVE:g} of the weakest CL attentive {weakest_att.text()}",
            c.decide(att, weakest_att, -COMPETITIVE, or_equal=True),
        ),
    ]


_PRIMARY_COLS = (
    "in1k_linear",
    "in1k_attentive",
    "ade150_miou",
    "cub_ret_enc",
    "coco_ret_enc",
    "cub_cls_linear",
    "cub_cls_attentive",
    "coco_cls_linear",
    "coco_cls_attentive",
    "adepart_miou",
    "pascalpart_miou",
    "lip_miou",
)


def _bottom_range(c: _Ctx, enc: str, present: Sequence[str], col: str) -> tuple[int, int]:
    """The places from the bottom (1 = worst) the intervals allow ``enc``: nearest and farthest from it."""
    v = c.get(enc, col)
    others = [c.get(e, col) for e in present if e != enc]
    worse = sum(1 for o in others if decide(v, o, exact=c.exact) is True)
    better = sum(1 for o in others if decide(o, v, exact=c.exact) is True)
    return 1 + worse, len(present) - better


def _c4(c: _Ctx) -> list[Check]:
    checks = []
    for col in _PRIMARY_COLS:
        present = c.present(PAPER_ENCODERS, col)
        targets = [e for e in ("beit", "mae") if e in present]
        if len(present) < 3 or not targets:
            continue
        bottom_n = max(2, round(3 * len(present) / 7))
        for e in targets:
            near, far = _bottom_range(c, e, present, col)
            place = f"{near}." if near == far else f"{near}.–{far}."
            outcome = HOLDS if far <= bottom_n else FAILS if near > bottom_n else INCONCLUSIVE
            checks.append(Check(f"{c.name(e)} {place} worst of {len(present)} on {col} (needs ≤ {bottom_n}.)", outcome))
    return checks or [Check("BEiT and MAE near worst", MISSING)]


def _c5(c: _Ctx) -> list[Check]:
    return [c.gt(e, "deit", f"{ds}_ret_enc") for ds in ("cub", "coco") for e in ("mocov3", "dino", "cae", "ibot")]


def _c6(c: _Ctx) -> list[Check]:
    return [c.best("ibot", f"{ds}_ret_enc") for ds in ("cub", "coco")]


def _c7(c: _Ctx) -> list[Check]:
    out = []
    for ds in ("cub", "coco"):
        for e in CL:
            enc, proj = c.get(e, f"{ds}_ret_enc"), c.get(e, f"{ds}_ret_proj")
            if enc is None or proj is None:
                out.append(Check(f"{c.name(e)} projected << encoded on {ds}", MISSING))
            else:
                text = f"{c.name(e)} {ds} retrieval encoded {enc.text()} -> projected {proj.text()} (drop > {MUCH:g})"
                out.append(Check(text, c.decide(enc, proj, MUCH)))
    return out


def _c8(c: _Ctx) -> list[Check]:
    return [
        c.gt(e, "deit", f"{ds}_cls_{p}", margin=C8_MARGIN)
        for ds in ("cub", "coco")
        for p in ("linear", "attentive")
        for e in CL
    ]


def _c9(c: _Ctx) -> list[Check]:
    out = [c.gt("deit", e, col) for col in ("in1k_linear", "in1k_attentive", "ade150_miou") for e in ("cae", "mae")]
    for ds in ("cub", "coco"):
        for e in ("cae", "mae"):
            out.append(c.within(e, "deit", f"{ds}_cls_linear", COMPETITIVE))
            out.append(c.gt(e, "deit", f"{ds}_cls_attentive"))
    return out


def _c10(c: _Ctx) -> list[Check]:
    return [
        c.gt("dino", "deit", "adepart_miou"),
        c.gt("dino", "deit", "pascalpart_miou"),
        c.gt("mocov3", "deit", "lip_miou"),
        *(c.gt("cae", "deit", f"{ds}_miou") for ds in ("adepart", "pascalpart", "lip")),
    ]


def _c11(c: _Ctx) -> list[Check]:
    return [c.best("ibot", f"{ds}_miou") for ds in ("adepart", "pascalpart", "lip", "ade150")]


def _loses_generally(c: _Ctx, enc: str, col: str) -> Check:
    """At least ``GENERALLY`` of the other present encoders beat ``enc`` on ``col``."""
    v = c.get(enc, col)
    others = [e for e in c.present(PAPER_ENCODERS, col) if e != enc]
    if v is None or not others:
        return Check(f"{c.name(enc)} loses to most others on {col}", MISSING)
    outcomes = {e: c.decide(c.get(e, col), v) for e in others}
    need = GENERALLY * len(others)
    sure = [e for e, o in outcomes.items() if o == HOLDS]
    maybe = [e for e, o in outcomes.items() if o == INCONCLUSIVE]
    outcome = HOLDS if len(sure) >= need else FAILS if len(sure) + len(maybe) < need else INCONCLUSIVE
    names = ", ".join(f"{c.name(e)} {c.get(e, col).text()}" for e in sure) or "none"
    text = (f"{c.name(enc)} {v.text()} beaten by {len(sure)} of {len(others)} on {col} (needs ≥ {need:g}): {names}"
            + (f"; undecided: {', '.join(c.name(e) for e in maybe)}" if maybe else ""))  # fmt: skip
    return Check(text, outcome)


def _c12(c: _Ctx) -> list[Check]:
    out = []
    for obj_col, part_col in SAME_IMAGES:
        out.append(c.best("deit", obj_col, exclude=("ibot",)))
        out.append(_loses_generally(c, "deit", part_col))
    return out


def _level_mean_check(c: _Ctx, a: str, b: str, cols: Sequence[str], label: str, *, a_higher: bool) -> Check:
    """``a`` above (or below) ``b`` on the mean of one metric's columns that both have."""
    shared = [col for col in cols if c.get(a, col) is not None and c.get(b, col) is not None]
    relation = ">" if a_higher else "<"
    if not shared:
        return Check(f"{c.name(a)} {relation} {c.name(b)} on {label}", MISSING)
    va, vb = c.mean_of(a, shared), c.mean_of(b, shared)
    over = f"mean of {', '.join(shared)}" if len(shared) > 1 else shared[0]
    text = f"{c.name(a)} {va.text()} {relation} {c.name(b)} {vb.text()} on {label} ({over})"
    return Check(text, c.decide(va, vb) if a_higher else c.decide(vb, va))


def _c13(c: _Ctx) -> list[Check]:
    out = []
    for e in PURE_CL:
        out.append(_level_mean_check(c, "cae", e, ("in1k_linear",), "objects, ImageNet linear top-1", a_higher=False))
        out.append(_level_mean_check(c, "cae", e, OBJECT_SEG, "objects, segmentation mIoU", a_higher=False))
        out.append(_level_mean_check(c, "cae", e, PART_RETRIEVAL, "parts, retrieval AP", a_higher=True))
        out.append(_level_mean_check(c, "cae", e, PART_SEG, "parts, segmentation mIoU", a_higher=True))
    return out


_OBJECT_COLS = ("in1k_linear", "in1k_attentive", *OBJECT_SEG)
_PART_COLS = (*PART_RETRIEVAL, "cub_cls_linear", "cub_cls_attentive", "coco_cls_linear", "coco_cls_attentive",
              *PART_SEG)  # fmt: skip


def _rank_range(c: _Ctx, enc: str, col: str) -> tuple[int, int] | None:
    """The places from the top (1 = best) the intervals allow ``enc`` among the present paper encoders."""
    present = c.present(PAPER_ENCODERS, col)
    if enc not in present or len(present) < 3:
        return None
    near_bottom, far_bottom = _bottom_range(c, enc, present, col)
    return len(present) + 1 - far_bottom, len(present) + 1 - near_bottom


def _c14(c: _Ctx) -> list[Check]:
    """Operationalised as: MAE stands relatively better at part level (lower-level cues) than at object level
    among the paper's encoders (mean rank over each level's columns; ranks are unitless, so columns of
    different metrics may be averaged where scores may not)."""
    obj = [r for col in _OBJECT_COLS if (r := _rank_range(c, "mae", col)) is not None]
    part = [r for col in _PART_COLS if (r := _rank_range(c, "mae", col)) is not None]
    if not obj or not part:
        return [Check("MAE ranks better at part than at object level", MISSING)]
    ob, ow = statistics.fmean(r[0] for r in obj), statistics.fmean(r[1] for r in obj)
    pb, pw = statistics.fmean(r[0] for r in part), statistics.fmean(r[1] for r in part)
    shift = C14_RANK_SHIFT
    outcome = HOLDS if ob - pw > shift else FAILS if ow - pb <= shift else INCONCLUSIVE
    text = (f"MAE mean rank {_span(ob, ow)} at object level ({len(obj)} columns) vs {_span(pb, pw)} at part level "
            f"({len(part)} columns): part better by > {shift:g}")  # fmt: skip
    return [Check(text, outcome)]


def _span(best: float, worst: float) -> str:
    return f"{best:.2g}" if best == worst else f"{best:.2g}–{worst:.2g}"


_CI = "beyond the 95% intervals"
#: id -> (claim, where the paper shows it, tolerance, checker)
CLAIMS: dict[str, tuple[str, str, str, Callable[[_Ctx], list[Check]]]] = {
    "C1": (
        "The supervised model (DeiT) is best at object level; on ADE20K-150 it beats every SSL model but iBOT.",
        "Tables 1, 2",
        f"at least as good as every other encoder, {_CI}",
        _c1,
    ),
    "C2": (
        "CL models have much better linear ImageNet probing than MIM models.",
        "Table 1",
        f"weakest CL above strongest MIM, {_CI}",
        _c2,
    ),
    "C3": (
        "MIM (CAE) is weak under linear probing but competitive under attentive probing.",
        "Table 1",
        f"competitive = within {COMPETITIVE:g} points; gains as differences with their widest intervals; {_CI}",
        _c3,
    ),
    "C4": (
        "BEiT and MAE learn weaker semantics: worst or near worst in every table.",
        "Tables 1-4",
        f"near worst = among the bottom 3 of 7 (scaled to the encoders present); places {_CI}",
        _c4,
    ),
    "C5": (
        "In part retrieval every SSL model except BEiT and MAE beats DeiT.",
        "Table 3",
        f"strictly above, {_CI}",
        _c5,
    ),
    "C6": (
        "iBOT performs best at part retrieval.",
        "Table 3 (text and table disagree on CUB)",
        f"at least as good as every other encoder, {_CI}",
        _c6,
    ),
    "C7": (
        "Part-to-whole: CL projected features retrieve parts much worse than encoded ones.",
        "Table 3, Fig. 4",
        f"much = a drop of more than {MUCH:g} points, {_CI}",
        _c7,
    ),
    "C8": (
        "In part classification MoCo v3, DINO and iBOT beat DeiT by more than 2 points under both probes.",
        "Table 3",
        f"by more than {C8_MARGIN:g} points, {_CI}",
        _c8,
    ),
    "C9": (
        "CAE and MAE lag DeiT at object level but are competitive in linear and better in attentive part "
        "classification.",
        "Tables 1-3",
        f"competitive = within {COMPETITIVE:g} points; better = strictly above; {_CI}",
        _c9,
    ),
    "C10": (
        "Part segmentation: DINO beats DeiT on ADE20K-Part and Pascal-Part, MoCo v3 beats DeiT on LIP, CAE "
        "beats DeiT on all three.",
        "Table 4",
        f"strictly above, {_CI}",
        _c10,
    ),
    "C11": (
        "CL+MIM (iBOT) is best on all three part-segmentation datasets and on ADE20K-150.",
        "Tables 2, 4",
        f"at least as good as every other encoder, {_CI}",
        _c11,
    ),
    "C12": (
        "On the same images, DeiT wins at object granularity (except against iBOT) but generally loses at part "
        "granularity.",
        "Figure 6 / A.3: ADE20K-Object-59 vs ADE20K-Part, Pascal-Object-16 vs Pascal-Part",
        f"wins = at least as good as every other but iBOT; generally loses = beaten by at least "
        f"{GENERALLY:.0%} of the others; {_CI}",
        _c12,
    ),
    "C13": (
        "CAE, compared with CL (MoCo v3, DINO), is stronger on parts and weaker on objects.",
        "Figure 6, Tables 2-4: objects = ImageNet linear top-1 and object segmentation mIoU; parts = part "
        "retrieval AP and part segmentation mIoU (each metric on its own)",
        f"means over one metric's datasets, intervals = the mean of their ends; strictly above/below, {_CI}",
        _c13,
    ),
    "C14": (
        "TMLR only: MAE tends to encode lower-level cues.",
        "not retrieved; read here as: MAE ranks better among the paper's encoders at part level than at object level",
        f"mean part rank better than mean object rank by more than {C14_RANK_SHIFT:g}; ranks {_CI}",
        _c14,
    ),
}


def check_claims(values: Values, *, exact: bool = False) -> list[ClaimResult]:
    """C1-C14 on ``values`` (paper key -> paper column -> ``Estimate`` or number). A number without an interval
    makes its checks inconclusive unless ``exact`` (the paper's own numbers, which carry no interval)."""
    ctx = _Ctx(values, exact)
    return [ClaimResult(cid, text, where, tol, fn(ctx)) for cid, (text, where, tol, fn) in CLAIMS.items()]
