"""``build_report``: a run folder's result records in, report.md / report.html / results.csv / figures out.

Everything shown is computed here from the records (``partaware.results``) and the run folder's own files; the
renderers (markdown.py, html.py, terminal.py) only lay out a ``ReportData``. Files are written atomically into
the run folder, figures under ``figures/``.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from partaware.errors import SpecError
from partaware.report import figures as figs
from partaware.report.claims import ClaimResult, check_claims
from partaware.report.compare import Comparison, compare_runs
from partaware.report.estimates import Estimate
from partaware.report.lab import lab_pretraining
from partaware.report.paper import (
    PAPER_COLUMNS,
    PAPER_ENCODERS,
    PAPER_REFERENCE,
    PaperMapping,
    run_paper_values,
    used_paper_setup,
)
from partaware.report.provenance import collect_provenance
from partaware.report.records import aggregate, load_records
from partaware.report.tables import Table, build_tables, records_csv_rows
from partaware.report.verdict import (
    EncoderVerdict,
    FamilyRow,
    LevelGroup,
    SameImagesPair,
    family_summary,
    same_image_pairs,
    verdict_of,
)
from partaware.results import ResultRecord
from partaware.storage import StorageRoot

FORMATS = ("terminal", "md", "html", "csv")
GALLERY_DIR = "galleries"


@dataclass
class PaperRow:
    encoder: str
    paper_key: str
    column: str
    ours_estimate: Estimate
    paper: float

    @property
    def ours(self) -> float:
        return self.ours_estimate.value

    @property
    def delta(self) -> float:
        return self.ours - self.paper


@dataclass
class SearchInfo:
    record: ResultRecord
    figure: str | None  # file name under figures/, None when no trials were recorded


@dataclass
class Gallery:
    name: str
    png: bytes
    summary: list[dict[str, Any]]  # rows: encoder, feature, mean_sim_top1/4/9/49, same_part_fraction


@dataclass
class ReportData:
    run_id: str
    run_uri: str
    records: list[ResultRecord]
    tables: list[Table]
    verdicts: list[EncoderVerdict]  # ranked encoders
    families: list[FamilyRow]
    same_images: list[SameImagesPair]
    paper_ids: dict[str, str]
    paper_rows: list[PaperRow]
    claims: list[ClaimResult] | None
    searches: list[SearchInfo]
    figures: dict[str, bytes]
    provenance: dict[str, Any]
    galleries: list[Gallery] = field(default_factory=list)
    comparison: Comparison | None = None
    lab: list[dict[str, Any]] = field(default_factory=list)  # lab encoders' budget and curves (report/lab.py)
    groups: list[LevelGroup] = field(default_factory=list)  # the (level, metric) groups the verdict compares
    controls: list[EncoderVerdict] = field(default_factory=list)  # random-init controls: scored, never ranked


def report_data(
    run_id: str,
    run_uri: str,
    records: Sequence[ResultRecord],
    *,
    provenance: dict[str, Any] | None = None,
    paper_names: Mapping[str, str] | None = None,
    galleries: Sequence[Gallery] = (),
    compare: tuple[str, Sequence[ResultRecord]] | None = None,
    lab: Sequence[dict[str, Any]] = (),
) -> ReportData:
    """Compute everything a report shows from records (aggregated here)."""
    recs = aggregate(records)
    mapping = PaperMapping(explicit=dict(paper_names or {}))
    values = run_paper_values(recs, mapping)
    paper_ids = mapping.encoders(recs)
    claims = check_claims(values) if used_paper_setup(values) else None
    by_key = {v: k for k, v in paper_ids.items()}
    paper_rows = [
        PaperRow(by_key[key], key, col, values[key][col], PAPER_REFERENCE[key][col])
        for key in PAPER_ENCODERS
        if key in values
        for col in PAPER_COLUMNS
        if col in values[key] and col in PAPER_REFERENCE[key]
    ]
    verdict = verdict_of(recs)
    families = family_summary([*verdict.encoders, *verdict.controls], verdict.groups)
    figures: dict[str, bytes] = {}
    if verdict.encoders or verdict.controls:
        figures["object_vs_part.png"] = figs.object_vs_part(verdict)
        figures["family_bars.png"] = figs.family_bars(families, verdict.groups)
    pairs = same_image_pairs(recs)
    if pairs:
        order = [v.encoder for v in [*verdict.encoders, *verdict.controls]]
        figures["same_images.png"] = figs.same_images(pairs, order)
    searches = []
    for r in recs:
        png = figs.search_plot(r)
        name = figs.search_figure_name(r) if png else None
        if png:
            figures[name] = png
        searches.append(SearchInfo(r, name))
    if lab:
        figures["lab_pretraining.png"] = figs.lab_curves(lab)
    comparison = None
    if compare is not None:
        other_id, other_records = compare
        comparison = compare_runs(run_id, recs, other_id, aggregate(other_records))
    return ReportData(
        run_id=run_id,
        run_uri=run_uri,
        records=recs,
        tables=build_tables(recs),
        verdicts=verdict.encoders,
        families=families,
        same_images=pairs,
        paper_ids=paper_ids,
        paper_rows=paper_rows,
        claims=claims,
        searches=searches,
        figures=figures,
        provenance=provenance or {},
        galleries=list(galleries),
        comparison=comparison,
        lab=list(lab),
        groups=verdict.groups,
        controls=verdict.controls,
    )


def read_galleries(run_root: StorageRoot) -> list[Gallery]:
    """Galleries written into the run folder by ``partctl gallery`` (``galleries/<name>.png`` + ``.json``)."""
    out = []
    for name in run_root.listdir(GALLERY_DIR):
        if not name.endswith(".png") or name.startswith("."):
            continue
        stem = name[: -len(".png")]
        summary = (
            run_root.read_json(GALLERY_DIR, f"{stem}.json") if run_root.exists(GALLERY_DIR, f"{stem}.json") else {}
        )
        out.append(Gallery(stem, run_root.read_bytes(GALLERY_DIR, name), summary.get("encoders", [])))
    return out


def results_csv(records: Sequence[ResultRecord]) -> str:
    return rows_csv(records_csv_rows(records))


def rows_csv(rows: Sequence[Mapping[str, Any]]) -> str:
    """CSV of dict rows, the columns in first-seen order (rows may differ in their keys)."""
    fieldnames: list[str] = []
    for row in rows:
        fieldnames.extend(k for k in row if k not in fieldnames)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fieldnames)
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def _check_formats(formats: Iterable[str]) -> list[str]:
    chosen = []
    for f in formats:
        if f == "all":
            chosen.extend(FORMATS)
        elif f in FORMATS:
            chosen.append(f)
        else:
            raise SpecError(f"report format {f!r} is not one of {', '.join((*FORMATS, 'all'))}")
    return list(dict.fromkeys(chosen))


def run_root_of(root: StorageRoot, run: str) -> StorageRoot:
    """The run folder for a run id under ``<root>/runs/``, or a path/URI to a run folder itself."""
    from partaware.errors import StorageError

    if root.exists("runs", run):
        return root.sub("runs", run)
    direct = StorageRoot.open(run) if ("/" in run or "://" in run) else None
    if direct is not None and direct.exists("spec.yaml"):
        return direct
    runs = [r for r in root.listdir("runs") if not r.startswith(".")]
    raise StorageError(f"no run {run!r} under {root.uri}/runs (runs: {', '.join(runs[-10:]) or 'none'})")


def build_report(
    run_root: StorageRoot,
    *,
    formats: Iterable[str] = ("md", "html", "csv"),
    compare_root: StorageRoot | None = None,
    paper_names: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """Write the report files for one run folder; returns ``{format: path}`` (``terminal`` prints instead)."""
    chosen = _check_formats(formats)
    return write_report(run_root, run_report_data(run_root, compare_root, paper_names), chosen)


def run_report_data(
    run_root: StorageRoot, compare_root: StorageRoot | None = None, paper_names: Mapping[str, str] | None = None
) -> ReportData:
    """Everything a run's report shows, read from its folder (and another run's, to compare); writes nothing."""
    records = load_records(run_root)
    compare = None
    if compare_root is not None:
        compare = (compare_root.uri.rstrip("/").rsplit("/", 1)[-1], load_records(compare_root))
    return report_data(
        run_root.uri.rstrip("/").rsplit("/", 1)[-1],
        run_root.uri,
        records,
        provenance=collect_provenance(run_root, records),
        paper_names=paper_names,
        galleries=read_galleries(run_root),
        compare=compare,
        lab=lab_pretraining(run_root),
    )


def write_report(run_root: StorageRoot, data: ReportData, formats: Sequence[str]) -> dict[str, str]:
    from partaware.report.html import render_html
    from partaware.report.markdown import render_markdown

    paths: dict[str, str] = {}
    if "md" in formats or "html" in formats:
        for name, png in data.figures.items():
            run_root.write_bytes(png, "figures", name)
        paths["figures"] = run_root.join("figures")
    if "csv" in formats:
        paths["csv"] = run_root.write_bytes(results_csv(data.records).encode(), "results.csv")
    if "md" in formats:
        paths["md"] = run_root.write_bytes(render_markdown(data).encode(), "report.md")
    if "html" in formats:
        paths["html"] = run_root.write_bytes(render_html(data).encode(), "report.html")
    if "terminal" in formats:
        from partaware.report.terminal import print_report

        print_report(data)
    return paths
