"""The report's content as a list of neutral blocks (headings, paragraphs, tables, images, preformatted text).

Why a layout step: Markdown, HTML and the terminal show the same report; they differ only in how a block is
drawn. Every number in a block comes from ``ReportData`` (computed from records), so the three never disagree.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import yaml

from partaware.report.build import ReportData
from partaware.report.claims import FAILS, HOLDS, PARTIAL
from partaware.report.claims import INCONCLUSIVE as CLAIM_INCONCLUSIVE
from partaware.report.estimates import estimate_of
from partaware.report.lab import shared_budget
from partaware.report.paper import PAPER_COLUMNS, PAPER_ENCODERS
from partaware.report.records import is_control
from partaware.report.tables import BASELINE_LABEL, FAMILY_LABEL, METRIC_LABEL, metric_label
from partaware.report.verdict import INCONCLUSIVE, decided_best

#: claim status -> cell style
CLAIM_STYLE = {HOLDS: "holds", FAILS: "fails", CLAIM_INCONCLUSIVE: "inconclusive", PARTIAL: "partial"}


@dataclass
class Heading:
    level: int
    text: str
    anchor: str = ""


@dataclass
class Para:
    text: str


@dataclass
class TableBlock:
    header: list[str]
    rows: list[list[str]]
    caption: str = ""
    #: (row, col) -> "best" | "holds" | "fails" | "inconclusive" | "partial" | "decided"
    styles: dict[tuple[int, int], str] = field(default_factory=dict)


@dataclass
class Image:
    name: str  # file name under figures/ (or galleries/)
    png: bytes
    caption: str
    folder: str = "figures"
    collapsible: bool = False  # HTML: inside a <details> (many search plots)


@dataclass
class Pre:
    text: str
    title: str = ""


Block = Heading | Para | TableBlock | Image | Pre


def fmt(x: float | None, digits: int = 1, sign: bool = False) -> str:
    if x is None:
        return "–"
    return f"{x:+.{digits}f}" if sign else f"{x:.{digits}f}"


VERDICT_HOW = (
    "How to read it. Each score column is one level and one metric (a metric is never averaged with another): "
    "the mean of the encoder's primary numbers (%) over the probes every encoder ran at that level (projected "
    "features excluded), with its 95% bootstrap interval [low, high] (the interval of a mean over probes is the "
    "mean of their ends, which is never narrower than the truth). An encoder ranks above another only when its "
    "interval lies wholly above the other's, so a rank reads as a range (1–3) where intervals overlap; a level's "
    "rank is the mean over its metrics. Leaning: **part-aware** when the worst part rank the intervals allow is "
    "better than the best object rank they allow, **object-aware** the reverse, **balanced** when both ranks are "
    "decided and equal, otherwise **inconclusive** (also when a score has no interval); the last column gives "
    "the numbers behind it. *Above chance* is each level's score minus that level's own chance (majority class "
    "for segmentation), in points of one metric: part-level chance is usually higher (fewer classes), so the raw "
    "part − object gap overstates part-awareness."
)


def _rank_text(r) -> str:
    return "–" if r is None else r.text()


def _gap_metrics(d: ReportData) -> list[str]:
    return list(dict.fromkeys(g.metric for v in d.verdicts for g in v.chance_gaps))


def _gap_cell(v, metric: str) -> str:
    gap = next((g for g in v.chance_gaps if g.metric == metric), None)
    if gap is None:
        return "–"
    return f"{gap.gap:+.1f} (part {gap.part_above:+.1f}, object {gap.object_above:+.1f} above {gap.reference})"


def _verdict_table(d: ReportData) -> TableBlock:
    gaps = _gap_metrics(d)
    header = ["family", "encoder"]
    for g in d.groups:
        header += [f"{g.label} % [95% CI]", f"{g.label} rank"]
    level_ranks = any(sum(g.level == lv for g in d.groups) > 1 for lv in ("object", "part"))
    if level_ranks:
        header += ["object rank", "part rank"]
    header += [f"{METRIC_LABEL.get(m, m)} above chance: part − object" for m in gaps]
    header += ["leaning", "why"]
    rows, styles = [], {}
    last_family = None
    for v in d.verdicts:
        fam = v.family_label if v.family != last_family else ""
        last_family = v.family
        row = [fam, v.encoder + (" (random weights)" if v.random_weights else "")]
        for g in d.groups:
            score = v.scores.get(g.key)
            row += [score.text() if score else "–", _rank_text(v.ranks.get(g.key))]
        if level_ranks:
            row += [_rank_text(v.object_rank), _rank_text(v.part_rank)]
        row += [_gap_cell(v, m) for m in gaps]
        row += [v.leaning, v.reason]
        rows.append(row)
        for j, g in enumerate(d.groups):
            r = v.ranks.get(g.key)
            if r is not None and r.worst == 1 and len(d.verdicts) > 1:
                styles[(len(rows) - 1, 3 + 2 * j)] = "best"
        styles[(len(rows) - 1, len(header) - 2)] = "inconclusive" if v.leaning == INCONCLUSIVE else "decided"
    return TableBlock(header, rows, styles=styles)


def _baseline_rows(d: ReportData) -> TableBlock | None:
    """The controls and the baselines in the verdict's columns: what each score is read against."""
    keys = [k for k in BASELINE_LABEL if any(k in g.baselines for g in d.groups)]
    if not d.groups or not (keys or d.controls):
        return None
    rows = []
    for k in keys:
        rows.append(["baseline", BASELINE_LABEL[k], *[fmt(g.baselines.get(k)) for g in d.groups]])
    for v in d.controls:
        name = f"{v.encoder} (random-init. control of {v.control_of or 'its architecture'}; not ranked)"
        rows.append(["control", name, *[(v.scores[g.key].text() if g.key in v.scores else "–") for g in d.groups]])
    return TableBlock(
        ["kind", "row", *[f"{g.label} %" for g in d.groups]],
        rows,
        caption="Baselines on the same splits and probes as the scores above (means over the same probes); "
        "controls: the same architecture with random weights, added by the job, never ranked nor given a leaning.",
    )


