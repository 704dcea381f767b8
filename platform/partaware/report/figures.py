"""The report's figures, drawn with matplotlib's Agg backend (no display) and returned as PNG bytes.

Every score panel draws the bootstrap confidence interval of each bar as an error bar, the baselines of the
same split as horizontal lines (chance dashed, majority class dotted, random features dash-dotted) and the
random-initialisation controls as grey hatched bars labelled "(control)": a bar is read against them.

- ``object_vs_part``: one panel per (level, metric): the encoders' level scores (a metric is never averaged
  with another);
- ``family_bars``: per (level, metric), each family's mean with the mean of its encoders' interval ends;
- ``same_images``: Figure 6, object vs part score on the same images;
- ``search_plot``: one hyperparameter search: the *validation* metric (percent) of every trial against each
  searched axis (learning rate on a log scale with one label per decade or per value), trials stopped early
  by ASHA drawn as crosses, the chosen trial as a star;
- ``lab_curves``: the lab encoders' pretraining curves, one panel per objective (losses differ in kind
  and scale across objectives, so they share no axis).

Each ``*_figure`` function returns the matplotlib figure (tests read its artists); the plain names return PNG.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import FixedLocator, FuncFormatter, LogLocator, NullFormatter  # noqa: E402

from partaware.report.estimates import Estimate  # noqa: E402
from partaware.report.tables import BASELINE_LABEL, METRIC_LABEL, metric_label  # noqa: E402
from partaware.report.verdict import EncoderVerdict, FamilyRow, LevelGroup, Verdict  # noqa: E402
from partaware.results import ResultRecord  # noqa: E402

FAMILY_COLOURS = {"supervised": "#4C72B0", "contrastive": "#DD8452", "mim": "#55A868", "contrastive+mim": "#8172B3"}
LEVEL_COLOURS = {"object": "#4C72B0", "part": "#C44E52"}
CONTROL_COLOUR = "#B0B0B0"
PANELS_PER_ROW = 3
#: baseline key -> line style
BASELINE_STYLE = {"chance": ("--", "black"), "majority": (":", "#444444"), "random_features": ("-.", "#8172B3")}


def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def _short(name: str, n: int = 30) -> str:
    return name if len(name) <= n else name[: n - 1] + "…"


def _yerr(estimates: Sequence[Estimate | None]) -> list[list[float]]:
    """Asymmetric error bars from the intervals (0 where a score has none)."""
    lows = [e.value - e.low if e is not None and e.has_interval else 0.0 for e in estimates]
    highs = [e.high - e.value if e is not None and e.has_interval else 0.0 for e in estimates]
    return [lows, highs]


def draw_baselines(ax, baselines: dict[str, float], *, colour: str | None = None, suffix: str = "") -> None:
    """One labelled horizontal line per baseline (chance, majority class, random features)."""
    for key, value in baselines.items():
        style, default = BASELINE_STYLE.get(key, ("--", "grey"))
        label = f"{BASELINE_LABEL.get(key, key)}{suffix} {value:.1f}"
        ax.axhline(value, ls=style, color=colour or default, lw=1.1, label=label, zorder=1)


def _top(estimates: Sequence[Estimate | None], baselines: Sequence[float]) -> float:
    ends = [(e.high if e.has_interval else e.value) for e in estimates if e is not None]
    return max([*ends, *baselines, 1.0])


def _score_panel(ax, group: LevelGroup, rows: Sequence[EncoderVerdict]) -> None:
    """Bars of one (level, metric) with intervals, the group's baselines and the controls."""
    shown = [v for v in rows if group.key in v.scores]
    ests = [v.scores[group.key] for v in shown]
    colours = [CONTROL_COLOUR if v.control else FAMILY_COLOURS.get(v.family, "grey") for v in shown]
    bars = ax.bar(range(len(shown)), [e.value for e in ests], 0.7, yerr=_yerr(ests), capsize=3, color=colours)
    for bar, v in zip(bars, shown, strict=True):
        if v.control:
            bar.set_hatch("//")
            bar.set_label("control (random init.)")
    draw_baselines(ax, group.baselines)
    labels = [_short(v.encoder) + ("\n(control)" if v.control else "") for v in shown]
    ax.set_xticks(range(len(shown)), labels, rotation=30, ha="right", fontsize=7)
    ax.set_ylabel(metric_label(group.metric))
    ax.set_title(f"{group.label} (%), 95% interval", fontsize=9)
    ax.set_ylim(0, _top(ests, list(group.baselines.values())) * 1.15)
    handles, names = ax.get_legend_handles_labels()
    unique = dict(zip(names, handles, strict=True))
    if unique:
        ax.legend(unique.values(), unique.keys(), fontsize=6, loc="upper right")


