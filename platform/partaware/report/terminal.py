"""The report in the terminal with rich: the same blocks, images replaced by the path of their PNG."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table
from rich.text import Text

from partaware.report.build import ReportData
from partaware.report.layout import Heading, Image, Para, Pre, TableBlock, report_blocks

_STYLE = {
    "best": "bold",
    "holds": "bold green",
    "fails": "bold red",
    "inconclusive": "yellow",
    "partial": "bold",
    "decided": "bold",
}
#: provenance blocks that are long in a terminal; the files hold them in full
_SKIP_PRE = {"spec"}


def print_report(data: ReportData, console: Console | None = None) -> None:
    console = console or Console()
    for b in report_blocks(data):
        if isinstance(b, Heading):
            if b.level <= 2:
                console.rule(Text(b.text, style="bold"))
            else:
                console.print(Text("\n" + b.text, style="bold underline"))
        elif isinstance(b, Para):
            console.print(Text(b.text.replace("**", "")))
        elif isinstance(b, TableBlock):
            table = Table(caption=Text(b.caption) if b.caption else None, show_lines=False)
            for h in b.header:
                table.add_column(Text(h), overflow="fold", no_wrap=h == "encoder")
            for i, row in enumerate(b.rows):
                table.add_row(*[Text(c, style=_STYLE.get(b.styles.get((i, j), ""), "")) for j, c in enumerate(row)])
            console.print(table)
        elif isinstance(b, Image):
            console.print(Text(f"figure: {b.folder}/{b.name} — {b.caption}", style="dim"))
        elif isinstance(b, Pre) and b.title not in _SKIP_PRE:
            console.print(Text(b.title, style="bold"))
            console.print(Text(b.text.rstrip()))
