"""``partctl report`` and ``partctl gallery``: a run's records as a report, and patch-retrieval galleries.

Both only read a run: the run's own ``report.md``/``report.html``/``results.csv`` and ``galleries/`` are written
by its job alone. ``report`` prints the report, or writes it (or a comparison) where ``--output`` says; ``gallery``
writes its images under the storage root's ``galleries/`` (or ``--output``), never into the run folder.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import typer

from partaware.cli import app
from partaware.cli.output import deprecated, print_table, report_width, stdout_console
from partaware.errors import SpecError
from partaware.progress import console
from partaware.storage import StorageRoot

STORAGE_HELP = "Storage root (local folder or fsspec URI); default $PARTAWARE_STORAGE or ./partaware-store."
REPORT_FORMATS = ("terminal", "md", "html", "csv")


def _split(value: str | None) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()] if value else []


@app.command()
def report(
    run: str = typer.Argument(..., help="Run id (under <storage>/runs/) or the path/URI of a run folder."),
    format: str = typer.Option(
        "terminal", "--format", help="terminal (tables on stdout) | md | html | csv (to --output, else stdout)."
    ),
    output: Path = typer.Option(
        None, "--output", "-o", help="Write the md/html/csv report here (md: figures beside it, in figures/)."
    ),
    compare: str = typer.Option(
        None,
        "--compare",
        help="A second run to show side by side (in the printed or written report; never in either run's folder).",
    ),
    paper_name: list[str] = typer.Option(
        [],
        "--paper-name",
        help="Map an encoder id to a paper encoder, ID=KEY (deit, mocov3, dino, beit, mae, cae, "
        "ibot); repeatable. Paper-zoo encoders are matched by family and name without it.",
    ),
    storage: str = typer.Option(None, "--storage", help=STORAGE_HELP),
) -> None:
    """Show a run's report (read-only): terminal tables, or Markdown, self-contained HTML or CSV to --output."""
    from partaware.cli.runs import run_folder
    from partaware.report.paper import parse_paper_names

    if format not in REPORT_FORMATS:
        raise SpecError(f"--format {format!r}: one of {', '.join(REPORT_FORMATS)}")
    if output is not None and format == "terminal":
        raise SpecError("--output: give --format md, html or csv (terminal prints to stdout)")
    root = StorageRoot.open(storage)
    run_root = run_folder(root, run)
    compare_root = run_folder(root, compare) if compare else None
    if output is not None:
        _refuse_inside(output, [r for r in (run_root, compare_root) if r is not None])
    data = report_of(run_root, compare_root=compare_root, paper_names=parse_paper_names(paper_name))
    if format == "terminal":
        from partaware.report.terminal import print_report

        print_report(data, console=stdout_console(piped_width=report_width()))
        return
    text = _render(data, format)
    if output is None:
        typer.echo(text, nl=not text.endswith("\n"))
        return
    _write(output, text.encode())
    if format == "md":
        for name, png in data.figures.items():
            _write(output.parent / "figures" / name, png)
    console.print(f"[green]{format}[/green]: {output}", highlight=False)


def report_of(run_root: StorageRoot, *, compare_root: StorageRoot | None = None, paper_names=None):
    """The ``ReportData`` of a run folder, read-only."""
    from partaware.report.build import run_report_data

    return run_report_data(run_root, compare_root, paper_names)


def _render(data, format: str) -> str:
    if format == "md":
        from partaware.report.markdown import render_markdown

        return render_markdown(data)
    if format == "html":
        from partaware.report.html import render_html

        return render_html(data)
    from partaware.report.build import results_csv

    return results_csv(data.records)


def _refuse_inside(output: Path, run_roots: list[StorageRoot]) -> None:
    """A report written by this command never lands in a run folder (its report is the job's)."""
    target = output.expanduser().resolve()
    for run_root in run_roots:
        if "://" in run_root.uri and not run_root.uri.startswith("file://"):
            continue
        folder = Path(run_root.uri.removeprefix("file://")).resolve()
        if target == folder or folder in target.parents:
            raise SpecError(f"--output {output}: inside the run folder {folder}; a run's report and galleries are "
                            "written by its job only: choose a path outside it")  # fmt: skip


