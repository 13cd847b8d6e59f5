"""Reports: one list of blocks written as Markdown and as one self-contained HTML page.

The Markdown links pictures by relative path (they live beside the report); the HTML embeds them
as data URIs, so ``report.html`` is a single file that can be mailed or archived. Every number in
a report comes from a JSON file beside it, which the report names.
"""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass, field
from pathlib import Path

from .files import write_text


@dataclass
class Report:
    """Blocks of a report: headings, paragraphs, tables and images."""

    title: str
    blocks: list[tuple[str, object]] = field(default_factory=list)

    def verdict(self, text: str) -> Report:
        """The report's conclusion, shown first and marked ``id="verdict"`` in the HTML."""
        self.blocks.append(("verdict", text))
        return self

    def heading(self, text: str) -> Report:
        self.blocks.append(("h2", text))
        return self

    def text(self, text: str) -> Report:
        self.blocks.append(("p", text))
        return self

    def table(self, headers: list[str], rows: list[list[object]]) -> Report:
        self.blocks.append(("table", (headers, rows)))
        return self

    def image(self, path: str, caption: str = "") -> Report:
        self.blocks.append(("img", (path, caption)))
        return self

    def markdown(self) -> str:
        out = [f"# {self.title}", ""]
        for kind, body in self.blocks:
            if kind == "h2":
                out += [f"## {body}", ""]
            elif kind == "p":
                out += [str(body), ""]
            elif kind == "verdict":
                out += ["> **Verdict.** " + str(body).replace("\n", "\n> "), ""]
            elif kind == "table":
                headers, rows = body
                out.append("| " + " | ".join(headers) + " |")
                out.append("|" + "---|" * len(headers))
                out += ["| " + " | ".join(_fmt(v) for v in row) + " |" for row in rows]
                out.append("")
            else:
                path, caption = body
                out += [f"![{caption}]({path})", ""]
        return "\n".join(out)

    def html(self, folder: Path | None = None) -> str:
        """The page; images are read from ``folder`` (relative paths) and embedded."""
        parts = [f"<h1>{html.escape(self.title)}</h1>"]
        for kind, body in self.blocks:
            if kind == "h2":
                parts.append(f"<h2>{html.escape(str(body))}</h2>")
            elif kind == "p":
                parts.append(f"<p>{_inline_code(html.escape(str(body)))}</p>")
            elif kind == "verdict":
                paras = "".join(f"<p>{_inline_code(html.escape(p))}</p>" for p in str(body).split("\n"))
                parts.append(f'<section id="verdict"><h2>Verdict</h2>{paras}</section>')
            elif kind == "table":
                headers, rows = body
                head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
                trs = "".join("<tr>" + "".join(f"<td>{html.escape(_fmt(v))}</td>" for v in r) + "</tr>"
                              for r in rows)
                parts.append(f"<table><thead><tr>{head}</tr></thead><tbody>{trs}</tbody></table>")
            else:
                path, caption = body
                parts.append(f'<figure><img src="{_embed(path, folder)}" alt="{html.escape(caption)}">'
                             f"<figcaption>{html.escape(caption)}</figcaption></figure>")
        style = ("body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem}"
                 "table{border-collapse:collapse;margin:1rem 0}"
                 "td,th{border:1px solid #ccc;padding:.3rem .6rem;text-align:right}"
                 "th{background:#f4f4f4}img{max-width:100%}figure{margin:1rem 0}"
                 "code{background:#f4f4f4;padding:0 .2rem}"
                 "#verdict{border-left:4px solid #2a6;background:#f3faf5;padding:.2rem 1rem}")
        return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(self.title)}"
                f"</title><style>{style}</style></head><body>{''.join(parts)}</body></html>\n")

    def write(self, folder: Path) -> Path:
        """Write ``report.md`` and ``report.html`` into ``folder``; returns the Markdown path."""
        write_text(folder / "report.html", self.html(folder))
        return write_text(folder / "report.md", self.markdown())


def _embed(path: str, folder: Path | None) -> str:
    """A picture as a ``data:`` URI (PNG/SVG/JPEG), so the page needs no other file."""
    file = Path(path) if folder is None else Path(folder) / path
    kind = {".png": "image/png", ".svg": "image/svg+xml", ".jpg": "image/jpeg",
            ".jpeg": "image/jpeg"}.get(file.suffix.lower(), "application/octet-stream")
    return f"data:{kind};base64," + base64.b64encode(file.read_bytes()).decode("ascii")


def _fmt(v: object) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def _inline_code(text: str) -> str:
    """`code` spans of Markdown as <code> in HTML."""
    parts = text.split("`")
    return "".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(parts))