def _verdict_summary(d: ReportData) -> Para:
    parts = []
    for level in ("object", "part"):
        best = decided_best(d.verdicts, level)
        if best is not None:
            parts.append(f"Best at {level} level beyond the intervals: **{best.encoder}**.")
        else:
            tied = [v.encoder for v in d.verdicts if (r := v.level_rank(level)) is not None and r.best == 1]
            if tied:
                parts.append(f"No encoder is first at {level} level beyond the intervals ({', '.join(tied)} may be).")
    counts = {}
    for v in d.verdicts:
        counts[v.leaning] = counts.get(v.leaning, 0) + 1
    parts.append("Leanings: " + ", ".join(f"{n} {k}" for k, n in counts.items()) + ".")
    return Para(" ".join(parts))


def _family_table(d: ReportData) -> TableBlock:
    rows = []
    for f in d.families:
        cells = []
        for g in d.groups:
            est, spread = f.scores.get(g.key), f.spread.get(g.key)
            cells.append("–" if est is None else est.text() + (f" ± {spread:.1f}" if spread is not None else ""))
        rows.append([f.label, ", ".join(f.encoders), *cells])
    return TableBlock(
        ["family", "encoders", *[f"{g.label} %" for g in d.groups]],
        rows,
        caption="Per family: mean over its encoders [mean of their 95% interval ends] ± spread (std) over them.",
    )


def _same_images_blocks(d: ReportData) -> list[Block]:
    if not d.same_images:
        return []
    order = [v.encoder for v in [*d.verdicts, *d.controls]]
    encs = [e for e in order if any(e in p.values for p in d.same_images)]
    rows = []
    for enc in encs:
        cells = []
        for p in d.same_images:
            o, pt = p.values.get(enc, (None, None))
            cells.append("–" if o is None else f"{o.text()} / {pt.text()}")
        label = enc + (" (control)" if any(enc in p.controls for p in d.same_images) else "")
        rows.append([label, *cells])
    rows.append(["chance (object / part)", *[f"{fmt(p.chance[0])} / {fmt(p.chance[1])}" for p in d.same_images]])
    datasets = sorted({n.strip().lower() for p in d.same_images for n in p.label.split(" · ", 1)[0].split(" / ")})
    paper = {"ade20k-object", "ade20k-part", "pascal-object", "pascal-part"}
    where = "paper Figure 6" if set(datasets) <= paper else f"same protocol as paper Figure 6, on {', '.join(datasets)}"
    return [
        Heading(3, f"Same images, object vs part granularity ({where})", "same-images"),
        TableBlock(
            ["encoder", *[p.label for p in d.same_images]],
            rows,
            caption="object / part score [95% interval], the same images probed at both levels; read each "
            "against its own level's chance (last row)",
        ),
    ]


