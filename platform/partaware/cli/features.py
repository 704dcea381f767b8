"""``partctl features list`` and ``partctl extract``: the feature cache and how to fill it.

Tables and ``--json`` go to stdout; progress and per-worker lines to stderr.
"""

from __future__ import annotations

import dataclasses
import os

import typer
from rich.table import Table

from partaware.cli import app
from partaware.cli.output import deprecated, print_json, print_table
from partaware.errors import SpecError
from partaware.extract.features import list_features
from partaware.progress import console, progress_bar
from partaware.runs.cluster import ray_session
from partaware.storage import StorageRoot

features_app = typer.Typer(help="The feature cache (<root>/features/<key>/).", no_args_is_help=True)
app.add_typer(features_app, name="features")

STORAGE_HELP = "Storage root (local folder or fsspec URI); default $PARTAWARE_STORAGE or ./partaware-store."


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


@features_app.command("list")
def features_list(
    storage: str = typer.Option(None, "--storage", help=STORAGE_HELP),
    all_: bool = typer.Option(False, "--all", help="Also show incomplete (interrupted) feature sets."),
    json_: bool = typer.Option(False, "--json", help="Print JSON on stdout instead of a table (keys: README)."),
) -> None:
    """List cached feature sets: key, encoder, dataset, taps, rows, errors, size."""
    root = StorageRoot.open(storage)
    found = list_features(root, include_incomplete=all_)
    if json_:
        print_json([dataclasses.asdict(f) for f in found])
        return
    table = Table(title=f"features (storage root: {root.uri})")
    for col in ("key", "encoder", "dataset", "taps", "rows", "errors", "size", "complete"):
        table.add_column(col, no_wrap=col in ("key", "encoder"))
    for f in found:
        table.add_row(
            f.key,
            f.encoder,
            f"{f.dataset}@{f.dataset_version}",
            ",".join(f.taps),
            str(f.rows),
            str(f.errors),
            _size(f.bytes),
            "yes" if f.complete else "no",
        )
    print_table(table)


@app.command()
def extract(
    encoders: str = typer.Option(..., help="all | family:<f> | comma list of encoder names."),
    datasets: str = typer.Option("synthetic", help="Comma list of prepared datasets (see `partctl datasets list`)."),
    dataset: str = typer.Option(None, "--dataset", hidden=True, help="Deprecated spelling of --datasets."),
    taps: str = typer.Option("cls,mean", help="Comma list of taps: cls, mean, proj, patch:<k>."),
    kinds: str = typer.Option(
        "regions", help="Comma list of manifest rows to encode: regions (boxes, patches), label_maps (whole images)."
    ),
    storage: str = typer.Option(None, "--storage", help=STORAGE_HELP),
    zoo: str = typer.Option("paper", help="Zoo that `all` and `family:` select from."),
    batch_size: int = typer.Option(64, help="Regions per encoder batch."),
    min_actors: int = typer.Option(1, help="Smallest encoder actor pool."),
    max_actors: int = typer.Option(2, help="Largest encoder actor pool (one GPU each on GPU clusters)."),
    precision: str = typer.Option("fp32", help="fp32 | bf16 (bf16 for GPUs)."),
    max_error_rate: float = typer.Option(0.01, help="Fail when more than this fraction of regions is skipped."),
    address: str = typer.Option(None, help="Ray cluster address (default: $RAY_ADDRESS, else a local Ray)."),
) -> None:
    """Extract features of each dataset for each encoder (cached: a complete key does no work)."""
    from partaware.datasets import DATASETS
    from partaware.encoders.registry import select_encoders
    from partaware.extract.pipeline import check_kinds

    if dataset is not None:
        deprecated("--dataset", "--datasets")
    dataset_list = [DATASETS.resolve(d.strip()) for d in (dataset or datasets).split(",") if d.strip()]
    if not dataset_list:
        raise SpecError("--datasets: name at least one prepared dataset")

    names = select_encoders([e for e in encoders.split(",") if e.strip()], zoo=zoo)
    if not names:
        raise SpecError(f"--encoders {encoders!r} selects no registered encoder (zoo {zoo!r})")
    tap_list = [t.strip() for t in taps.split(",") if t.strip()]
    kind_list = check_kinds([k.strip() for k in kinds.split(",") if k.strip()])  # before starting Ray
    root = StorageRoot.open(storage, writable=True)  # refused before Ray starts
    with ray_session(address or os.environ.get("RAY_ADDRESS")):
        _extract_all(root, dataset_list, names, tap_list, kinds=kind_list, batch_size=batch_size, min_actors=min_actors,
                     max_actors=max_actors, precision=precision, max_error_rate=max_error_rate)  # fmt: skip


def _extract_all(root: StorageRoot, datasets: list[str], names: list[str], tap_list: list[str], **options) -> None:
    from partaware.extract.pipeline import extract_features

    table = Table(title=f"extraction ({root.uri})")
    for col in ("encoder", "dataset", "status", "key", "rows", "errors", "encoded", "regions/s",
                "read/decode/encode/write s"):  # fmt: skip
        table.add_column(col, no_wrap=col in ("encoder", "key"))
    for dataset, name in ((d, n) for d in datasets for n in names):
        with progress_bar(f"extract {name} on {dataset}") as update:
            r = extract_features(root, dataset, name, taps=tap_list, progress=update, **options)
        t = r.timings
        stages = "/".join(f"{t.get(k, 0.0):.1f}" for k in ("read", "decode", "encode", "write")) if t else "-"
        counts = (str(r.rows), str(r.errors), str(r.regions_encoded), f"{r.regions_per_s:.1f}")
        table.add_row(name, dataset, r.status, r.key, *counts, stages)
        for worker, w in sorted(r.workers.items()):
            rate = f"{w['regions_per_s']:.1f} regions/s while encoding"
            console.print(f"  {name} worker {worker}: {int(w['regions'])} regions, {rate}", highlight=False)
    print_table(table)
