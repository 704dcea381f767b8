"""report.md: the layout's blocks as GitHub-flavoured Markdown; figures linked from ``figures/``."""

from __future__ import annotations

from partaware.report.build import ReportData
from partaware.report.layout import Heading, Image, Para, Pre, TableBlock, report_blocks

#: cell styles drawn bold (inconclusive stays plain: it decides nothing)
BOLD = ("best", "fails", "holds", "partial", "decided")


def _escape(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _table(b: TableBlock) -> str:
    lines = ["| " + " | ".join(_escape(h) for h in b.header) + " |", "|" + "---|" * len(b.header)]
    for i, row in enumerate(b.rows):
        cells = []
        for j, cell in enumerate(row):
            style = b.styles.get((i, j))
            text = _escape(cell)
            cells.append(f"**{text}**" if style in BOLD and text else text)
        lines.append("| " + " | ".join(cells) + " |")
    if b.caption:
        lines.append(f"\n*{b.caption}*")
    return "\n".join(lines)


def render_markdown(data: ReportData) -> str:
    parts = []
    for b in report_blocks(data):
        if isinstance(b, Heading):
            parts.append(f"{'#' * b.level} {b.text}")
        elif isinstance(b, Para):
            parts.append(b.text)
        elif isinstance(b, TableBlock):
            parts.append(_table(b))
        elif isinstance(b, Image):
            parts.append(f"![{_escape(b.caption)}]({b.folder}/{b.name})\n\n*{b.caption}*")
        elif isinstance(b, Pre):
            parts.append((f"**{b.title}**\n\n" if b.title else "") + f"```\n{b.text.rstrip()}\n```")
    return "\n\n".join(parts) + "\n"