def _verdict_blocks(d: ReportData) -> list[Block]:
    out: list[Block] = [Heading(2, "Verdict: object-aware or part-aware?", "verdict")]
    if not d.verdicts and not d.controls:
        return [*out, Para("No results.")]
    out.append(Para(VERDICT_HOW))
    if d.verdicts:
        out.append(_verdict_table(d))
        out.append(_verdict_summary(d))
    baselines = _baseline_rows(d)
    if baselines is not None:
        out.append(baselines)
    out.append(_family_table(d))
    out.extend(_same_images_blocks(d))
    for name, caption in (
        ("same_images.png", "The same images probed at object and at part granularity (as in the paper's Figure "
         "6), with 95% intervals and each level's chance."),
        ("object_vs_part.png", "Level scores per encoder, one panel per level and metric: error bars = 95% "
         "interval, lines = chance / majority / random-feature baselines, hatched = control."),
        ("family_bars.png", "Per family, one panel per level and metric: mean score, error bar = mean of the "
         "members' 95% interval ends, lines = baselines."),
    ):  # fmt: skip
        if name in d.figures:
            out.append(Image(name, d.figures[name], caption))
    return out


def _units(t) -> str:
    return ", ".join(t.ci_units) or "test items"


def _table_blocks(d: ReportData) -> list[Block]:
    out: list[Block] = [Heading(2, "Results by task", "tables")]
    if not d.tables:
        out.append(Para("No probe results."))
    for t in d.tables:
        out.append(Heading(3, t.title, t.id))
        rows, styles = [], {}
        for i, (enc, fam) in enumerate(t.rows):
            control = enc in t.controls
            name = f"{enc} (control of {t.controls[enc]})" if control and t.controls[enc] else enc
            row = [name, "control" if control else FAMILY_LABEL.get(fam, fam)]
            for j, col in enumerate(t.columns):
                cell = t.cell(enc, col)
                row.append(cell.text() if cell else "–")
                if cell and not control and t.decided_best(col) == enc:
                    styles[(i, j + 2)] = "best"
            rows.append(row)
        for key, by_col in t.baselines.items():
            rows.append([BASELINE_LABEL.get(key, key), "baseline", *[by_col.get(c, "–") for c in t.columns]])
        missing = "" if t.all_intervals else " Cells without [ ] have no interval (records written before intervals)."
        out.append(
            TableBlock(
                ["encoder", "family", *[c.label for c in t.columns]],
                rows,
                caption=f"{t.note} · mean ± std over seeds where several, [95% bootstrap interval of the test score "
                f"over {_units(t)}] · bold: best beyond the intervals (controls and baselines excluded) · baseline "
                f"rows: the same metric on the same split.{missing}",
                styles=styles,
            )
        )
    return out


