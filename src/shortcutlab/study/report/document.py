"""A tiny document model (sections of text, figures, tables and verdicts) and its HTML.

The HTML is self-contained: images are embedded as data URIs, styles are inline, and
nothing is fetched from the network, so the file can be mailed, archived or printed.
"""

from __future__ import annotations

import base64
import html
import mimetypes
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Figure:
    path: Path
    caption: str


@dataclass(frozen=True)
class Table:
    title: str
    columns: Sequence[str]
    rows: Sequence[Sequence[object]]


@dataclass(frozen=True)
class Verdict:
    """One target: what was asked, what we measured, and whether it was met."""

    target: str
    measured: str
    met: bool | None  # None: not measured (a stage did not run or failed)


@dataclass
class Section:
    anchor: str
    title: str
    asked: str
    did: str
    verdicts: list[Verdict] = field(default_factory=list)
    figures: list[Figure] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    links: list[tuple[str, str]] = field(default_factory=list)  # (text, path from the report)


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1100px;
margin:0 auto;padding:1.5rem;color:#1d1d1f;line-height:1.5}
h1{margin-bottom:.2rem}h2{border-bottom:2px solid #ddd;padding-bottom:.2rem;margin-top:2.5rem}
.sub{color:#666;margin-top:0}.asked{background:#f5f5f7;border-left:4px solid #888;
padding:.5rem 1rem}nav ol{columns:2}
table{border-collapse:collapse;margin:1rem 0;font-size:.9rem}
th,td{border:1px solid #ccc;padding:.25rem .6rem;text-align:right}
th:first-child,td:first-child{text-align:left}th{background:#f0f0f0}
.verdicts{list-style:none;padding-left:0}.verdicts li{margin:.25rem 0}
.met{color:#0a7d32;font-weight:600}.missed{color:#b3261e;font-weight:600}
.na{color:#8a6d00;font-weight:600}
figure{margin:1rem 0;break-inside:avoid}figure img{max-width:100%;height:auto;
border:1px solid #eee}figcaption{color:#555;font-size:.9rem}
.overview td.verdict{text-align:left}
@media print{body{max-width:none;padding:0}h2{break-before:page}nav{display:none}}
"""


def _image_uri(path: Path) -> str:
    mime = mimetypes.guess_type(path.name)[0] or "image/png"
    return f"data:{mime};base64,{base64.b64encode(path.read_bytes()).decode()}"


def _verdict_html(verdict: Verdict) -> str:
    label, css = {True: ("met", "met"), False: ("missed", "missed"),
                  None: ("not measured", "na")}[verdict.met]
    return (f'<li><span class="{css}">{label}</span>: {html.escape(verdict.target)} '
            f"&mdash; measured {html.escape(verdict.measured)}</li>")


def _table_html(table: Table) -> str:
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in table.columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in row) + "</tr>"
        for row in table.rows
    )
    return (f"<h3>{html.escape(table.title)}</h3><table><thead><tr>{head}</tr></thead>"
            f"<tbody>{body}</tbody></table>")


def _figure_html(figure: Figure) -> str:
    if not figure.path.is_file():
        return f'<p class="na">figure missing: {html.escape(figure.path.name)}</p>'
    return (f'<figure><img src="{_image_uri(figure.path)}" alt="{html.escape(figure.caption)}">'
            f"<figcaption>{html.escape(figure.caption)}</figcaption></figure>")


def _section_html(section: Section) -> str:
    parts = [f'<section id="{section.anchor}"><h2>{html.escape(section.title)}</h2>',
             f'<p class="asked"><strong>Asked:</strong> {html.escape(section.asked)}</p>',
             f"<p><strong>What we did:</strong> {html.escape(section.did)}</p>"]
    if section.verdicts:
        parts.append('<ul class="verdicts">' + "".join(map(_verdict_html, section.verdicts))
                     + "</ul>")
    parts += [_table_html(t) for t in section.tables]
    parts += [_figure_html(f) for f in section.figures]
    parts += [f"<p>{html.escape(n)}</p>" for n in section.notes]
    if section.links:
        parts.append("<p>" + " &middot; ".join(
            f'<a href="{html.escape(target)}">{html.escape(text)}</a>'
            for text, target in section.links) + "</p>")
    parts.append("</section>")
    return "\n".join(parts)


def _overview(sections: Sequence[Section]) -> str:
    rows = []
    for section in sections:
        for verdict in section.verdicts:
            label = {True: "met", False: "missed", None: "not measured"}[verdict.met]
            css = {True: "met", False: "missed", None: "na"}[verdict.met]
            rows.append(f'<tr><td><a href="#{section.anchor}">{html.escape(section.title)}</a>'
                        f"</td><td class=verdict>{html.escape(verdict.target)}</td>"
                        f"<td>{html.escape(verdict.measured)}</td>"
                        f'<td class="{css}">{label}</td></tr>')
    return ('<table class="overview"><thead><tr><th>task</th><th>target</th><th>measured</th>'
            "<th>verdict</th></tr></thead><tbody>" + "".join(rows) + "</tbody></table>")


def render_html(title: str, subtitle: str, sections: Sequence[Section]) -> str:
    nav = "".join(f'<li><a href="#{s.anchor}">{html.escape(s.title)}</a></li>' for s in sections)
    body = "\n".join(_section_html(s) for s in sections)
    return (
        "<!DOCTYPE html><html lang=en><head><meta charset=utf-8>"
        '<meta name=viewport content="width=device-width,initial-scale=1">'
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>"
        f"<h1>{html.escape(title)}</h1><p class=sub>{html.escape(subtitle)}</p>"
        f"<nav><ol>{nav}</ol></nav><h2>Targets at a glance</h2>{_overview(sections)}"
        f"{body}</body></html>\n"
    )
