"""What a command prints: data (tables, JSON) on stdout, messages and progress on stderr (``progress.console``).

Piped, a table is laid out at ``PIPED_WIDTH`` columns so that no id wraps across lines (``partctl runs | grep``
sees whole rows); in a terminal it takes the terminal's width. ``--json`` prints one JSON document instead,
with the keys documented in the README ("Machine-readable output").
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any

from rich.console import Console, RenderableType

#: columns of a piped table: wide enough that no row wraps (tables take only the width they need)
PIPED_WIDTH = 1000
#: columns of the piped terminal report (headings are rules across the whole width)
PIPED_REPORT_WIDTH = 200


def stdout_console(*, piped_width: int = PIPED_WIDTH) -> Console:
    """A console on stdout: the terminal's width, or ``piped_width`` (``$COLUMNS`` for the report) when piped."""
    return Console(width=None if sys.stdout.isatty() else piped_width, soft_wrap=False)


def print_table(renderable: RenderableType) -> None:
    """A table (or any rich renderable) on stdout."""
    stdout_console().print(renderable)


def print_json(data: Any) -> None:
    """One JSON document on stdout (indented; times as ISO-8601 strings where the caller converted them)."""
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")
    sys.stdout.flush()


def report_width() -> int:
    """Piped width of the terminal report: ``$COLUMNS`` when set, else ``PIPED_REPORT_WIDTH``."""
    columns = os.environ.get("COLUMNS", "")
    return int(columns) if columns.isdigit() and int(columns) > 0 else PIPED_REPORT_WIDTH


def iso_time(ts: float | None) -> str | None:
    """A UNIX time as ``YYYY-MM-DDTHH:MM:SSZ`` (UTC), or None."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts)) if ts else None


def deprecated(old: str, new: str) -> None:
    """One note on stderr: ``old`` still works for this release; ``new`` is the name to use."""
    from partaware.progress import console

    console.print(f"[yellow]note:[/yellow] {old} is deprecated and will be removed; use {new}", highlight=False)
