"""report.md and a self-contained report.html from one list of blocks, so both always say the same thing.

The HTML embeds every image as a base64 data URI (one file to mail or attach) and escapes every string, since
names, descriptions and paths come from user configs and trial directories.
"""

from __future__ import annotations

import base64
import html
import re
from dataclasses import dataclass, field


@dataclass
class Heading:
    level: int
    text: str

    @property
    def anchor(self) -> str:
        return re.sub(r"[^a-z0-9]+", "-", self.text.lower()).strip("-") or "section"


@dataclass
class Para:
    text: str
    kind: str = ""  # "" or "note" (highlighted box)


@dataclass
class Bullets:
    items: list
    flags: list = field(default_factory=list)  # True -> item marked ⚠ (rests on fewer seeds)


@dataclass
class Table:
    columns: list
    rows: list  # list of lists of str
    caption: str = ""


@dataclass
class Image:
    filename: str
    data: bytes
    alt: str
    caption: str = ""


# --- Markdown --------------------------------------------------------------------------------------------

def md_text(s) -> str:
    """Config strings go into Markdown too: keep raw HTML from being live when a viewer renders it."""
    return str(s).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("\n", " ")


def md_cell(s) -> str:
    return md_text(s).replace("|", "\\|")


def md_table(columns: list, rows: list) -> str:
    out = ["| " + " | ".join(md_cell(c) for c in columns) + " |",
           "|" + "|".join("---" for _ in columns) + "|"]
    out += ["| " + " | ".join(md_cell(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


def render_md(blocks: list) -> str:
    parts = []
    for b in blocks:
        if isinstance(b, Heading):
            parts.append("#" * b.level + " " + md_text(b.text))
        elif isinstance(b, Para):
            parts.append(("> **Note:** " if b.kind == "note" else "") + md_text(b.text))
        elif isinstance(b, Bullets):
            flags = b.flags or [False] * len(b.items)
            parts.append("\n".join(f"- {md_text(t)}{' ⚠' if f else ''}" for t, f in zip(b.items, flags)))
        elif isinstance(b, Table):
            parts.append((f"*{md_text(b.caption)}*\n\n" if b.caption else "") + md_table(b.columns, b.rows))
        elif isinstance(b, Image):
            parts.append(f"![{md_text(b.alt)}]({b.filename})" + (f"\n\n*{md_text(b.caption)}*" if b.caption else ""))
    return "\n\n".join(parts) + "\n"


# --- HTML ------------------------------------------------------------------------------------------------

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif;max-width:1200px;
 margin:1.5em auto;padding:0 1.2em;color:#1f2328;line-height:1.45;background:#fff}
h1{font-size:1.7em;margin-bottom:.2em}
h2{font-size:1.35em;margin-top:2em;padding-bottom:.2em;border-bottom:1px solid #d0d7de}
h3{font-size:1.08em;margin-top:1.4em}
nav{font-size:.92em;margin:.6em 0 1.2em;color:#555}
nav a{margin-right:1em;color:#0969da;text-decoration:none}
.tablewrap{overflow-x:auto;margin:.4em 0 1.4em}
table{border-collapse:collapse;font-size:.86em}
caption{caption-side:top;text-align:left;color:#555;padding:.2em 0 .4em;font-style:italic}
th,td{border:1px solid #d0d7de;padding:.25em .55em;text-align:left;vertical-align:top}
th{background:#f6f8fa;font-weight:600}
tr:nth-child(even) td{background:#fbfcfd}
td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
figure{margin:1em 0 2.2em}
figure img{max-width:100%;height:auto;border:1px solid #eaeef2}
figcaption{color:#555;font-size:.9em;margin-top:.3em}
.note{background:#fff8e1;border-left:4px solid #d4a72c;padding:.5em .8em;margin:.8em 0}
li{margin:.25em 0}
li.partial{color:#7d4e00}
.flag{color:#bc4c00}
"""

_NUMERIC = re.compile(r"^[\[(]?[−+\-]?\d")


def _esc(s) -> str:
    return html.escape(str(s), quote=True)


def html_table(columns: list, rows: list, caption: str = "") -> str:
    out = ['<div class="tablewrap"><table>']
    if caption:
        out.append(f"<caption>{_esc(caption)}</caption>")
    out.append("<thead><tr>" + "".join(f"<th>{_esc(c)}</th>" for c in columns) + "</tr></thead><tbody>")
    # A column is right-aligned when every cell in it is a number (or a dash for "no value").
    numeric = [all(_NUMERIC.match(str(r[j])) or str(r[j]) in ("—", "") for r in rows if j < len(r))
               for j in range(len(columns))]
    for r in rows:
        cells = []
        for j, c in enumerate(r):
            s = str(c)
            cls = ' class="num"' if j < len(numeric) and numeric[j] and _NUMERIC.match(s) else ""
            cells.append(f"<td{cls}>{_esc(s)}</td>")
        out.append("<tr>" + "".join(cells) + "</tr>")
    out.append("</tbody></table></div>")
    return "\n".join(out)


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def unique_anchors(blocks: list) -> dict:
    """id(heading) -> its anchor, numbered from the second use on ("is-one-robust-model-enough-2"): a conclusions
    section and its table share a title, and an id must be unique for a link to reach the one it names."""
    seen: dict = {}
    out = {}
    for b in blocks:
        if isinstance(b, Heading):
            seen[b.anchor] = seen.get(b.anchor, 0) + 1
            out[id(b)] = b.anchor if seen[b.anchor] == 1 else f"{b.anchor}-{seen[b.anchor]}"
    return out


def render_html(blocks: list, title: str) -> str:
    body = []
    anchors = unique_anchors(blocks)
    toc = [b for b in blocks if isinstance(b, Heading) and b.level == 2]
    for b in blocks:
        if isinstance(b, Heading):
            body.append(f'<h{b.level} id="{_esc(anchors[id(b)])}">{_esc(b.text)}</h{b.level}>')
            if b.level == 1 and toc:
                body.append("<nav>" + "".join(f'<a href="#{_esc(anchors[id(h)])}">{_esc(h.text)}</a>' for h in toc)
                            + "</nav>")
        elif isinstance(b, Para):
            cls = ' class="note"' if b.kind == "note" else ""
            body.append(f"<p{cls}>{_esc(b.text)}</p>")
        elif isinstance(b, Bullets):
            flags = b.flags or [False] * len(b.items)
            items = []
            for t, f in zip(b.items, flags):
                if f:
                    items.append(f'<li class="partial">{_esc(t)} <span class="flag" title="rests on fewer seeds than '
                                 f'planned">⚠</span></li>')
                else:
                    items.append(f"<li>{_esc(t)}</li>")
            body.append("<ul>\n" + "\n".join(items) + "\n</ul>")
        elif isinstance(b, Table):
            body.append(html_table(b.columns, b.rows, b.caption))
        elif isinstance(b, Image):
            cap = f"<figcaption>{_esc(b.caption)}</figcaption>" if b.caption else ""
            body.append(f'<figure><img src="{data_uri(b.data)}" alt="{_esc(b.alt)}">{cap}</figure>')
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f"<title>{_esc(title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n"
            + "\n".join(body) + "\n</body>\n</html>\n")
