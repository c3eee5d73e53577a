"""A self-contained HTML report: every figure of an analysis on one page that opens offline."""

from __future__ import annotations

import html
import os
from dataclasses import dataclass, field
from pathlib import Path

import plotly.graph_objects as go
import plotly.offline


@dataclass
class Section:
    """One heading of the report with its prose, key numbers and figures."""

    title: str
    text: str = ""
    numbers: dict[str, str] = field(default_factory=dict)
    figures: list[go.Figure] = field(default_factory=list)
    table: list[dict[str, str]] = field(default_factory=list)  # rows with the same keys


def render_report(title: str, sections: list[Section], *, subtitle: str = "") -> str:
    """HTML with plotly.js inlined once, so the file needs no network to display."""
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>{html.escape(title)}</title>",
        "<style>body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em}"
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px 10px;text-align:right}"
        "th{text-align:left}section{margin-bottom:2.5em}</style>",
        f"<script type='text/javascript'>{plotly.offline.get_plotlyjs()}</script>",
        "</head><body>",
        f"<h1>{html.escape(title)}</h1>",
        f"<p>{html.escape(subtitle)}</p>" if subtitle else "",
    ]
    for section in sections:
        parts.append(f"<section><h2>{html.escape(section.title)}</h2>")
        if section.text:
            parts.append(f"<p>{html.escape(section.text)}</p>")
        if section.numbers:
            rows = "".join(
                f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>"
                for k, v in section.numbers.items()
            )
            parts.append(f"<table>{rows}</table>")
        if section.table:
            head = "".join(f"<th>{html.escape(k)}</th>" for k in section.table[0])
            body = "".join(
                "<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in row.values()) + "</tr>"
                for row in section.table
            )
            parts.append(f"<table><tr>{head}</tr>{body}</table>")
        for fig in section.figures:
            parts.append(fig.to_html(full_html=False, include_plotlyjs=False))
        parts.append("</section>")
    parts.append("</body></html>")
    return "\n".join(parts)


def write_report(
    path: str | Path, title: str, sections: list[Section], *, subtitle: str = ""
) -> Path:
    """Write the report atomically (temporary file + rename) and return its path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(render_report(title, sections, subtitle=subtitle), encoding="utf-8")
    os.replace(tmp, path)
    return path
