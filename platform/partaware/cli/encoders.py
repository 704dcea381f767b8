"""``partctl encoders list``: the registered encoders and whether their weights are already at hand (stdout)."""

from __future__ import annotations

import typer
from rich.table import Table

from partaware.cli import app
from partaware.cli.output import print_json, print_table
from partaware.encoders.registry import ENCODERS, aliases_of
from partaware.errors import PartawareError, SpecError
from partaware.storage import StorageRoot

encoders_app = typer.Typer(help="Registered encoders (the paper's seven, modern timm encoders, custom).")
app.add_typer(encoders_app, name="encoders")

ZOOS = ("paper", "modern", "variants", "lab", "custom", "test")


#: how a weights state reads in the table (``--json`` prints the plain state)
_STATE_STYLE = {"cached": "green", "staged": "green", "cached (hub)": "green", "stage by hand": "yellow"}


def weights_status(spec, root: StorageRoot) -> str:
    """Whether the weights are at hand, without network or torch.

    ``cached`` (in the storage root's weight cache), ``staged`` (under ``$PARTAWARE_WEIGHTS_DIR``), ``cached (hub)``
    (timm's file in the local Hugging Face cache), ``missing`` (fetched on first use), ``stage by hand`` (no plain
    download), ``not trained`` (a lab encoder not pretrained yet), ``shipped`` (a released lab encoder),
    ``random`` (no weights), ``n/a`` (a URI: read where it is), ``?`` (cannot tell).
    """
    from partaware.encoders.weights import find_staged

    kind = spec.weights.kind
    if kind == "random":
        return "random"
    if kind == "uri":
        return "n/a"
    if kind == "lab":
        return _lab_status(spec, root)
    if kind == "lab-release":
        return "shipped"  # in the package, checked against its sha256 when loaded
    try:
        uri = find_staged(spec, root)
    except SpecError:
        return "?"
    if uri is None and kind == "timm" and _in_hub_cache(spec):
        return "cached (hub)"
    if uri is None:
        return "stage by hand" if not spec.weights.downloadable else "missing"
    return "cached" if uri.startswith(root.uri) else "staged"


def _lab_status(spec, root: StorageRoot) -> str:
    """``cached`` when the budget ``lab/<objective>`` means now (``latest.json``) has complete weights.

    Reads the lab's folders (``<root>/weights/lab/<objective>/<budget>/``) directly: the lab's own lookup
    imports torch, and listing must not.
    """
    objective, _, key = spec.weights.location.partition("/")
    folder = ("weights", "lab", objective)
    if not key and not root.exists(*folder, "latest.json"):
        return "not trained"
    try:
        key = key or root.read_json(*folder, "latest.json")["budget_key"]
    except (OSError, ValueError, KeyError, PartawareError):
        return "?"
    return "cached" if root.is_complete(*folder, key) else "not trained"


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
    json_: bool = typer.Option(False, "--json", help="Print JSON on stdout instead of a table (keys: README)."),
) -> None:
    """List the registered encoders: name (aliases), family, zoo, architecture, weights, cached or not."""
    if zoo is not None and zoo not in ZOOS:
        raise SpecError(f"--zoo: unknown zoo {zoo!r}; valid: {', '.join(ZOOS)}")
    root = StorageRoot.open(storage)
    specs = [ENCODERS.get(n) for n in ENCODERS.names()]
    specs.sort(key=lambda s: (ZOOS.index(s.zoo) if s.zoo in ZOOS else len(ZOOS), s.name))
    specs = [s for s in specs if zoo is None or s.zoo == zoo]
    rows = [(spec, weights_status(spec, root)) for spec in specs]
    if json_:
        print_json([{
            "name": spec.name, "aliases": aliases_of(spec.name), "family": spec.family, "zoo": spec.zoo,
            "arch": spec.arch, "variant": spec.variant or None, "weights_kind": spec.weights.kind,
            "weights_source": spec.weights.location or None, "weights": state, "description": spec.description,
        } for spec, state in rows])  # fmt: skip
        return
    table = Table(title=f"encoders (weight cache: {root.uri_of('weights')})")
    table.add_column("name", no_wrap=True)
    for col in ("aliases", "family", "zoo", "arch", "weights source", "cached"):
        table.add_column(col, overflow="fold")
    for spec, state in rows:
        arch = spec.arch + (f" {spec.variant}" if spec.variant else "")
        style = _STATE_STYLE.get(state)
        table.add_row(
            spec.name,
            ", ".join(aliases_of(spec.name)) or "-",
            spec.family,
            spec.zoo,
            arch,
            spec.weights.describe(),
            f"[{style}]{state}[/{style}]" if style else state,
        )
    print_table(table)
