"""``partctl``: the command line. Thin: it parses, validates, prints, and calls library functions.

Each command group lives in its own module and registers on ``app`` when imported below. Data (tables,
``--json`` documents) goes to stdout (``cli/output.py``), progress and messages to stderr (``progress.console``).
Every failure is printed as one line (``main``): exit code 2 for bad input (unknown names, invalid
specs, unreadable sources or checkpoints, unusable storage), 1 for a failed run or anything unexpected,
130 when interrupted; ``--debug`` (or ``PARTAWARE_DEBUG=1``) also prints the traceback.
"""

from __future__ import annotations

import os
import sys
import traceback

import typer
from rich.markup import escape
from typer._click.exceptions import ClickException as _UsageError  # typer vendors click: its own classes

from partaware import __version__
from partaware.errors import (
    CheckpointError,
    DatasetError,
    PartawareError,
    SpecError,
    StorageUnusableError,
    UnknownNameError,
)
from partaware.progress import console

DEBUG_ENV = "PARTAWARE_DEBUG"

app = typer.Typer(
    name="partctl",
    help="Measure how part-aware and how object-aware pretrained vision encoders are.",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"partctl {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
    debug: bool = typer.Option(False, "--debug", help="Print the traceback of an error (or PARTAWARE_DEBUG=1)."),
) -> None:
    """partaware: part-aware vs object-aware encoders, as a platform."""
    if debug:
        os.environ[DEBUG_ENV] = "1"


from partaware.cli import (  # noqa: E402,F401  (registers the command groups)
    cluster,
    data,
    encoders,
    features,
    jobs,
    pretrain,
    report,
    runs,
    weights,
)

BAD_INPUT = (SpecError, UnknownNameError, DatasetError, StorageUnusableError, CheckpointError)


def main() -> None:
    """Console entry point: every failure ends as one line on stderr and an exit code.

    2: bad input (a spec, a source, a checkpoint, a storage root: the line names it); 1: a failed run
    or an unexpected error; 130: interrupted. ``--debug`` (or ``PARTAWARE_DEBUG=1``) adds the traceback.
    """
    try:
        code = app(standalone_mode=False)
    except _UsageError as e:  # a bad flag or command: one line naming the --help that lists the valid ones, exit 2
        _show_usage_error(e)
        code = e.exit_code
    except (typer.Abort, KeyboardInterrupt) as e:
        cause = e.__cause__ if isinstance(e.__cause__, EOFError) else None
        code = _report(cause) if cause is not None else _interrupted()
    except Exception as e:  # noqa: BLE001 (the one place every error becomes a line)
        code = _report(e)
    sys.exit(code if isinstance(code, int) else 0)


def _report(exc: BaseException) -> int:
    """Print ``exc`` as one ``error:`` line (the traceback first with --debug); return the exit code."""
    if _debugging():
        traceback.print_exception(exc)
    message, code = describe_error(exc)
    console.print(f"[red]error:[/red] {escape(message)}", highlight=False, soft_wrap=True)
    return code


def describe_error(exc: BaseException) -> tuple[str, int]:
    """The line to print for ``exc`` and the exit code: our errors as they are, known kinds named."""
    from partaware.storage import storage_error

    exc = getattr(exc, "cause", None) if isinstance(getattr(exc, "cause", None), PartawareError) else exc  # Ray
    if isinstance(exc, PartawareError):
        return str(exc), 2 if isinstance(exc, BAD_INPUT) else 1
    mapped = storage_error(exc)
    if mapped is not None:
        return str(mapped), 2
    if isinstance(exc, OSError) and exc.filename:
        return f"{exc.filename}: {exc.strerror or exc}; check the path and its permissions", 2
    first = (str(exc).strip().splitlines() or [""])[0][:500]
    hint = "rerun with --debug for the traceback" if not _debugging() else "the traceback is above"
    return f"unexpected {type(exc).__name__}: {first} ({hint})", 1


def _interrupted() -> int:
    console.print("[yellow]interrupted[/yellow]", highlight=False)
    return 130


def _show_usage_error(e: Exception) -> None:
    """A bad flag or command as one line too, naming where the valid ones are listed."""
    ctx = getattr(e, "ctx", None)
    where = ctx.command_path if ctx is not None else "partctl"
    message = e.format_message() if hasattr(e, "format_message") else str(e)
    console.print(f"[red]error:[/red] {escape(message)} (see '{where} --help')", highlight=False, soft_wrap=True)


def _debugging() -> bool:
    return os.environ.get(DEBUG_ENV, "").strip().lower() in ("1", "true", "yes", "on")