def _panels(n: int, width: float, height: float) -> tuple[Figure, list]:
    """A grid of ``n`` panels, at most ``PANELS_PER_ROW`` a row; unused cells hidden."""
    cols = max(1, min(PANELS_PER_ROW, n))
    rows = -(-max(1, n) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(width * cols, height * rows), squeeze=False)
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    return fig, list(axes.flat)


def object_vs_part_figure(verdict: Verdict) -> Figure:
    rows = [*verdict.encoders, *verdict.controls]
    groups = verdict.groups or []
    fig, axes = _panels(len(groups), max(4.5, 0.55 * len(rows) + 2.5), 4.4)
    for ax, g in zip(axes, groups, strict=False):
        _score_panel(ax, g, rows)
    if not groups:
        axes[0].set_visible(True)
        axes[0].set_axis_off()
        axes[0].text(0.5, 0.5, "no probe that every encoder ran", ha="center")
    fig.suptitle("Level scores per encoder: bars = score, error bars = 95% interval, lines = baselines", fontsize=10)
    fig.tight_layout()
    return fig


def object_vs_part(verdict: Verdict) -> bytes:
    return _png(object_vs_part_figure(verdict))


def family_figure(rows: Sequence[FamilyRow], groups: Sequence[LevelGroup]) -> Figure:
    fig, axes = _panels(len(groups), max(4, 1.2 * len(rows) + 2), 4)
    for ax, g in zip(axes, groups, strict=False):
        shown = [r for r in rows if g.key in r.scores]
        ests = [r.scores[g.key] for r in shown]
        colours = [CONTROL_COLOUR if r.family == "control" else FAMILY_COLOURS.get(r.family, "grey") for r in shown]
        bars = ax.bar(range(len(shown)), [e.value for e in ests], 0.6, yerr=_yerr(ests), capsize=3, color=colours)
        for bar, r in zip(bars, shown, strict=True):
            if r.family == "control":
                bar.set_hatch("//")
        draw_baselines(ax, g.baselines)
        ax.set_xticks(range(len(shown)), [f"{r.label}\n({len(r.encoders)} enc.)" for r in shown], fontsize=8)
        ax.set_ylabel(metric_label(g.metric))
        ax.set_title(f"{g.label}: family mean, 95% interval", fontsize=9)
        ax.set_ylim(0, _top(ests, list(g.baselines.values())) * 1.18)
        if g.baselines:
            ax.legend(fontsize=6, loc="upper right")
    fig.tight_layout()
    return fig


def family_bars(rows: Sequence[FamilyRow], groups: Sequence[LevelGroup]) -> bytes:
    return _png(family_figure(rows, groups))


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


def trial_scale(record: ResultRecord) -> float:
    """100 when the trials' metrics are fractions (Ray Tune reports ``val_top1`` in 0-1), 1 when percent.

    A trial may say so itself (``metric_unit``: fraction | percent); otherwise metrics that all lie in [0, 1]
    are fractions. The record's ``value`` is always percent."""
    units = {t.get("metric_unit") for t in record.trial_results} - {None}
    if units:
        return 100.0 if units == {"fraction"} else 1.0
    values = [t["metric"] for t in record.trial_results if isinstance(t.get("metric"), int | float)]
    return 100.0 if values and all(0.0 <= v <= 1.0 for v in values if v == v) else 1.0


def _log_ticks(ax, values: Sequence[float]) -> None:
    """Readable log-axis ticks: the trial values when few, else one per decade; no minor labels."""
    distinct = sorted(set(values))
    if len(distinct) <= 5:
        ax.xaxis.set_major_locator(FixedLocator(distinct))
    else:
        ax.xaxis.set_major_locator(LogLocator(base=10, numticks=6))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:.0e}".replace("e-0", "e-")))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.tick_params(axis="x", labelrotation=35, labelsize=7)


def search_figure(record: ResultRecord) -> Figure | None:
    """Validation metric (percent) vs each searched axis; None when no trials were recorded."""
    trials = [t for t in record.trial_results if isinstance(t.get("metric"), int | float)]
    if not trials:
        return None
    scale = trial_scale(record)
    axes_names = _axes_of(record)[:4]
    fig, axes = plt.subplots(1, len(axes_names), figsize=(3.6 * len(axes_names) + 0.6, 3.6), squeeze=False)
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
            y = t["metric"] * scale
            ax.scatter(
                [x], [y], marker="x" if stopped else "o", s=28, color="#C44E52" if stopped else "#4C72B0", zorder=3
            )
            if t is best:
                ax.scatter([x], [y], marker="*", s=200, facecolor="none", edgecolor="black", zorder=4)
        numeric = [t.get("config", {}).get(name) for t in trials]
        if (
            name not in categorical
            and all(isinstance(v, int | float) and v > 0 for v in numeric)
            and max(numeric) / min(numeric) >= 20
        ):
            ax.set_xscale("log")
            _log_ticks(ax, numeric)
        ax.set_xlabel(name)
        ax.set_ylabel(f"validation {metric_label(record.metric)}")
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
    metric = METRIC_LABEL.get(record.metric.lower(), record.metric)
    fig.suptitle(
        f"{title}\n{len(trials)} trials, {record.trials_stopped_early} stopped early; validation {metric} per trial "
        f"(the tables report the test score)",
        fontsize=9,
    )
    fig.tight_layout()
    return fig


