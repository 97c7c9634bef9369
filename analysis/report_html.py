"""The report's Markdown as one self-contained HTML page (``report.html``), figures embedded as base64.

Only the subset the report writes is understood: headings, ``- `` lists, pipe tables, ``![caption](path)``
images on a line of their own, paragraphs; inline code, bold and italics.
"""

from __future__ import annotations

import base64
import html
import re
from pathlib import Path

_CSS = """body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;max-width:1100px;margin:2em auto;
padding:0 1em;line-height:1.45;color:#222}table{border-collapse:collapse;margin:.6em 0;font-size:.88em}
td,th{border:1px solid #ccc;padding:.25em .5em;text-align:left;vertical-align:top}th{background:#f3f3f3}
code{background:#f4f4f4;padding:0 .2em}figure{margin:1em 0}figure img{max-width:100%}
figcaption{font-size:.9em;color:#444}h2{border-bottom:1px solid #ddd;padding-bottom:.2em}"""


def _inline(s: str) -> str:
    s = html.escape(s, quote=False)
    s = re.sub(r"`([^`]+)`", r"<code>\1</code>", s)
    s = re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", s)
    s = re.sub(r"(?<![\w*])\*([^*\s][^*]*)\*(?![\w*])", r"<em>\1</em>", s)
    return s


def markdown_to_html(md: str, base: Path, title: str) -> str:
    """Convert the report's Markdown subset (headings, lists, pipe tables, images, paragraphs) to one HTML
    page, embedding every ``![caption](path.png)`` image as base64."""
    out = [
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{_CSS}</style></head><body>"
    ]
    lines = md.splitlines()
    i = 0
    para: list[str] = []

    def flush() -> None:
        if para:
            out.append("<p>" + _inline(" ".join(para)) + "</p>")
            para.clear()

    while i < len(lines):
        ln = lines[i]
        if not ln.strip():
            flush()
            i += 1
            continue
        m = re.match(r"^(#{1,4}) (.*)$", ln)
        if m:
            flush()
            k = len(m.group(1))
            out.append(f"<h{k}>{_inline(m.group(2))}</h{k}>")
            i += 1
            continue
        m = re.match(r"^!\[(.*)\]\((.+)\)$", ln.strip())
        if m:
            flush()
            p = base / m.group(2)
            data = base64.b64encode(p.read_bytes()).decode() if p.exists() else ""
            out.append(
                f"<figure><img alt='{html.escape(m.group(1))}' src='data:image/png;base64,{data}'/></figure>"
            )
            i += 1
            continue
        if ln.startswith("|"):
            flush()
            rows = []
            while i < len(lines) and lines[i].startswith("|"):
                rows.append(lines[i])
                i += 1
            cells = [
                [c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", r.strip())[1:-1]] for r in rows
            ]
            head, body = cells[0], [c for c in cells[1:] if not all(set(x) <= {"-", ":"} for x in c)]
            out.append(
                "<table><thead><tr>" + "".join(f"<th>{_inline(h)}</th>" for h in head) + "</tr></thead>"
            )
            out.append(
                "<tbody>"
                + "".join("<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in r) + "</tr>" for r in body)
                + "</tbody></table>"
            )
            continue
        if ln.startswith("- "):
            flush()
            items = []
            while i < len(lines) and lines[i].startswith("- "):
                items.append(lines[i][2:])
                i += 1
            out.append("<ul>" + "".join(f"<li>{_inline(x)}</li>" for x in items) + "</ul>")
            continue
        para.append(ln)
        i += 1
    flush()
    out.append("</body></html>")
    return "\n".join(out) + "\n"