def _write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (a temporary file beside it, then a rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@app.command()
def gallery(
    run: str = typer.Argument(None, help="Run whose encoders and dataset to use (read-only: its folder is unchanged)."),
    encoders: str = typer.Option(None, help="Comma list of encoder names (default: the run's encoders)."),
    datasets: str = typer.Option(None, help="The prepared dataset (default: the run's first dataset)."),
    dataset: str = typer.Option(None, "--dataset", hidden=True, help="Deprecated spelling of --datasets."),
    queries: str = typer.Option(
        "3", help="N: sample N queries; i,j,...: patch indices or region ids (one index: 'i,')."
    ),
    top: int = typer.Option(8, "--top", min=1, help="Neighbours per query."),
    features: str = typer.Option("encoded", help="Comma list: encoded, cls, projected."),
    patches: str = typer.Option("grid", help="grid: 7x7 overlapping windows (protocol §3.6); parts: annotated boxes."),
    source: str = typer.Option(None, "--source", hidden=True, help="Deprecated spelling of --patches."),
    images: int = typer.Option(16, "--images", min=1, help="Images sampled into the patch database."),
    crop: int = typer.Option(224, help="Centre-crop side before cutting windows."),
    grid: int = typer.Option(7, help="Windows per side."),
    seed: int = typer.Option(0, help="Seed for image and query sampling."),
    name: str = typer.Option("gallery", help="Output name: <name>.png and <name>.json."),
    output: Path = typer.Option(
        None,
        "--output",
        "-o",
        help="Folder for <name>.png/.json (default <storage>/galleries/, with a RUN <storage>/galleries/<run-id>/); "
        "never inside a run folder.",
    ),
    storage: str = typer.Option(None, "--storage", help=STORAGE_HELP),
) -> None:
    """Patch-retrieval gallery: top-K cosine neighbours per encoder, framed green (same part) or red.

    Read-only with respect to a run: its encoders and dataset are read from it, the gallery is written outside it
    (the run's report embeds only the gallery its job made)."""
    import posixpath

    from rich.table import Table

    from partaware.report.build import run_root_of
    from partaware.report.gallery_job import GalleryRecipe, make_gallery
    from partaware.results import RESULTS_FILE, read_results

    if dataset is not None:
        deprecated("--dataset", "--datasets")
    if source is not None:
        deprecated("gallery --source", "--patches")
    chosen = _split(dataset or datasets)
    if len(chosen) > 1:
        raise SpecError(f"--datasets {datasets!r}: a gallery draws from one dataset; name one")
    root = StorageRoot.open(storage)
    out, folder = root, ("galleries",)  # <root>/galleries/<name>.png without a run
    enc_list, ds = _split(encoders), (chosen[0] if chosen else None)
    run_root = None
    if run:
        run_root = run_root_of(root, run)
        folder = ("galleries", posixpath.basename(run_root.path.rstrip("/")))  # beside the run, never in it
        if not enc_list and run_root.exists(RESULTS_FILE):
            enc_list = list(dict.fromkeys(r.encoder for r in read_results(run_root)))
        if not ds and run_root.exists("spec.yaml"):
            import yaml

            spec = yaml.safe_load(run_root.read_bytes("spec.yaml")) or {}
            ds = (spec.get("datasets") or [{}])[0].get("name")
    if not enc_list:
        raise SpecError("gallery: name the encoders (--encoders a,b) or a run that has results")
    if not ds:
        raise SpecError("gallery: name the dataset (--datasets NAME) or a run whose spec has one")
    if output is not None:
        _refuse_inside(output, [run_root] if run_root is not None else [])
        out, folder = StorageRoot.open(str(output), writable=True), ()
    q = _split(queries)
    query_arg: int | list[str] = int(q[0]) if len(q) == 1 and q[0].isdigit() and "," not in queries else q
    recipe = GalleryRecipe(
        dataset=ds,
        encoders=enc_list,
        features=_split(features),
        source=source or patches,
        n_images=images,
        crop=crop,
        grid=grid,
        seed=seed,
    )
    import os

    from partaware.progress import progress_bar
    from partaware.runs.cluster import ray_session

    # the patches are encoded by the extraction pipeline's actors, into the feature cache
    with ray_session(os.environ.get("RAY_ADDRESS")), progress_bar(f"gallery {name}") as update:
        result, paths, hits = make_gallery(root, recipe, out=out, name=name, queries=query_arg, top_k=top,
                                           progress=update, folder=folder)  # fmt: skip
    table = Table(title=f"gallery {name}: queries {result.queries}")
    keys = [k for k in result.summary[0] if k not in ("encoder", "feature")]
    for col in ("encoder", "feature", *keys):
        table.add_column(col)
    for row in result.summary:
        table.add_row(row["encoder"], row["feature"], *[f"{row[k]:.3f}" for k in keys])
    print_table(table)
    if hits:
        console.print(f"features from cache: {', '.join(hits)}", highlight=False)
    for kind, path in paths.items():
        console.print(f"[green]{kind}[/green]: {path}", highlight=False)
