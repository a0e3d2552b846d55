"""Rendering of reports: sections of text, tables and figures as Markdown and as one HTML page."""

from __future__ import annotations

import base64
import html
import re
from dataclasses import dataclass
from typing import Any

import pandas as pd


def markdown_table(frame: pd.DataFrame) -> str:
    """A DataFrame as a Markdown table, floats to 4 decimals."""
    rows = [list(frame.columns), ["---"] * frame.shape[1],
            *[[_cell(v) for v in row] for row in frame.itertuples(index=False)]]
    return "\n".join("| " + " | ".join(map(str, row)) + " |" for row in rows)


def _cell(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


@dataclass
class Section:
    """One part of the report: a heading, how to read it, and a table and/or a figure."""

    title: str
    text: str = ""
    table: pd.DataFrame | None = None
    figure: str | None = None  # key of the figure drawn for this section


def key_value_table(rows: list[tuple[str, Any]], columns=("measure", "value")) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=list(columns))


def to_markdown(title: str, sections: list[Section], figure_files: dict[str, str]) -> str:
    lines = [f"# {title}", ""]
    for section in sections:
        lines += [f"## {section.title}", ""]
        if section.text:
            lines += [section.text, ""]
        if section.table is not None:
            lines += [markdown_table(section.table), ""]
        if section.figure:
            lines += [f"![{section.title}]({figure_files[section.figure]})", ""]
    return "\n".join(lines)


HTML_STYLE = """
body{font-family:system-ui,sans-serif;max-width:62rem;margin:2rem auto;padding:0 1rem;color:#222}
table{border-collapse:collapse;margin:.5rem 0}td,th{border:1px solid #ccc;padding:.25rem .6rem}
th{background:#f3f3f3;text-align:left}img{max-width:100%}code{background:#f3f3f3;padding:0 .2rem}
h2{border-bottom:1px solid #ddd;padding-bottom:.2rem;margin-top:2rem}"""


def _inline(text: str) -> str:
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(text, quote=False))


def to_html(title: str, sections: list[Section], figure_png: dict[str, bytes]) -> str:
    """One self-contained page: figures embedded as base64 PNG, no external resources."""
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}"
             f"</title><style>{HTML_STYLE}</style></head><body><h1>{html.escape(title)}</h1>"]
    for section in sections:
        parts.append(f"<h2>{html.escape(section.title)}</h2>")
        if section.text:
            parts.append(f"<p>{_inline(section.text)}</p>")
        if section.table is not None:
            parts.append(section.table.to_html(index=False, float_format=_cell, border=0))
        if section.figure:
            data = base64.b64encode(figure_png[section.figure]).decode()
            parts.append(f"<img alt='{html.escape(section.title)}' "
                         f"src='data:image/png;base64,{data}'>")
    return "\n".join(parts) + "\n</body></html>\n"
