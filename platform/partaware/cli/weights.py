"""``partctl weights fetch|stage|list``: encoder weights into the storage root's weight cache before a run.

A run fetches what it lacks on first use; these commands do it ahead (a machine with network filling a shared
root for an air-gapped cluster), stage releases that have no plain download (BEiT, CAE), and show what is there.
``list`` reads storage metadata only (no torch, timm or Ray), like ``encoders list``.
"""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from partaware.cli import app
from partaware.cli.output import print_json, print_table
from partaware.encoders.specs import EncoderSpec
from partaware.errors import PartawareError, SpecError
from partaware.progress import console
from partaware.storage import StorageRoot

weights_app = typer.Typer(help="Encoder weights: fetch ahead of a run, stage hand-downloaded files, list the cache.")
app.add_typer(weights_app, name="weights")

STORAGE_HELP = "Storage root whose weight cache is used (<root>/weights/); default $PARTAWARE_STORAGE."
SELECTORS_HELP = "Encoders: all | family:<f> | names, aliases or timm tags (arch.tag)."
SPEC_HELP = "A job spec: its encoders (and its custom_encoders) are the ones meant."
LIST_KEYS = ("name", "kind", "file", "state", "uri", "bytes", "sha256", "source")


def selected_specs(selectors: list[str], *, zoo: str | None, spec: str | None) -> list[EncoderSpec]:
    """The encoders named by selectors (timm tags registered on the fly) and by a job spec, in order, once each."""
    from partaware.encoders.registry import ENCODERS, register_custom_encoders, select_encoders
    from partaware.encoders.timm_tags import looks_like_timm_tag, timm_encoder

    names: list[str] = []
    if spec:
        from partaware.cli.jobs import spec_with_overrides

        names += spec_with_overrides(spec).resolved_encoders()
    for sel in (s.strip() for s in selectors if s.strip()):
        if looks_like_timm_tag(sel):
            entry = timm_encoder(sel)
            if entry["name"] not in ENCODERS:
                register_custom_encoders([EncoderSpec.model_validate(entry)])
            names.append(entry["name"])
        else:
            names += select_encoders([sel], zoo=zoo or "paper")
    return [ENCODERS.get(n) for n in dict.fromkeys(names)]


def _one(encoder: str, spec: str | None) -> EncoderSpec:
    """Exactly one encoder by name, alias or timm tag (a spec's custom encoders registered first)."""
    from partaware.encoders.registry import ENCODERS
    from partaware.encoders.timm_tags import looks_like_timm_tag

    if spec:
        selected_specs([], zoo=None, spec=spec)
    if looks_like_timm_tag(encoder.strip()):
        return selected_specs([encoder], zoo=None, spec=None)[0]
    return ENCODERS.get(encoder.strip())  # an unknown name lists the valid ones


@weights_app.command("list")
def weights_list(
    encoders: list[str] = typer.Argument(None, help=SELECTORS_HELP + " Default: every registered encoder."),
    zoo: str = typer.Option(None, help="Only this zoo (paper, modern, variants, lab, custom, test)."),
    spec: str = typer.Option(None, "--spec", help=SPEC_HELP),
    storage: str = typer.Option(None, "--storage", help=STORAGE_HELP),
    json_: bool = typer.Option(False, "--json", help="Print JSON on stdout instead of a table (keys: README)."),
) -> None:
    """Which weights files are cached, staged or missing, per encoder, with where they are (or go) and their sha256."""
    from partaware.cli.encoders import ZOOS, weights_status
    from partaware.encoders.registry import ENCODERS
    from partaware.encoders.staging import describe

    if zoo is not None and zoo not in ZOOS:
        raise SpecError(f"--zoo: unknown zoo {zoo!r}; valid: {', '.join(ZOOS)}")
    root = StorageRoot.open(storage)
    if encoders or spec:
        specs = selected_specs(encoders or [], zoo=zoo, spec=spec)
    else:
        specs = sorted((ENCODERS.get(n) for n in ENCODERS.names()),
                       key=lambda s: (ZOOS.index(s.zoo) if s.zoo in ZOOS else len(ZOOS), s.name))  # fmt: skip
    specs = [s for s in specs if zoo is None or s.zoo == zoo]
    rows = [describe(s, root, weights_status(s, root)) for s in specs]
    if json_:
        print_json([{k: row[k] for k in LIST_KEYS} for row in rows])
        return
    table = Table(title=f"weights (cache: {root.uri_of('weights')})")
    table.add_column("name", no_wrap=True)
    for col in ("kind", "file", "state", "size", "sha256", "where"):
        table.add_column(col, overflow="fold")
    for row in rows:
        size = f"{row['bytes'] / 2**20:.1f} MiB" if row["bytes"] is not None else "-"
        table.add_row(row["name"], row["kind"], row["file"] or "-", row["state"], size,
                      (row["sha256"] or "-")[:16], row["uri"] or "-")  # fmt: skip
    print_table(table)


