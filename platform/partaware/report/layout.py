"""The report's content as a list of neutral blocks (headings, paragraphs, tables, images, preformatted text).

Why a layout step: Markdown, HTML and the terminal show the same report; they differ only in how a block is
drawn. Every number in a block comes from ``ReportData`` (computed from records), so the three never disagree.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import yaml

from partaware.report.build import ReportData
from partaware.report.claims import FAILS, HOLDS
from partaware.report.lab import shared_budget
from partaware.report.paper import PAPER_COLUMNS, PAPER_ENCODERS
from partaware.report.tables import FAMILY_LABEL


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
    styles: dict[tuple[int, int], str] = field(default_factory=dict)  # (row, col) -> "best" | "holds" | "fails"


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


def _verdict_blocks(d: ReportData) -> list[Block]:
    out: list[Block] = [Heading(2, "Verdict: object-aware or part-aware?", "verdict")]
    if not d.verdicts:
        return [*out, Para("No results.")]
    out.append(
        Para(
            "Score = mean primary metric (%) over the probes every encoder ran at that level (projected features "
            "excluded). Rank 1 = best. Rank shift = object rank − part rank: positive means the encoder ranks "
            "better on parts than on objects (part-aware), negative means object-aware."
        )
    )
    rows, styles = [], {}
    last_family = None
    for v in d.verdicts:
        fam = v.family_label if v.family != last_family else ""
        last_family = v.family
        name = v.encoder + (" (random weights)" if v.random_weights else "")
        rows.append(
            [
                fam,
                name,
                fmt(v.object_score),
                str(v.object_rank or "–"),
                fmt(v.part_score),
                str(v.part_rank or "–"),
                fmt(v.gap, sign=True),
                f"{v.rank_shift:+d}" if v.rank_shift is not None else "–",
                v.leaning,
            ]
        )
        if v.object_rank == 1:
            styles[(len(rows) - 1, 3)] = "best"
        if v.part_rank == 1:
            styles[(len(rows) - 1, 5)] = "best"
    out.append(
        TableBlock(
            [
                "family",
                "encoder",
                "object score",
                "object rank",
                "part score",
                "part rank",
                "gap (part−obj)",
                "rank shift",
                "leaning",
            ],
            rows,
            styles=styles,
        )
    )
    ranked = [v for v in d.verdicts if v.rank_shift is not None]
    if ranked:
        most_part = max(ranked, key=lambda v: (v.rank_shift, v.part_score or 0))
        most_obj = min(ranked, key=lambda v: (v.rank_shift, -(v.object_score or 0)))
        best_obj = min(ranked, key=lambda v: v.object_rank)
        best_part = min(ranked, key=lambda v: v.part_rank)
        out.append(
            Para(
                f"Best at object level: **{best_obj.encoder}** ({fmt(best_obj.object_score)}); best at part level: "
                f"**{best_part.encoder}** ({fmt(best_part.part_score)}). Most part-leaning: {most_part.encoder} "
                f"(rank shift {most_part.rank_shift:+d}); most object-leaning: {most_obj.encoder} "
                f"(rank shift {most_obj.rank_shift:+d})."
            )
        )
    fam_rows = [
        [
            f["label"],
            ", ".join(f["encoders"]),
            fmt(f["object"]),
            fmt(f["object_std"]),
            fmt(f["part"]),
            fmt(f["part_std"]),
        ]
        for f in d.families
    ]
    out.append(
        TableBlock(
            ["family", "encoders", "object (mean)", "± std", "part (mean)", "± std"],
            fam_rows,
            caption="Per family: mean over its encoders.",
        )
    )
    if d.same_images:
        encs = [v.encoder for v in d.verdicts if any(v.encoder in p.values for p in d.same_images)]
        rows = []
        for enc in encs:
            cells = []
            for p in d.same_images:
                o, pt = p.values.get(enc, (None, None))
                cells.append("–" if o is None else f"{fmt(o)} / {fmt(pt)} ({fmt(pt - o, sign=True)})")
            rows.append([enc, *cells])
        out.append(Heading(3, "Same images, object vs part granularity (paper Figure 6)", "same-images"))
        out.append(
            TableBlock(
                ["encoder", *[p.label for p in d.same_images]],
                rows,
                caption="object / part (part − object), the same images probed at both levels",
            )
        )
    for name, caption in (
        ("same_images.png", "Figure 6: the same images probed at object and at part granularity."),
        ("object_vs_part.png", "Figure-6 style: object- vs part-level score per encoder, and rank at each level."),
        ("family_bars.png", "Object and part score per family (error bar: std over the family's encoders)."),
    ):
        if name in d.figures:
            out.append(Image(name, d.figures[name], caption))
    return out


def _table_blocks(d: ReportData) -> list[Block]:
    out: list[Block] = [Heading(2, "Results by task", "tables")]
    if not d.tables:
        out.append(Para("No probe results."))
    for t in d.tables:
        out.append(Heading(3, t.title, t.id))
        rows, styles = [], {}
        for i, (enc, fam) in enumerate(t.rows):
            row = [enc, FAMILY_LABEL.get(fam, fam)]
            for j, col in enumerate(t.columns):
                cell = t.cell(enc, col)
                row.append(cell.text() if cell else "–")
                if cell and len(t.rows) > 1 and cell.value == t.best(col):
                    styles[(i, j + 2)] = "best"
            rows.append(row)
        out.append(
            TableBlock(
                ["encoder", "family", *[c.label for c in t.columns]],
                rows,
                caption=t.note + " · mean ± std over seeds where several; best in bold",
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
                cells.append(f"{fmt(r.ours)} ({fmt(r.paper)}, {fmt(r.delta, sign=True)})" if r else "–")
            enc = next(r.encoder for r in rows_here if r.paper_key == key)
            rows.append([PAPER_ENCODERS[key][0], enc, *cells])
        out.append(Heading(3, f"Paper {table_name}"))
        out.append(
            TableBlock(
                ["paper name", "encoder", *[PAPER_COLUMNS[c][1] for c in cols]],
                rows,
                caption="this run (paper, Δ = this run − paper)",
            )
        )
    if d.claims is not None:
        out.append(Heading(3, "The paper's claims on this run's numbers", "claims"))
        rows, styles = [], {}
        for i, c in enumerate(d.claims):
            rows.append([c.id, c.claim, c.status, c.detail])
            if c.status in (HOLDS, FAILS):
                styles[(i, 2)] = "holds" if c.status == HOLDS else "fails"
        out.append(
            TableBlock(
                ["#", "claim", "status", "evidence (computed)"],
                rows,
                styles=styles,
                caption="Computed from this run's numbers; a claim holds when every check that could run holds.",
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
                fmt(r.value),
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
                "metric",
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
                    f"{r.metric} per trial; crosses = stopped early by ASHA, star = chosen",
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


def _compare_blocks(d: ReportData) -> list[Block]:
    c = d.comparison
    if c is None:
        return []
    out: list[Block] = [Heading(2, f"Comparison: {c.run_a} vs {c.run_b}", "compare")]
    rows = [
        [
            v.encoder,
            FAMILY_LABEL.get(v.family, v.family),
            fmt(v.object_score),
            str(v.object_rank or "–"),
            fmt(v.part_score),
            str(v.part_rank or "–"),
            v.leaning,
        ]
        for v in c.verdict_joint
    ]
    out.append(
        TableBlock(
            ["encoder", "family", "object score", "object rank", "part score", "part rank", "leaning"],
            rows,
            caption="Both runs ranked together (where both ran a probe, the second run's number).",
        )
    )
    rows = [[r.encoder, r.column.level, r.column.label, fmt(r.a), fmt(r.b), fmt(r.delta, sign=True)] for r in c.rows]
    out.append(TableBlock(["encoder", "level", "probe", c.run_a, c.run_b, "Δ"], rows))
    return out


def _lab_blocks(d: ReportData) -> list[Block]:
    """The lab encoders' pretraining: one shared budget, then time, images and loss per objective."""
    if not d.lab:
        return []
    budget = shared_budget(d.lab)
    keys = sorted({r["budget_key"] for r in d.lab})
    out: list[Block] = [
        Heading(3, "Lab pretraining", "lab"),
        Para(
            f"{len(d.lab)} lab encoders, pretrained by the platform under "
            f"{'one budget' if len(keys) == 1 else f'{len(keys)} budgets'} ({', '.join(keys)}): the same backbone, "
            "images, steps x batch and optimiser for every objective. Images seen count images, as the papers "
            "count epochs; views per image shows the compute each method spends on one."
        ),
    ]
    rows = [
        [
            r["encoder"],
            FAMILY_LABEL.get(r["family"], r["family"]),
            str(r["images_seen"] or "–"),
            fmt(r["views_per_image"], 2),
            fmt(r["seconds"], 0),
            f"{fmt(r['loss_first'], 3)} → {fmt(r['loss_last'], 3)}",
            f"{r['curve_name']}: {fmt(r['curve'][0], 3)} → {fmt(r['curve'][-1], 3)}"
            if r["curve"] and r["curve_name"] != "loss"
            else "the loss",
            r["device"] or "–",
            "cached" if r["cached"] else "trained in this run",
        ]
        for r in d.lab
    ]
    header = ["encoder", "family", "images seen", "views/image", "seconds", "loss first → last", "learning curve"]
    out.append(TableBlock([*header, "device", "weights"], rows))
    if "lab_pretraining.png" in d.figures:
        out.append(Image("lab_pretraining.png", d.figures["lab_pretraining.png"], "Lab pretraining curves."))
    if budget:
        out.append(Pre(yaml.safe_dump(budget, sort_keys=False, width=110), "lab budget"))
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
    intro = Para(
        f"Run `{d.run_id}`: {len(d.records)} probe results, {n_enc} encoders, datasets "
        f"{', '.join(sorted({r.dataset for r in d.records})) or '–'}, levels "
        f"{', '.join(sorted({r.level for r in d.records})) or '–'}, tasks "
        f"{', '.join(sorted({r.task for r in d.records})) or '–'}."
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
