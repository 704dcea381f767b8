"""``partctl``: the command line. Thin: it parses, validates, prints, and calls library functions.

Each command group lives in its own module and registers on ``app`` when imported below.
Every expected failure is a ``PartawareError``: printed as one line, exit code 2 for bad input
(unknown names, invalid specs, unsafe paths) and 1 for everything else.
"""

from __future__ import annotations

import sys

import typer

from partaware import __version__
from partaware.errors import DatasetError, PartawareError, SpecError, UnknownNameError
from partaware.progress import console

app = typer.Typer(
    name="partctl",
    help="Measure how part-aware and how object-aware pretrained vision encoders are.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"partctl {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
) -> None:
    """partaware: part-aware vs object-aware encoders, as a platform."""


from partaware.cli import (  # noqa: E402,F401  (registers the command groups)
    cluster,
    data,
    encoders,
    features,
    jobs,
    pretrain,
    report,
    runs,
)

BAD_INPUT = (SpecError, UnknownNameError, DatasetError)


def main() -> None:
    """Console entry point: run the app, turning expected errors into one clean line."""
    try:
        app()
    except PartawareError as e:
        console.print(f"[red]error:[/red] {e}", highlight=False, soft_wrap=True)
        sys.exit(2 if isinstance(e, BAD_INPUT) else 1)
