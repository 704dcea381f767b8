"""``partctl datasets list`` and ``partctl data prepare``."""

from __future__ import annotations

import time
from typing import Any

import typer
import yaml
from rich.table import Table

from partaware.cli import app
from partaware.datasets import DATASETS, prepare_dataset
from partaware.datasets.store import list_versions
from partaware.errors import SpecError
from partaware.progress import console, progress_bar
from partaware.storage import StorageRoot

datasets_app = typer.Typer(help="Registered datasets.", no_args_is_help=True)
data_app = typer.Typer(help="Prepare datasets into the unified manifest.", no_args_is_help=True)
app.add_typer(datasets_app, name="datasets")
app.add_typer(data_app, name="data")

STORAGE_HELP = (
    "Storage root (local folder or fsspec URI such as s3://bucket/prefix); "
    "default $PARTAWARE_STORAGE or ./partaware-store."
)


@datasets_app.command("list")
def datasets_list(storage: str = typer.Option(None, "--storage", help=STORAGE_HELP)) -> None:
    """List the datasets partaware can prepare, and the versions prepared under the storage root."""
    root = StorageRoot.open(storage)
    table = Table(title=f"datasets (storage root: {root.uri})")
    for col in ("name", "levels", "tasks", "source", "prepared versions", "description"):
        table.add_column(col)
    for name in DATASETS.names():
        entry = DATASETS.get(name)
        versions = list_versions(root, name)
        prepared = ", ".join(f"{v.version} ({v.info['rows']} regions)" for v in versions) or "-"
        table.add_row(name, ",".join(entry.levels), ",".join(entry.tasks), entry.source, prepared, entry.description)
    console.print(table)


def _parse_sets(pairs: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise SpecError(f"--set {pair!r}: expected KEY=VALUE")
        out[key.strip().replace("-", "_")] = yaml.safe_load(value)
    return out


@data_app.command("prepare")
def data_prepare(
    name: str = typer.Argument(..., help="Dataset name (see `partctl datasets list`)."),
    source: str = typer.Option(None, help="Where the raw dataset is: folder, archive or fsspec URI."),
    dest: str = typer.Option(None, "--dest", "--storage", help=STORAGE_HELP),
    size: int = typer.Option(None, help="synthetic: number of images (default 3000)."),
    image_size: int = typer.Option(None, help="synthetic: image side in pixels (default 224)."),
    seed: int = typer.Option(None, help="synthetic: generator seed (default 0)."),
    sets: list[str] = typer.Option([], "--set", help="Converter option KEY=VALUE (repeatable)."),
    workers: int = typer.Option(None, help="Local processes for rendering/decoding (default: cores, max 4)."),
) -> None:
    """Prepare a dataset under the storage root (idempotent: a prepared recipe is not redone)."""
    name = DATASETS.resolve(name)
    root = StorageRoot.open(dest)
    shortcuts = {"size": size, "image_size": image_size, "seed": seed}
    options = {**{k: v for k, v in shortcuts.items() if v is not None}, **_parse_sets(sets)}
    start = time.perf_counter()
    with progress_bar(f"prepare {name}") as update:
        prepared, built = prepare_dataset(root, name, source=source, options=options, workers=workers, progress=update)
    elapsed = time.perf_counter() - start
    verb = "prepared" if built else "already prepared (nothing to do)"
    console.print(
        f"[green]{name}[/green] {verb}: version {prepared.version}, {prepared.info['rows']} regions, "
        f"{prepared.info['files']} files, {elapsed:.1f} s\n  {prepared.uri}",
        highlight=False,
    )
    if prepared.info.get("errors"):
        console.print(f"[yellow]{len(prepared.info['errors'])} source items skipped[/yellow] (see dataset.json)")
