"""A self-contained HTML report: pictures (relative ``<img src>`` paths), tables and plot images.

No server, no JavaScript, no external assets: the page opens from disk in any browser.
Used by ``mamakit demo``; anything that produces pictures and numbers can use it.
"""
from __future__ import annotations

import html
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from mamakit.fsutil import write_bytes_atomic

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;max-width:1200px;color:#222}
h1{margin-bottom:.2rem} .sub{color:#666;margin-top:0}
table{border-collapse:collapse;margin:1rem 0} th,td{border:1px solid #ccc;padding:.3rem .6rem;text-align:right}
th:first-child,td:first-child{text-align:left} th{background:#f4f4f4}
.row{display:flex;gap:.5rem;flex-wrap:wrap;align-items:flex-start;margin:.5rem 0}
figure{margin:0} figure img{max-width:230px;border:1px solid #ddd;background:#888}
figcaption{font-size:.8rem;color:#555;text-align:center} img.plot{max-width:560px;border:1px solid #ddd}
pre{background:#f7f7f7;padding:.6rem;overflow:auto;font-size:.8rem}
"""


@dataclass
class Report:
    """Collects sections, then :meth:`write` renders ``index`` HTML next to its pictures."""

    title: str
    subtitle: str = ""
    parts: list[str] = field(default_factory=list)

    def heading(self, text: str) -> None:
        self.parts.append(f"<h2>{html.escape(text)}</h2>")

    def text(self, text: str) -> None:
        self.parts.append(f"<p>{html.escape(text)}</p>")

    def pre(self, text: str) -> None:
        self.parts.append(f"<pre>{html.escape(text)}</pre>")

    def images(self, items: Sequence[tuple[str, str]], root: Path) -> None:
        """A row of pictures: ``(path, caption)``; paths are written relative to ``root``."""
        figs = []
        for path, caption in items:
            rel = os.path.relpath(path, root).replace(os.sep, "/")
            figs.append(f'<figure><img src="{html.escape(rel)}" alt="{html.escape(caption)}">'
                        f"<figcaption>{html.escape(caption)}</figcaption></figure>")
        self.parts.append('<div class="row">' + "".join(figs) + "</div>")

    def plot(self, path: str, caption: str, root: Path) -> None:
        rel = os.path.relpath(path, root).replace(os.sep, "/")
        self.parts.append(f'<figure><img class="plot" src="{html.escape(rel)}" alt="{html.escape(caption)}">'
                          f"<figcaption>{html.escape(caption)}</figcaption></figure>")

    def table(self, header: Sequence[str], rows: Sequence[Sequence], fmt: str = "{:.3f}") -> None:
        def cell(v):
            if isinstance(v, float):
                return html.escape(fmt.format(v))
            return html.escape("—" if v is None else str(v))

        head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
        body = "".join("<tr>" + "".join(f"<td>{cell(v)}</td>" for v in row) + "</tr>" for row in rows)
        self.parts.append(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")

    def render(self) -> str:
        return (
            "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{html.escape(self.title)}</title><style>{_CSS}</style></head><body>"
            f"<h1>{html.escape(self.title)}</h1><p class=\"sub\">{html.escape(self.subtitle)}</p>"
            + "\n".join(self.parts) + "</body></html>\n"
        )

    def write(self, path: str | os.PathLike) -> Path:
        path = Path(path)
        write_bytes_atomic(path, self.render().encode("utf-8"))
        return path


def markdown_table(header: Sequence[str], rows: Sequence[Sequence], fmt: str = "{:.3f}") -> str:
    """The same table as plain markdown (for terminals, RESULTS.md and model cards)."""

    def cell(v):
        return fmt.format(v) if isinstance(v, float) else ("—" if v is None else str(v))

    lines = ["| " + " | ".join(map(str, header)) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)
