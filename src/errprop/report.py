"""Reports: one list of blocks written as Markdown and as a self-contained-looking HTML page.

Pictures are linked by relative path (they live beside the report); every number in a report
comes from a JSON file beside it, which the report names.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Report:
    """Blocks of a report: headings, paragraphs, tables and images."""

    title: str
    blocks: list[tuple[str, object]] = field(default_factory=list)

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

    def html(self) -> str:
        parts = [f"<h1>{html.escape(self.title)}</h1>"]
        for kind, body in self.blocks:
            if kind == "h2":
                parts.append(f"<h2>{html.escape(str(body))}</h2>")
            elif kind == "p":
                parts.append(f"<p>{_inline_code(html.escape(str(body)))}</p>")
            elif kind == "table":
                headers, rows = body
                head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
                trs = "".join("<tr>" + "".join(f"<td>{html.escape(_fmt(v))}</td>" for v in r) + "</tr>"
                              for r in rows)
                parts.append(f"<table><thead><tr>{head}</tr></thead><tbody>{trs}</tbody></table>")
            else:
                path, caption = body
                parts.append(f'<figure><img src="{html.escape(path)}" alt="{html.escape(caption)}">'
                             f"<figcaption>{html.escape(caption)}</figcaption></figure>")
        style = ("body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem}"
                 "table{border-collapse:collapse;margin:1rem 0}"
                 "td,th{border:1px solid #ccc;padding:.3rem .6rem;text-align:right}"
                 "th{background:#f4f4f4}img{max-width:100%}figure{margin:1rem 0}"
                 "code{background:#f4f4f4;padding:0 .2rem}")
        return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(self.title)}"
                f"</title><style>{style}</style></head><body>{''.join(parts)}</body></html>\n")

    def write(self, folder: Path) -> Path:
        """Write ``report.md`` and ``report.html`` into ``folder``; returns the Markdown path."""
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "report.html").write_text(self.html())
        md = folder / "report.md"
        md.write_text(self.markdown())
        return md


def _fmt(v: object) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def _inline_code(text: str) -> str:
    """`code` spans of Markdown as <code> in HTML."""
    parts = text.split("`")
    return "".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(parts))
