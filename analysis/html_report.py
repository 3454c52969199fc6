"""The report as one self-contained HTML file: the Markdown report rendered, figures
embedded as base64 data: URIs, styles inline; no script and no external resource.

Renders only the Markdown the report sections write: headings (#, ##, ###), pipe tables,
"- " lists (two-space nesting), paragraphs, `code`, **bold**, [text](url) links and
images on a line of their own, ![alt](file.png), where the file lies in the run directory.
"""

from __future__ import annotations

import base64
import html
import re
from pathlib import Path

STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2em auto;
       max-width: 1400px; padding: 0 1em; color: #222; line-height: 1.45; }
h1 { font-size: 1.6em; } h2 { margin-top: 2em; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; margin: 0.8em 0; font-size: 0.88em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.5em; vertical-align: top; text-align: left; }
th { background: #f3f3f3; }
tr:nth-child(even) td { background: #fafafa; }
code { background: #f3f3f3; padding: 0 0.2em; }
img { max-width: 100%; border: 1px solid #eee; }
td.v-supported, td.v-better { background: #e3f4e3 !important; }
td.v-not-supported, td.v-worse { background: #f8dddd !important; }
td.v-inconclusive, td.v-not-significant, td.v-n-too-small { background: #fff5d6 !important; }
td.v-not-measured, td.v-not-testable-here { background: #eeeeee !important; color: #555; }
"""

# a table cell starting with one of these gets a class, so verdicts stand out
VERDICT_CLASSES = ("not supported", "supported", "inconclusive", "not testable here",
                   "not measured", "better",
                   "worse", "not significant", "n too small")
IMAGE = re.compile(r"^!\[([^\]]*)\]\(([^)\s]+)\)$")
INLINE = re.compile(r"`([^`]+)`|\*\*([^*]+)\*\*|\[([^\]]+)\]\(([^)\s]+)\)")


def inline(text: str) -> str:
    """Escape `text` and render `code`, **bold** and [text](url) inside it."""
    out, pos = [], 0
    for m in INLINE.finditer(text):
        out.append(html.escape(text[pos:m.start()]))
        code, bold, label, url = m.groups()
        if code is not None:
            out.append(f"<code>{html.escape(code)}</code>")
        elif bold is not None:
            out.append(f"<strong>{html.escape(bold)}</strong>")
        else:
            out.append(f'<a href="{html.escape(url, quote=True)}">{html.escape(label)}</a>')
        pos = m.end()
    return "".join(out) + html.escape(text[pos:])


def data_uri(path: Path) -> str:
    """The file as a data: URI (PNG, SVG or JPEG by suffix)."""
    kind = {".png": "image/png", ".svg": "image/svg+xml", ".jpg": "image/jpeg",
            ".jpeg": "image/jpeg"}.get(path.suffix.lower(), "application/octet-stream")
    return f"data:{kind};base64,{base64.b64encode(path.read_bytes()).decode('ascii')}"


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def _cell_class(text: str) -> str:
    low = text.lower()
    for v in VERDICT_CLASSES:
        if low.startswith(v):
            return f' class="v-{v.replace(" ", "-")}"'
    return ""


def _table(lines: list[str]) -> list[str]:
    head, body = _cells(lines[0]), [_cells(x) for x in lines[2:]]
    out = ["<table>", "<thead><tr>" + "".join(f"<th>{inline(c)}</th>" for c in head)
           + "</tr></thead>", "<tbody>"]
    for row in body:
        out.append("<tr>" + "".join(f"<td{_cell_class(c)}>{inline(c)}</td>" for c in row)
                   + "</tr>")
    return out + ["</tbody>", "</table>"]


def _list(lines: list[str]) -> list[str]:
    """Nested <ul> from "- " lines indented by two spaces per level (a sub-list sits
    inside its parent's <li>)."""
    out: list[str] = []
    stack: list[int] = []
    for line in lines:
        depth = (len(line) - len(line.lstrip(" "))) // 2
        if stack and depth <= stack[-1]:
            out.append("</li>")
            while stack and depth < stack[-1]:
                stack.pop()
                out.append("</ul></li>")
        if not stack or depth > stack[-1]:
            out.append("<ul>")
            stack.append(depth)
        out.append(f"<li>{inline(line.strip()[2:])}")
    out.append("</li>")
    while stack:
        stack.pop()
        out.append("</ul>")
        if stack:
            out.append("</li>")
    return out


def _image(alt: str, src: str, base: Path) -> str:
    path = base / src
    if "/" in src or src.startswith(".") or not path.is_file():
        return f"<p><em>figure {html.escape(src)} ({html.escape(alt)}) is missing</em></p>"
    return (f'<figure><img alt="{html.escape(alt, quote=True)}" src="{data_uri(path)}">'
            f"<figcaption>{html.escape(alt)}</figcaption></figure>")


def render(markdown: str, base: Path, title: str) -> str:
    """The HTML page for `markdown`, embedding the images it names from `base`."""
    lines = markdown.splitlines()
    body: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        if not line.strip():
            i += 1
            continue
        if line.startswith("#"):
            level = len(line) - len(line.lstrip("#"))
            body.append(f"<h{level}>{inline(line[level:].strip())}</h{level}>")
            i += 1
        elif line.startswith("|"):
            j = i
            while j < len(lines) and lines[j].startswith("|"):
                j += 1
            body += _table(lines[i:j])
            i = j
        elif line.lstrip().startswith("- "):
            j = i
            while j < len(lines) and lines[j].lstrip().startswith("- "):
                j += 1
            body += _list(lines[i:j])
            i = j
        elif m := IMAGE.match(line.strip()):
            body.append(_image(m.group(1), m.group(2), base))
            i += 1
        else:
            j = i
            while (j < len(lines) and lines[j].strip() and not lines[j].startswith(("#", "|"))
                   and not lines[j].lstrip().startswith("- ")
                   and not IMAGE.match(lines[j].strip())):
                j += 1
            body.append("<p>" + " ".join(inline(x.strip()) for x in lines[i:j]) + "</p>")
            i = j
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            f"<title>{html.escape(title)}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n"
            + "\n".join(body) + "\n</body>\n</html>\n")
