"""``partctl encoders list``: the registered encoders and whether their weights are already at hand."""

from __future__ import annotations

import typer
from rich.table import Table

from partaware.cli import app
from partaware.encoders.registry import ENCODERS, aliases_of
from partaware.errors import SpecError
from partaware.progress import console
from partaware.storage import StorageRoot

encoders_app = typer.Typer(help="Registered encoders (the paper's seven, modern timm encoders, custom).")
app.add_typer(encoders_app, name="encoders")

ZOOS = ("paper", "modern", "variants", "lab", "custom", "test")


def weights_status(spec, root: StorageRoot) -> str:
    """``cached``/``staged`` (file at hand), ``-`` (would be fetched), or what the kind implies. No network."""
    from partaware.encoders.weights import find_staged

    kind = spec.weights.kind
    if kind == "random":
        return "n/a (random)"
    if kind in ("uri", "lab"):
        return "n/a"
    try:
        uri = find_staged(spec, root)
    except SpecError:
        return "?"
    if uri is None and kind == "timm" and _in_hub_cache(spec):
        return "[green]cached (hub)[/green]"
    if uri is None:
        return "[yellow]stage by hand[/yellow]" if not spec.weights.downloadable else "-"
    return "[green]cached[/green]" if uri.startswith(root.uri) else "[green]staged[/green]"


def _in_hub_cache(spec) -> bool:
    """Whether timm's hub file (``timm/<tag>``, timm's naming on the hub) is already in the local hub cache."""
    from huggingface_hub import try_to_load_from_cache

    tag = spec.weights.location or spec.arch
    found = try_to_load_from_cache(f"timm/{tag}", spec.weights.filename or "model.safetensors")
    return isinstance(found, str)


@encoders_app.command("list")
def encoders_list(
    zoo: str = typer.Option(None, help=f"Only this zoo ({', '.join(ZOOS)})."),
    storage: str = typer.Option(None, "--storage", help="Storage root whose weight cache is checked."),
) -> None:
    """List the registered encoders: name (aliases), family, zoo, architecture, weights, cached or not."""
    if zoo is not None and zoo not in ZOOS:
        raise SpecError(f"--zoo: unknown zoo {zoo!r}; valid: {', '.join(ZOOS)}")
    root = StorageRoot.open(storage)
    table = Table(title=f"encoders (weight cache: {root.uri_of('weights')})")
    for col in ("name", "aliases", "family", "zoo", "arch", "weights source", "cached"):
        table.add_column(col, overflow="fold")
    specs = [ENCODERS.get(n) for n in ENCODERS.names()]
    specs.sort(key=lambda s: (ZOOS.index(s.zoo) if s.zoo in ZOOS else len(ZOOS), s.name))
    for spec in specs:
        if zoo is not None and spec.zoo != zoo:
            continue
        arch = spec.arch + (f" {spec.variant}" if spec.variant else "")
        table.add_row(
            spec.name,
            ", ".join(aliases_of(spec.name)) or "-",
            spec.family,
            spec.zoo,
            arch,
            spec.weights.describe(),
            weights_status(spec, root),
        )
    console.print(table)
