"""``partctl datasets list|prepare`` (``partctl data prepare`` is a deprecated, hidden alias).

Tables and ``--json`` go to stdout; progress and messages to stderr.
"""

from __future__ import annotations

import functools
import time
from typing import Any

import typer
from rich.markup import escape
from rich.table import Table

from partaware.cli import app
from partaware.cli.output import deprecated, print_json, print_table
from partaware.datasets import DATASETS, prepare_dataset
from partaware.datasets.store import ERRORS_FILE, list_versions
from partaware.datasets.summary import DatasetSummary, human_bytes, summarize, version_size
from partaware.errors import SpecError
from partaware.progress import console, progress_bar
from partaware.spec import load_yaml_text
from partaware.storage import StorageRoot

datasets_app = typer.Typer(help="Registered datasets: list them, prepare one into the unified manifest.",
                            no_args_is_help=True)  # fmt: skip
data_app = typer.Typer(help="Deprecated: use `partctl datasets prepare`.", no_args_is_help=True)
app.add_typer(datasets_app, name="datasets")
app.add_typer(data_app, name="data", hidden=True)  # the old spelling, kept for one release

STORAGE_HELP = (
    "Storage root (local folder or fsspec URI such as s3://bucket/prefix); "
    "default $PARTAWARE_STORAGE or ./partaware-store."
)


@datasets_app.command("list")
def datasets_list(
    storage: str = typer.Option(None, "--storage", help=STORAGE_HELP),
    json_: bool = typer.Option(False, "--json", help="Print JSON on stdout instead of a table (keys: README)."),
) -> None:
    """List the datasets partaware can prepare, and the versions prepared under the storage root."""
    from partaware.probes.tasks import tasks_for

    root = StorageRoot.open(storage)
    rows = []
    for name in DATASETS.names():
        entry = DATASETS.get(name)
        rows.append((entry, tasks_for(entry), list_versions(root, name)))
    if json_:
        print_json([{
            "name": entry.name, "description": entry.description, "levels": list(entry.levels),
            "kinds": list(entry.kinds), "tasks": list(tasks), "held_out": entry.held_out, "source": entry.source,
            "generated": entry.generated, "versions": [_version_json(v) for v in versions],
        } for entry, tasks, versions in rows])  # fmt: skip
        return
    table = Table(title=f"datasets (storage root: {root.uri})")
    table.add_column("name", no_wrap=True)
    table.add_column("levels")
    table.add_column("tasks", max_width=24)
    table.add_column("held out")
    table.add_column("source", max_width=36)
    table.add_column("prepared versions (version, date, size: regions, images, errors)", min_width=40)
    for entry, tasks, versions in rows:
        prepared = "\n".join(_version_line(v) for v in versions) or "-"
        table.add_row(entry.name, ",".join(entry.levels), ",".join(tasks), entry.held_out, entry.source, prepared)
    print_table(table)


def _version_json(v) -> dict[str, Any]:
    """One prepared version with the documented keys."""
    return {
        "version": v.version,
        "created": v.info.get("created"),
        "bytes": version_size(v),
        "regions": v.info.get("rows"),
        "regions_per_level": v.info.get("regions_per_level") or {},
        "images": v.info.get("images"),
        "errors": v.info.get("error_count", len(v.info.get("errors", []))),
        "uri": v.uri,
    }


def _version_line(v) -> str:
    """``version  date  size  N regions (level counts)  K images  E bad``: one prepared version."""
    per_level = v.info.get("regions_per_level")
    levels = f" ({', '.join(f'{k} {n}' for k, n in per_level.items())})" if per_level else ""
    images = f", {v.info['images']} images" if "images" in v.info else ""
    errors = v.info.get("error_count", len(v.info.get("errors", [])))
    bad = f", {errors} errors" if errors else ""
    created = v.info.get("created", "")[:10]
    return f"{v.version} {created} {human_bytes(version_size(v))}: {v.info['rows']} regions{levels}{images}{bad}"


def _parse_sets(pairs: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise SpecError(f"--set {pair!r}: expected KEY=VALUE")
        out[key.strip().replace("-", "_")] = load_yaml_text(value, source=f"--set {key}")
    return out


@datasets_app.command("prepare")
def datasets_prepare(
    name: str = typer.Argument(..., help="Dataset name (see `partctl datasets list`)."),
    source: str = typer.Option(None, help="Where the raw dataset is: folder, archive or fsspec URI."),
    storage: str = typer.Option(None, "--storage", help=STORAGE_HELP),
    dest: str = typer.Option(None, "--dest", hidden=True, help="Deprecated spelling of --storage."),
    size: int = typer.Option(None, help="synthetic: number of images (default 3000)."),
    image_size: int = typer.Option(None, help="synthetic: image side in pixels (default 224)."),
    seed: int = typer.Option(None, help="synthetic: generator seed (default 0)."),
    sets: list[str] = typer.Option([], "--set", help="Converter option KEY=VALUE (repeatable)."),
    workers: int = typer.Option(
        None, help="synthetic: local processes (default: cores, max 4); real datasets: reader threads (default 2)."
    ),
) -> None:
    """Prepare a dataset under the storage root (idempotent: a prepared recipe is not redone)."""
    if dest is not None:
        if storage is not None and storage != dest:
            raise SpecError(f"--dest {dest!r} and --storage {storage!r} disagree; --dest is the old name of --storage")
        deprecated("--dest", "--storage")
    name = DATASETS.resolve(name)
    root = StorageRoot.open(storage or dest, writable=True)
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
    print_summary(summarize(prepared))


@data_app.command("prepare", help="Deprecated: use `partctl datasets prepare` (same options).")
@functools.wraps(datasets_prepare)
def data_prepare(**options: Any) -> None:
    deprecated("`partctl data prepare`", "`partctl datasets prepare`")
    datasets_prepare(**options)


def print_summary(summary: DatasetSummary, *, max_classes: int = 40) -> None:
    """The final table: images, regions per level and class, bad records per kind."""
    table = Table(title=f"{summary.name} {summary.version}: {summary.images} images, {summary.regions} regions")
    for col, justify in (("level", "left"), ("class", "left"), ("regions", "right")):
        table.add_column(col, justify=justify)
    for level, n in summary.per_level.items():
        table.add_row(level, "[bold]all[/bold]", str(n))
        classes = [(label, k) for (lv, label), k in summary.per_class.items() if lv == level]
        for label, k in classes[:max_classes]:
            table.add_row("", label, str(k))
        if len(classes) > max_classes:
            table.add_row("", f"... {len(classes) - max_classes} more classes", "")
    table.add_row("per split", ", ".join(f"{s} {n}" for s, n in summary.per_split.items()), "")
    errors = sum(summary.errors_per_kind.values())
    kinds = ", ".join(f"{k} {n}" for k, n in summary.errors_per_kind.items()) or "none"
    table.add_row("errors", kinds, str(errors))
    print_table(table)
    if summary.examples:
        lines = [escape(f"  {e['file']} [{e['record']}]: {e['message']}") for e in summary.examples]
        more = f"\n  ... see {ERRORS_FILE} in the version folder" if errors > len(summary.examples) else ""
        console.print(
            f"[yellow]skipped bad records[/yellow] (first {len(lines)}):\n" + "\n".join(lines) + more, highlight=False
        )  # noqa: E501
