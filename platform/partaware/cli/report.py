"""``partctl report`` and ``partctl gallery``: a run's records as a report, and patch-retrieval galleries."""

from __future__ import annotations

import typer

from partaware.cli import app
from partaware.progress import console
from partaware.storage import StorageRoot

STORAGE_HELP = "Storage root (local folder or fsspec URI); default $PARTAWARE_STORAGE or ./partaware-store."


def _split(value: str | None) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()] if value else []


@app.command()
def report(
    run: str = typer.Argument(..., help="Run id (under <storage>/runs/) or the path/URI of a run folder."),
    format: str = typer.Option("all", "--format", "-f", help="terminal | md | html | csv | all (comma list)."),
    compare: str = typer.Option(None, "--compare", help="A second run to show side by side."),
    paper_name: list[str] = typer.Option(
        [],
        "--paper-name",
        help="Map an encoder id to a paper encoder, ID=KEY (deit, mocov3, dino, beit, mae, cae, "
        "ibot); repeatable. Paper-zoo encoders are matched by family and name without it.",
    ),
    storage: str = typer.Option(None, "--storage", help=STORAGE_HELP),
) -> None:
    """Build a run's report: terminal tables, report.md, self-contained report.html, results.csv, figures/."""
    from partaware.report.build import build_report, run_root_of
    from partaware.report.paper import parse_paper_names

    root = StorageRoot.open(storage)
    run_root = run_root_of(root, run)
    compare_root = run_root_of(root, compare) if compare else None
    formats = _split(format) or ["all"]
    paths = build_report(
        run_root, formats=formats, compare_root=compare_root, paper_names=parse_paper_names(paper_name)
    )
    for kind, path in paths.items():
        console.print(f"[green]{kind}[/green]: {path}", highlight=False)


@app.command()
def gallery(
    run: str = typer.Argument(None, help="Run whose encoders/dataset to use; the gallery goes into its report."),
    encoders: str = typer.Option(None, help="Comma list of encoder names (default: the run's encoders)."),
    dataset: str = typer.Option(None, help="Prepared dataset name (default: the run's first dataset)."),
    queries: str = typer.Option(
        "3", help="N: sample N queries; i,j,...: patch indices or region ids (one index: 'i,')."
    ),
    top: int = typer.Option(8, "--top", min=1, help="Neighbours per query."),
    features: str = typer.Option("encoded", help="Comma list: encoded, cls, projected."),
    source: str = typer.Option("grid", help="grid: 7x7 overlapping windows (protocol §3.6); parts: annotated boxes."),
    images: int = typer.Option(16, "--images", min=1, help="Images sampled into the patch database."),
    crop: int = typer.Option(224, help="Centre-crop side before cutting windows."),
    grid: int = typer.Option(7, help="Windows per side."),
    seed: int = typer.Option(0, help="Seed for image and query sampling."),
    name: str = typer.Option("gallery", help="Output name: galleries/<name>.png and .json."),
    storage: str = typer.Option(None, "--storage", help=STORAGE_HELP),
) -> None:
    """Patch-retrieval gallery: top-K cosine neighbours per encoder, framed green (same part) or red."""
    from rich.table import Table

    from partaware.errors import SpecError
    from partaware.report.build import build_report, run_root_of
    from partaware.report.gallery_job import GalleryRecipe, make_gallery
    from partaware.results import RESULTS_FILE, read_results

    root = StorageRoot.open(storage)
    out = root  # <root>/galleries/<name>.png without a run
    enc_list, ds = _split(encoders), dataset
    run_root = None
    if run:
        run_root = run_root_of(root, run)
        out = run_root
        if not enc_list and run_root.exists(RESULTS_FILE):
            enc_list = list(dict.fromkeys(r.encoder for r in read_results(run_root)))
        if not ds and run_root.exists("spec.yaml"):
            import yaml

            spec = yaml.safe_load(run_root.read_bytes("spec.yaml")) or {}
            ds = (spec.get("datasets") or [{}])[0].get("name")
    if not enc_list:
        raise SpecError("gallery: name the encoders (--encoders a,b) or a run that has results")
    if not ds:
        raise SpecError("gallery: name the dataset (--dataset NAME) or a run whose spec has one")
    q = _split(queries)
    query_arg: int | list[str] = int(q[0]) if len(q) == 1 and q[0].isdigit() and "," not in queries else q
    recipe = GalleryRecipe(
        dataset=ds,
        encoders=enc_list,
        features=_split(features),
        source=source,
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
                                           progress=update)  # fmt: skip
    table = Table(title=f"gallery {name}: queries {result.queries}")
    keys = [k for k in result.summary[0] if k not in ("encoder", "feature")]
    for col in ("encoder", "feature", *keys):
        table.add_column(col)
    for row in result.summary:
        table.add_row(row["encoder"], row["feature"], *[f"{row[k]:.3f}" for k in keys])
    console.print(table)
    if hits:
        console.print(f"features from cache: {', '.join(hits)}", highlight=False)
    for kind, path in paths.items():
        console.print(f"[green]{kind}[/green]: {path}", highlight=False)
    if run_root is not None and run_root.exists(RESULTS_FILE):
        build_report(run_root, formats=["md", "html"])
        console.print(f"report updated: {run_root.uri_of('report.html')}", highlight=False)