@weights_app.command("fetch")
def weights_fetch(
    encoders: list[str] = typer.Argument(None, help=SELECTORS_HELP),
    zoo: str = typer.Option(None, help="Zoo that `all` and `family:` select from (default paper)."),
    spec: str = typer.Option(None, "--spec", help=SPEC_HELP),
    storage: str = typer.Option(None, "--storage", help=STORAGE_HELP),
) -> None:
    """Download weights into the weight cache: official URLs resumed and retried with a sha256 check, timm tags
    through the Hugging Face hub. Files already cached or staged are left as they are; exit code 1 when any
    is missing (each line says where to stage it)."""
    from partaware.encoders.staging import fetch
    from partaware.progress import download_bar

    if not encoders and not spec:
        raise SpecError("weights fetch: name the encoders (all, family:<f>, names or timm tags) or give --spec SPEC")
    specs = selected_specs(encoders or [], zoo=zoo, spec=spec)
    root = StorageRoot.open(storage, writable=True)
    table = Table(title=f"weights fetch (cache: {root.uri_of('weights')})")
    for col in ("name", "status", "where"):
        table.add_column(col, overflow="fold", no_wrap=col == "name")
    failed: list[tuple[str, PartawareError]] = []
    for s in specs:
        try:
            with download_bar(f"fetch {s.name}") as update:
                outcome = fetch(s, root, progress=update)
        except PartawareError as e:
            failed.append((s.name, e))
            table.add_row(s.name, "[red]missing[/red]", "see below")
            continue
        table.add_row(s.name, outcome.status, outcome.where)
    print_table(table)
    if len(failed) == 1 and len(specs) == 1:
        raise failed[0][1]
    if failed:
        for name, e in failed:
            console.print(f"  [red]missing[/red] {name}: {e}", highlight=False, soft_wrap=True)
        names = ", ".join(n for n, _ in failed)
        raise PartawareError(f"weights for {len(failed)} of {len(specs)} encoders are not available ({names}); "
                             "stage each file where the lines above say (partctl weights stage NAME FILE)")  # fmt: skip


@weights_app.command("stage")
def weights_stage(
    encoder: str = typer.Argument(..., help="The encoder the file is for (name, alias or timm tag)."),
    file: Path = typer.Argument(..., help="The hand-downloaded checkpoint (.pth, .bin or .safetensors)."),
    sha256: str = typer.Option(None, "--sha256", help="Expected sha256 (all 64 hex digits, or a leading part >= 8)."),
    spec: str = typer.Option(None, "--spec", help="A job spec declaring the encoder (custom_encoders)."),
    storage: str = typer.Option(None, "--storage", help=STORAGE_HELP),
) -> None:
    """Copy a hand-downloaded file (BEiT, CAE: no plain download) into the weight cache with its sha256, after
    loading it (weights_only) through the encoder's converter into its architecture, strictly; the state-dict
    digest is recorded so a run reads no checkpoint on a feature-cache hit."""
    import re

    from partaware.encoders.staging import stage

    if sha256 is not None and not re.fullmatch(r"[0-9a-fA-F]{8,64}", sha256):
        raise SpecError(f"--sha256 {sha256!r}: 8 to 64 hex digits")
    target = _one(encoder, spec)
    root = StorageRoot.open(storage, writable=True)
    with console.status(f"checking {file} against {target.name} ..."):
        staged = stage(target, file, root, sha256=sha256.lower() if sha256 else None)
    console.print(f"[green]staged[/green] {target.name}: {staged.uri} ({staged.bytes} bytes, sha256 "
                  f"{staged.sha256}; state dict {staged.weights_digest})", highlight=False, soft_wrap=True)  # fmt: skip
