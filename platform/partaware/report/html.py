"""report.html: one self-contained page (inline CSS, figures as base64 PNG, no script, no network)."""

from __future__ import annotations

import base64
import html
import re

from partaware.report.build import ReportData
from partaware.report.layout import Heading, Image, Para, Pre, TableBlock, report_blocks

CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;margin:0;color:#1d2330;background:#fafbfc}
main{max-width:1280px;margin:0 auto;padding:24px 32px}
h1{font-size:26px;border-bottom:3px solid #4C72B0;padding-bottom:6px}
h2{font-size:21px;margin-top:36px;border-bottom:1px solid #d0d5dd;padding-bottom:4px}
h3{font-size:16px;margin-top:24px}
table{border-collapse:collapse;margin:10px 0;font-size:13px;background:#fff}
th,td{border:1px solid #d0d5dd;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#eef1f6}
td.best{font-weight:700;background:#eaf3ea}
td.holds{font-weight:700;color:#1a7f37;background:#e6f4ea}
td.fails{font-weight:700;color:#b42318;background:#fdecea}
td.inconclusive{color:#8a6100;background:#fff6e0}
td.partial{font-weight:700;color:#5b6473;background:#f1f3f6}
td.decided{font-weight:700}
figure{margin:14px 0}
figure img{max-width:100%;border:1px solid #e3e6eb;background:#fff}
figcaption,.caption{font-size:12px;color:#5b6473;margin-top:4px}
pre{background:#f1f3f6;padding:10px;overflow-x:auto;font-size:12px;border-radius:4px}
nav a{margin-right:14px;font-size:13px}
summary{cursor:pointer;font-size:13px;margin:4px 0}
code{background:#eef1f6;padding:1px 4px;border-radius:3px}
"""


def _inline(text: str) -> str:
    """Escape, then the two Markdown marks the layout uses: **bold** and `code`."""
    out = html.escape(text)
    out = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", out)
    return re.sub(r"`(.+?)`", r"<code>\1</code>", out)


def _table(b: TableBlock) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in b.header)
    body = []
    for i, row in enumerate(b.rows):
        cells = []
        for j, cell in enumerate(row):
            cls = b.styles.get((i, j))
            cells.append(f'<td class="{cls}">{html.escape(cell)}</td>' if cls else f"<td>{html.escape(cell)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    caption = f'<div class="caption">{_inline(b.caption)}</div>' if b.caption else ""
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>{caption}"


def render_html(data: ReportData) -> str:
    blocks = report_blocks(data)
    nav = " ".join(
        f'<a href="#{b.anchor}">{html.escape(b.text)}</a>' for b in blocks if isinstance(b, Heading) and b.level == 2
    )
    parts = []
    for b in blocks:
        if isinstance(b, Heading):
            anchor = f' id="{html.escape(b.anchor)}"' if b.anchor else ""
            parts.append(f"<h{b.level}{anchor}>{html.escape(b.text)}</h{b.level}>")
            if b.level == 1:
                parts.append(f"<nav>{nav}</nav>")
        elif isinstance(b, Para):
            parts.append(f"<p>{_inline(b.text)}</p>")
        elif isinstance(b, TableBlock):
            parts.append(_table(b))
        elif isinstance(b, Image):
            src = "data:image/png;base64," + base64.b64encode(b.png).decode()
            figure = (
                f'<figure><img alt="{html.escape(b.caption)}" src="{src}">'
                f"<figcaption>{html.escape(b.caption)}</figcaption></figure>"
            )
            if b.collapsible:
                figure = f"<details><summary>{html.escape(b.caption.split(':')[0])}</summary>{figure}</details>"
            parts.append(figure)
        elif isinstance(b, Pre):
            title = f"<h3>{html.escape(b.title)}</h3>" if b.title else ""
            parts.append(f"{title}<pre>{html.escape(b.text)}</pre>")
    title = html.escape(f"partaware report · {data.run_id}")
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta name="viewport" content="width=device-width, initial-scale=1"><title>{title}</title>'
        f"<style>{CSS}</style></head><body><main>\n" + "\n".join(parts) + "\n</main></body></html>\n"
    )
