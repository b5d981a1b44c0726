"""Rich displays for notebooks: HTML tables and inline SVG, built as escaped strings.

Jupyter calls an object's ``_repr_html_`` when it has one; these helpers build
that HTML. Every piece of text is escaped, and the result is well-formed XML
(the tests parse it), so it renders the same in Jupyter, VS Code and Colab.
"""

from __future__ import annotations

import html
import io
import re
from collections.abc import Sequence
from typing import Any

_PROLOGUE = re.compile(r"^.*?(?=<svg)", re.S)  # the XML declaration and doctype before <svg


def table(header: Sequence[str], rows: Sequence[Sequence[Any]], *, indents: Sequence[int] = ()) -> str:
    """An HTML table; numbers right-aligned, the first column indented by ``indents`` levels."""

    def cell(tag: str, value: Any, column: int, indent: int = 0) -> str:
        style = []
        if column and isinstance(value, (int, float)):
            style.append("text-align:right")
            value = f"{value:,}" if isinstance(value, int) else f"{value:.4g}"
        if indent:
            style.append(f"padding-left:{1.2 * indent:g}em")
        attribute = f' style="{";".join(style)}"' if style else ""
        return f"<{tag}{attribute}>{html.escape(str(value))}</{tag}>"

    head = "".join(cell("th", h, 0) for h in header)
    body = "".join(
        "<tr>"
        + "".join(
            cell("td", v, i, indents[r] if i == 0 and r < len(indents) else 0) for i, v in enumerate(row)
        )
        + "</tr>"
        for r, row in enumerate(rows)
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def paragraph(text: str, *, bold: bool = False) -> str:
    inner = html.escape(text)
    return f"<p><b>{inner}</b></p>" if bold else f"<p>{inner}</p>"


def preformatted(text: str) -> str:
    return f"<pre>{html.escape(text)}</pre>"


def inline_svg(svg: bytes | str) -> str:
    """An SVG document as an element to embed in HTML (its XML prologue removed)."""
    text = svg.decode() if isinstance(svg, bytes) else svg
    return _PROLOGUE.sub("", text, count=1)


def figure_svg(figure: Any) -> str:
    """A matplotlib Figure as inline SVG."""
    from matplotlib.backends.backend_svg import FigureCanvasSVG

    buffer = io.StringIO()
    FigureCanvasSVG(figure).print_svg(buffer)
    return inline_svg(buffer.getvalue())


def sections(title: str, parts: Sequence[tuple[str, Sequence[str]]]) -> str:
    """A report: a title, then one collapsible list per non-empty part, ``(heading, items)``."""
    out = [paragraph(title, bold=True)]
    for heading, items in parts:
        if items:
            listed = "".join(f"<li>{html.escape(str(item))}</li>" for item in items)
            out.append(
                f'<details open="open"><summary>{html.escape(heading)} ({len(items)})</summary><ul>{listed}</ul></details>'
            )
    return block(*out)


def block(*parts: str) -> str:
    return "<div>" + "".join(parts) + "</div>"