def _paper_blocks(d: ReportData) -> list[Block]:
    if not d.paper_rows and d.claims is None:
        return []
    out: list[Block] = [Heading(2, "Against the paper", "paper")]
    mapping = ", ".join(f"{enc} = {PAPER_ENCODERS[k][0]}" for enc, k in d.paper_ids.items())
    out.append(
        Para(
            f"Encoders matched to the paper's: {mapping or 'none'}. Reference numbers: ICLR-2023 text of "
            "Zhu et al. (protocol §4)."
        )
    )
    for table_name in sorted({PAPER_COLUMNS[r.column][0] for r in d.paper_rows}):
        rows_here = [r for r in d.paper_rows if PAPER_COLUMNS[r.column][0] == table_name]
        cols = [c for c in PAPER_COLUMNS if any(r.column == c for r in rows_here)]
        by_cell = {(r.paper_key, r.column): r for r in rows_here}
        rows = []
        for key in PAPER_ENCODERS:
            if not any(k == key for k, _ in by_cell):
                continue
            cells = []
            for c in cols:
                r = by_cell.get((key, c))
                cells.append(f"{r.ours_estimate.text()} ({fmt(r.paper)}, {fmt(r.delta, sign=True)})" if r else "–")
            enc = next(r.encoder for r in rows_here if r.paper_key == key)
            rows.append([PAPER_ENCODERS[key][0], enc, *cells])
        out.append(Heading(3, f"Paper {table_name}"))
        out.append(
            TableBlock(
                ["paper name", "encoder", *[PAPER_COLUMNS[c][1] for c in cols]],
                rows,
                caption="this run [95% interval] (paper, Δ = this run − paper)",
            )
        )
    if d.claims is not None:
        out.append(Heading(3, "The paper's claims on this run's numbers", "claims"))
        rows, styles = [], {}
        for i, c in enumerate(d.claims):
            rows.append([c.id, c.claim, c.status, c.tolerance, c.detail])
            if c.status in CLAIM_STYLE:
                styles[(i, 2)] = CLAIM_STYLE[c.status]
        out.append(
            TableBlock(
                ["#", "claim", "status", "tolerance", "evidence (computed)"],
                rows,
                styles=styles,
                caption="Computed from this run's numbers and their 95% intervals. A check holds when it survives "
                "the intervals, fails when not even their most favourable ends give it, and is inconclusive "
                "otherwise (or without an interval). A claim fails if any check fails, else is inconclusive if any "
                "check is, else is partial when some checks lacked numbers, else holds.",
            )
        )
    return out


def _search_blocks(d: ReportData) -> list[Block]:
    searched = [s for s in d.searches if s.record.trials or s.record.trial_results or s.record.search_space]
    if not searched:
        return []
    out: list[Block] = [Heading(2, "Hyperparameter searches", "searches")]
    rows = []
    for s in searched:
        r = s.record
        space = "; ".join(f"{k}: {_space_text(v)}" for k, v in r.search_space.items()) or "–"
        best = ", ".join(f"{k}={_num(v)}" for k, v in sorted(r.best_config.items())) or "–"
        rows.append(
            [
                r.encoder,
                r.level,
                r.task,
                r.dataset,
                r.feature,
                space,
                str(r.trials or len(r.trial_results)),
                str(r.trials_stopped_early),
                best,
                estimate_of(r).text(),
                f"{r.wall_seconds:.0f}",
                f"{r.cpu_hours:.3f}",
                f"{r.gpu_hours:.3f}",
            ]
        )
    out.append(
        TableBlock(
            [
                "encoder",
                "level",
                "task",
                "dataset",
                "feature",
                "search space",
                "trials",
                "stopped early",
                "chosen config",
                "test score % [95% CI]",
                "wall s",
                "CPU h",
                "GPU h",
            ],
            rows,
        )
    )
    recs = [s.record for s in searched]
    out.append(
        Para(
            f"{sum(r.trials or len(r.trial_results) for r in recs)} trials in all, "
            f"{sum(r.trials_stopped_early for r in recs)} stopped early by ASHA; wall time "
            f"{sum(r.wall_seconds for r in recs) / 60:.1f} min, {sum(r.cpu_hours for r in recs):.2f} CPU hours, "
            f"{sum(r.gpu_hours for r in recs):.2f} GPU hours."
        )
    )
    for s in searched:
        if s.figure:
            r = s.record
            out.append(
                Image(
                    s.figure,
                    d.figures[s.figure],
                    f"{r.encoder} · {r.level} · {r.task} · {r.dataset} · {r.feature}: "
                    f"validation {metric_label(r.metric)} per trial (the tables show the test score); crosses = "
                    "stopped early by ASHA, star = chosen",
                    collapsible=True,
                )
            )
    return out


