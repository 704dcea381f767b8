"""The report's figures, drawn with matplotlib's Agg backend (no display) and returned as PNG bytes.

- ``object_vs_part``: Figure-6 style; per encoder, the object-level and part-level score side by side, and the
  rank at each level joined by a line (a line going up = relatively part-aware);
- ``family_bars``: per family, the mean object and part score with the spread over its encoders;
- ``search_plot``: one hyperparameter search: the metric of every trial against each searched axis
  (learning rate on a log scale), trials stopped early by ASHA drawn as crosses, the chosen trial as a star;
- ``lab_curves``: the lab encoders' pretraining curves, one panel per objective (losses differ in kind
  and scale across objectives, so they share no axis).
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from partaware.report.verdict import EncoderVerdict  # noqa: E402
from partaware.results import ResultRecord  # noqa: E402

FAMILY_COLOURS = {"supervised": "#4C72B0", "contrastive": "#DD8452", "mim": "#55A868", "contrastive+mim": "#8172B3"}
LEVEL_COLOURS = {"object": "#4C72B0", "part": "#C44E52"}


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def _short(name: str, n: int = 30) -> str:
    return name if len(name) <= n else name[: n - 1] + "…"


def object_vs_part(verdicts: Sequence[EncoderVerdict]) -> bytes:
    both = [v for v in verdicts if v.object_score is not None or v.part_score is not None]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(max(8, 1.3 * len(both) + 5), 4.6), width_ratios=[2, 1])
    xs = range(len(both))
    w = 0.38
    for offset, level in ((-w / 2, "object"), (w / 2, "part")):
        vals = [getattr(v, f"{level}_score") for v in both]
        ax1.bar(
            [x + offset for x in xs],
            [0 if s is None else s for s in vals],
            w,
            label=f"{level} level",
            color=LEVEL_COLOURS[level],
        )
        for x, s in zip(xs, vals, strict=True):
            if s is not None:
                ax1.text(x + offset, s, f"{s:.1f}", ha="center", va="bottom", fontsize=7)
    ax1.set_xticks(list(xs), [_short(v.encoder) for v in both], rotation=30, ha="right", fontsize=8)
    for tick, v in zip(ax1.get_xticklabels(), both, strict=True):
        tick.set_color(FAMILY_COLOURS.get(v.family, "black"))
    ax1.set_ylabel("mean primary metric (%)")
    ax1.set_title("Object- vs part-level score per encoder")
    ax1.legend(fontsize=8)
    ranked = [v for v in both if v.object_rank is not None and v.part_rank is not None]
    for v in ranked:
        colour = FAMILY_COLOURS.get(v.family, "grey")
        ax2.plot([0, 1], [v.object_rank, v.part_rank], "-o", color=colour)
        ax2.text(1.05, v.part_rank, _short(v.encoder, 30), va="center", fontsize=7, color=colour)
    n = max([len(ranked), 1])
    ax2.set_ylim(n + 0.5, 0.5)
    ax2.set_yticks(range(1, n + 1))
    ax2.set_xlim(-0.2, 2.6)
    ax2.set_xticks([0, 1], ["object rank", "part rank"])
    ax2.set_ylabel("rank (1 = best)")
    ax2.set_title("Rank shift (up = part-aware)")
    handles = [
        plt.Line2D([], [], color=c, marker="o", label=f)
        for f, c in FAMILY_COLOURS.items()
        if any(v.family == f for v in both)
    ]
    if handles:
        ax2.legend(handles=handles, fontsize=7, loc="lower left")
    return _png(fig)


def family_bars(summary: Sequence[dict]) -> bytes:
    fig, ax = plt.subplots(figsize=(max(5, 1.6 * len(summary) + 2), 4))
    w = 0.38
    for offset, level in ((-w / 2, "object"), (w / 2, "part")):
        vals = [row.get(level) for row in summary]
        errs = [row.get(f"{level}_std") or 0 for row in summary]
        ax.bar(
            [i + offset for i in range(len(summary))],
            [0 if v is None else v for v in vals],
            w,
            yerr=errs,
            capsize=3,
            label=f"{level} level",
            color=LEVEL_COLOURS[level],
        )
    ax.set_xticks(range(len(summary)), [f"{r['label']}\n({len(r['encoders'])} enc.)" for r in summary])
    tops = [(row.get(lv) or 0) + (row.get(f"{lv}_std") or 0) for row in summary for lv in ("object", "part")]
    ax.set_ylim(0, max([*tops, 1]) * 1.18)
    ax.set_ylabel("mean score (%), error bar = std over encoders")
    ax.set_title("Object vs part score per family")
    ax.legend(fontsize=8, ncol=2, loc="upper left")
    return _png(fig)


def _axes_of(record: ResultRecord) -> list[str]:
    keys = list(record.search_space) or sorted({k for t in record.trial_results for k in t.get("config", {})})
    varying = []
    for k in keys:
        values = {repr(t.get("config", {}).get(k)) for t in record.trial_results}
        if len(values) > 1 or k in record.search_space:
            varying.append(k)
    varying.sort(key=lambda k: (k != "lr", k))
    return varying or ["trial"]


def _is_categorical(record: ResultRecord, name: str) -> bool:
    dim = record.search_space.get(name)
    if isinstance(dim, dict) and dim.get("type") in ("choice", "grid"):
        return True
    values = {repr(t.get("config", {}).get(name)) for t in record.trial_results}
    return len(values) <= 3 and name not in ("lr", "learning_rate")


def _num_text(v) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def stopped_early(trial: dict, max_iterations: int) -> bool:
    """A trial's ``stopped_early`` flag if recorded, else: it ran fewer iterations than the longest trial."""
    if "stopped_early" in trial:
        return bool(trial["stopped_early"])
    it = trial.get("iterations")
    return it is not None and it < max_iterations