def search_plot(record: ResultRecord) -> bytes | None:
    fig = search_figure(record)
    return None if fig is None else _png(fig)


def search_figure_name(record: ResultRecord) -> str:
    parts = (record.encoder, record.level, record.task, record.dataset, record.feature)
    safe = "_".join("".join(ch if ch.isalnum() or ch in "-." else "-" for ch in p) for p in parts)
    return f"search_{safe}.png"


def same_images_figure(pairs, encoder_order: Sequence[str]) -> Figure:
    """Figure 6: per probe run on the same images at both granularities, object vs part score per encoder,
    with intervals, each level's chance line and the controls."""
    fig, axes = plt.subplots(
        len(pairs), 1, figsize=(max(7, 1.2 * len(encoder_order) + 3), 3.6 * len(pairs)), squeeze=False
    )
    w = 0.38
    for ax, pair in zip(axes[:, 0], pairs, strict=True):
        encs = [e for e in encoder_order if e in pair.values] + sorted(set(pair.values) - set(encoder_order))
        for offset, i, level in ((-w / 2, 0, "object"), (w / 2, 1, "part")):
            ests = [pair.values[e][i] for e in encs]
            bars = ax.bar(
                [x + offset for x in range(len(encs))],
                [e.value for e in ests],
                w,
                yerr=_yerr(ests),
                capsize=2,
                label=f"{level} level",
                color=LEVEL_COLOURS[level],
            )
            for bar, e in zip(bars, encs, strict=True):
                if e in pair.controls:
                    bar.set_hatch("//")
                    bar.set_alpha(0.5)
            if pair.chance[i] is not None:
                ax.axhline(pair.chance[i], ls="--", color=LEVEL_COLOURS[level], lw=1.1, label=f"{level} chance")
        labels = [_short(e) + ("\n(control)" if e in pair.controls else "") for e in encs]
        ax.set_xticks(range(len(encs)), labels, rotation=20, ha="right", fontsize=8)
        ax.set_ylabel(metric_label(pair.metric))
        ax.set_title(f"Same images, both granularities: {pair.label} (95% intervals)", fontsize=10)
        ax.legend(fontsize=7, ncol=2, loc="upper left")
        tops = [e for pv in pair.values.values() for e in pv]
        ax.set_ylim(0, _top(tops, [c for c in pair.chance if c is not None]) * 1.25)
    fig.tight_layout()
    return fig


def same_images(pairs, encoder_order: Sequence[str]) -> bytes:
    return _png(same_images_figure(pairs, encoder_order))


def lab_figure(rows: Sequence[dict]) -> Figure:
    """One small panel per lab encoder: its training loss per step (and, where the learning curve is a
    metric the loss reports, such as DINO's student-teacher KL, that metric on the same panel)."""
    cols = min(4, len(rows))
    nrows = -(-len(rows) // cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(3.2 * cols, 2.6 * nrows), squeeze=False)
    for ax in axes.flat[len(rows) :]:
        ax.set_visible(False)
    for ax, row in zip(axes.flat, rows, strict=False):
        colour = FAMILY_COLOURS.get(row["family"], "grey")
        ax.plot(range(1, len(row["loss_curve"]) + 1), row["loss_curve"], color=colour, lw=1.2, label="loss")
        ylabel = "training loss"
        if row["curve_name"] != "loss" and row["curve"]:
            steps = range(1, len(row["curve"]) + 1)
            ax.plot(steps, row["curve"], color="black", lw=1.0, ls="--", label=row["curve_name"])
            ax.legend(fontsize=7, loc="upper right")
            ylabel = f"loss / {row['curve_name']}"
        seconds = row.get("seconds")
        ax.set_title(f"{row['encoder']} ({seconds:.0f} s)" if seconds is not None else row["encoder"], fontsize=9)
        ax.set_xlabel("training step", fontsize=8)
        ax.set_ylabel(ylabel, fontsize=8)
        ax.tick_params(labelsize=7)
    fig.tight_layout()
    return fig


def lab_curves(rows: Sequence[dict]) -> bytes:
    return _png(lab_figure(rows))