def _space_text(v) -> str:
    if isinstance(v, dict):
        if "low" in v and "high" in v:
            return f"{v.get('type', '')}[{_num(v['low'])}, {_num(v['high'])}]"
        if "values" in v:
            return f"{v.get('type', 'choice')}{v['values']}"
    return str(v)


def _num(v) -> str:
    return f"{v:.3g}" if isinstance(v, float) else str(v)


def _gallery_blocks(d: ReportData) -> list[Block]:
    if not d.galleries:
        return []
    out: list[Block] = [
        Heading(2, "Galleries", "galleries"),
        Para(
            "Top-K patches by cosine similarity for each query (query excluded); green frame = same "
            "part label as the query, red = other."
        ),
    ]
    for g in d.galleries:
        out.append(Image(f"{g.name}.png", g.png, f"gallery {g.name}", folder="galleries"))
        if g.summary:
            keys = sorted((k for k in g.summary[0] if k not in ("encoder", "feature")), key=_stat_order)
            rows = [[s.get("encoder", ""), s.get("feature", ""), *[_cell(s.get(k)) for k in keys]] for s in g.summary]
            out.append(
                TableBlock(
                    ["encoder", "feature", *keys],
                    rows,
                    caption="mean cosine similarity of the top-k neighbours; same-part fraction of "
                    "the neighbours shown",
                )
            )
    return out


def _stat_order(key: str) -> tuple:
    digits = "".join(ch for ch in key if ch.isdigit())
    return (key.startswith("same"), int(digits) if digits else 0, key)


def _cell(v) -> str:
    return f"{v:.3f}" if isinstance(v, float) else str(v)


def _delta_text(r) -> str:
    if r.not_comparable:
        return "not comparable"
    if r.delta is None:
        return "–"
    return fmt(r.delta, sign=True) + (" (within the intervals)" if r.within_noise else "")


def _compare_blocks(d: ReportData) -> list[Block]:
    c = d.comparison
    if c is None:
        return []
    out: list[Block] = [Heading(2, f"Comparison: {c.run_a} vs {c.run_b}", "compare")]
    if c.only_a or c.only_b:
        out.append(
            Para(
                f"Datasets only in {c.run_a}: {', '.join(c.only_a) or 'none'}; only in {c.run_b}: "
                f"{', '.join(c.only_b) or 'none'}. Their probes have one number each and are not compared."
            )
        )
    if c.not_comparable:
        out.append(
            Para(
                f"{len(c.not_comparable)} probe(s) both runs scored are **not comparable** (different dataset "
                "version or protocol): no difference is shown for them and the joint ranking leaves them out."
            )
        )
        out.append(
            TableBlock(
                ["not comparable", "why"],
                [[col.label + f" ({col.level})", why] for col, why in c.not_comparable.items()],
            )
        )
    rows = [
        [
            v.encoder,
            FAMILY_LABEL.get(v.family, v.family),
            _rank_text(v.object_rank),
            _rank_text(v.part_rank),
            v.leaning,
        ]
        for v in c.verdict_joint
    ]
    out.append(
        TableBlock(
            ["encoder", "family", "object rank", "part rank", "leaning"],
            rows,
            caption="Both runs ranked together on their comparable probes (where both ran a probe, the second "
            "run's number); ranks and leanings follow the verdict's rules.",
        )
    )
    rows = [
        [
            r.encoder,
            r.column.level,
            r.column.label,
            r.a.text() if r.a else "–",
            r.b.text() if r.b else "–",
            _delta_text(r),
        ]
        for r in c.rows
    ]
    out.append(TableBlock(["encoder", "level", "probe", c.run_a, c.run_b, "Δ"], rows))
    return out