def search_plot(record: ResultRecord) -> bytes | None:
    """Metric vs each searched axis for one (encoder, level, task); None when no trials were recorded."""
    trials = [t for t in record.trial_results if isinstance(t.get("metric"), int | float)]
    if not trials:
        return None
    axes_names = _axes_of(record)[:4]
    fig, axes = plt.subplots(1, len(axes_names), figsize=(3.6 * len(axes_names) + 0.6, 3.4), squeeze=False)
    max_it = max((t.get("iterations") or 0) for t in trials)
    best = max(trials, key=lambda t: t["metric"]) if record.higher_is_better else min(trials, key=lambda t: t["metric"])
    categorical = {n for n in axes_names if _is_categorical(record, n)}
    for ax, name in zip(axes[0], axes_names, strict=True):
        order = list(enumerate(trials))
        if name in categorical:  # categories appear in sorted order
            order.sort(key=lambda it: _num_text(it[1].get("config", {}).get(name)))
        for i, t in order:
            x = i if name == "trial" else t.get("config", {}).get(name)
            if name in categorical or not isinstance(x, int | float) or isinstance(x, bool):
                x = _num_text(x)
            stopped = stopped_early(t, max_it)
            ax.scatter(
                [x],
                [t["metric"]],
                marker="x" if stopped else "o",
                s=28,
                color="#C44E52" if stopped else "#4C72B0",
                zorder=3,
            )
            if t is best:
                ax.scatter([x], [t["metric"]], marker="*", s=200, facecolor="none", edgecolor="black", zorder=4)
        numeric = [t.get("config", {}).get(name) for t in trials]
        if (
            name not in categorical
            and all(isinstance(v, int | float) and v > 0 for v in numeric)
            and max(numeric) / min(numeric) >= 20
        ):
            ax.set_xscale("log")
        ax.set_xlabel(name)
        ax.set_ylabel(f"{record.metric} (%)")
        ax.grid(alpha=0.3)
    handles = [
        plt.Line2D([], [], marker="o", ls="", color="#4C72B0", label="completed"),
        plt.Line2D([], [], marker="x", ls="", color="#C44E52", label="stopped early (ASHA)"),
        plt.Line2D(
            [], [], marker="*", ls="", markerfacecolor="none", markeredgecolor="black", markersize=12, label="chosen"
        ),
    ]
    axes[0][-1].legend(handles=handles, fontsize=7, loc="best")
    title = f"{record.encoder} · {record.level} · {record.task} · {record.dataset} · {record.feature}"
    fig.suptitle(f"{title}\n{len(trials)} trials, {record.trials_stopped_early} stopped early", fontsize=9)
    return _png(fig)


def search_figure_name(record: ResultRecord) -> str:
    parts = (record.encoder, record.level, record.task, record.dataset, record.feature)
    safe = "_".join("".join(ch if ch.isalnum() or ch in "-." else "-" for ch in p) for p in parts)
    return f"search_{safe}.png"


def same_images(pairs, encoder_order: Sequence[str]) -> bytes:
    """Figure 6: per probe run on the same images at both granularities, object vs part score per encoder."""
    fig, axes = plt.subplots(
        len(pairs), 1, figsize=(max(7, 1.2 * len(encoder_order) + 3), 3.4 * len(pairs)), squeeze=False
    )
    w = 0.38
    for ax, pair in zip(axes[:, 0], pairs, strict=True):
        encs = [e for e in encoder_order if e in pair.values]
        for offset, i, level in ((-w / 2, 0, "object"), (w / 2, 1, "part")):
            vals = [pair.values[e][i] for e in encs]
            ax.bar([x + offset for x in range(len(encs))], vals, w, label=f"{level} level", color=LEVEL_COLOURS[level])
            for x, v in enumerate(vals):
                ax.text(x + offset, v, f"{v:.1f}", ha="center", va="bottom", fontsize=7)
        ax.set_xticks(range(len(encs)), [_short(e) for e in encs], rotation=20, ha="right", fontsize=8)
        ax.set_ylabel("score (%)")
        ax.set_title(f"Same images, both granularities: {pair.label}", fontsize=10)
        ax.legend(fontsize=8, ncol=2, loc="upper left")
        top = max(v for pv in pair.values.values() for v in pv)
        ax.set_ylim(0, top * 1.2 if top > 0 else 1)
    fig.tight_layout()
    return _png(fig)


def lab_curves(rows: Sequence[dict]) -> bytes:
    """One small panel per lab encoder: its training loss per step (and, where the learning curve is a
    metric the loss reports, such as DINO's student-teacher KL, that metric on the same panel)."""
    cols = min(4, len(rows))
    nrows = -(-len(rows) // cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(3.2 * cols, 2.4 * nrows), squeeze=False)
    for ax in axes.flat[len(rows) :]:
        ax.set_visible(False)
    for ax, row in zip(axes.flat, rows, strict=False):
        colour = FAMILY_COLOURS.get(row["family"], "grey")
        ax.plot(range(1, len(row["loss_curve"]) + 1), row["loss_curve"], color=colour, lw=1.2, label="loss")
        if row["curve_name"] != "loss" and row["curve"]:
            steps = range(1, len(row["curve"]) + 1)
            ax.plot(steps, row["curve"], color="black", lw=1.0, ls="--", label=row["curve_name"])
            ax.legend(fontsize=7, loc="upper right")
        seconds = row.get("seconds")
        ax.set_title(f"{row['encoder']} ({seconds:.0f} s)" if seconds is not None else row["encoder"], fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        ax.tick_params(labelsize=7)
    fig.tight_layout()
    return _png(fig)