def _lab_blocks(d: ReportData) -> list[Block]:
    """The lab encoders' pretraining: one shared budget, then time, images and loss per objective."""
    if not d.lab:
        return []
    budget = shared_budget(d.lab)
    keys = sorted({r["budget_digest"] for r in d.lab})
    presets = {r["budget_digest"]: r["budget"].get("preset") or "hand-set" for r in d.lab}
    out: list[Block] = [
        Heading(3, "Lab pretraining", "lab"),
        Para(
            f"{len(d.lab)} lab encoders, pretrained by the platform under "
            f"{'one budget' if len(keys) == 1 else f'{len(keys)} budgets'} "
            f"({', '.join(f'{k}: {presets[k]}' for k in keys)}): within a budget, the same backbone, "
            "images, steps x batch and optimiser for every objective. `lab/<objective>` was trained live (in this "
            "run or an earlier one, on this storage root); `lab-release/<objective>` is the released lab zoo "
            "shipped in the package, trained once by the command shown, on its own pretraining images. "
            "Recipe is the objective's recipe version (its views and settings, revised apart from the budget; "
            "– where the weights predate the record). Images seen count images, as the papers count epochs; views "
            "per image shows the compute each method spends on one."
        ),
    ]
    rows = [
        [
            r["encoder"],
            FAMILY_LABEL.get(r["family"], r["family"]),
            str(r["recipe_version"] or "–"),
            str(r["images_seen"] or "–"),
            fmt(r["views_per_image"], 2),
            fmt(r["seconds"], 0),
            f"{fmt(r['loss_first'], 3)} → {fmt(r['loss_last'], 3)}",
            f"{r['curve_name']}: {fmt(r['curve'][0], 3)} → {fmt(r['curve'][-1], 3)}"
            if r["curve"] and r["curve_name"] != "loss"
            else "the loss",
            r["device"] or "–",
            f"released: `{r['released']}`" if r.get("released") else "cached" if r["cached"] else "trained in this run",
        ]
        for r in d.lab
    ]
    header = ["encoder", "family", "recipe", "images seen", "views/image", "seconds", "loss first → last"]
    out.append(TableBlock([*header, "learning curve", "device", "weights"], rows))
    if "lab_pretraining.png" in d.figures:
        out.append(Image("lab_pretraining.png", d.figures["lab_pretraining.png"], "Lab pretraining curves."))
    if len(keys) == 1 and budget:
        out.append(Pre(yaml.safe_dump(budget, sort_keys=False, width=110), "lab budget"))
    else:
        for key in keys:
            one = next(r["budget"] for r in d.lab if r["budget_digest"] == key)
            out.append(Pre(yaml.safe_dump(one, sort_keys=False, width=110), f"lab budget {key} ({presets[key]})"))
    return out


def _provenance_blocks(d: ReportData) -> list[Block]:
    out: list[Block] = [Heading(2, "Provenance", "provenance"), *_lab_blocks(d)]
    for key, value in d.provenance.items():
        if isinstance(value, str):
            out.append(Pre(value, key))
        elif isinstance(value, dict) and all(not isinstance(v, dict | list) for v in value.values()):
            out.append(TableBlock([key, ""], [[str(k), str(v)] for k, v in value.items()]))
        else:
            text = yaml.safe_dump(json.loads(json.dumps(value, default=str)), sort_keys=False, width=110)
            out.append(Pre(text, key))
    return out


def report_blocks(d: ReportData) -> list[Block]:
    n_enc = len({r.encoder for r in d.records})
    n_controls = len({r.encoder for r in d.records if is_control(r)})
    intro = Para(
        f"Run `{d.run_id}`: {len(d.records)} probe results, {n_enc - n_controls} encoders"
        + (f" and {n_controls} random-initialisation control(s)" if n_controls else "")
        + f", datasets {', '.join(sorted({r.dataset for r in d.records})) or '–'}, levels "
        f"{', '.join(sorted({r.level for r in d.records})) or '–'}, tasks "
        f"{', '.join(sorted({r.task for r in d.records})) or '–'}. Every score carries its 95% bootstrap interval "
        "[low, high] (and ± std over seeds where several); the baselines of the same split and the controls sit "
        "beside it."
    )
    return [
        Heading(1, f"partaware report · {d.run_id}", "top"),
        intro,
        *_verdict_blocks(d),
        *_table_blocks(d),
        *_paper_blocks(d),
        *_search_blocks(d),
        *_gallery_blocks(d),
        *_compare_blocks(d),
        *_provenance_blocks(d),
    ]
