"""Jupyter notebooks read as what the author wrote: their code and Markdown cells.

A notebook on disk is JSON whose outputs (base64 images, tables, tracebacks) can be most of its
bytes and none of its author's writing. It is rendered in the "percent" script format that
jupytext and editors understand: each cell starts with a `# %%` line, Markdown cells are comment
lines, code cells are verbatim except for IPython magics and shell escapes (`%matplotlib`,
`!pip`), which are commented so the script still parses as Python and is cut at its functions.
Outputs, execution counts, metadata and raw cells are dropped.
"""

from __future__ import annotations

import json
from typing import Any

NOTEBOOK_SUFFIX = ".ipynb"
CELL_MARKER = "# %%"


class MalformedNotebook(ValueError):
    """The file is not notebook JSON (format 4 or 3 with cells)."""


def _source(cell: dict[str, Any]) -> str:
    src = cell.get("source", "")
    if isinstance(src, list):
        src = "".join(str(s) for s in src)
    if not isinstance(src, str):
        raise MalformedNotebook("a cell's source is neither text nor a list of lines")
    return src.replace("\r\n", "\n").replace("\r", "\n").strip("\n")


def notebook_language(nb: dict[str, Any]) -> str:
    meta = nb.get("metadata")
    meta = meta if isinstance(meta, dict) else {}
    for key, field in (("kernelspec", "language"), ("language_info", "name")):
        section = meta.get(key)
        value = section.get(field) if isinstance(section, dict) else None
        if isinstance(value, str) and value.strip():
            return value.strip().lower()
    return "python"


def _code(src: str) -> str:
    if src.lstrip().startswith("%%"):  # a cell magic: the whole cell is another language
        return "\n".join(f"# {line}" if line else "#" for line in src.split("\n"))
    out = []
    for line in src.split("\n"):
        stripped = line.lstrip()
        out.append(f"{line[: len(line) - len(stripped)]}# {stripped}" if stripped[:1] in ("%", "!") else line)
    return "\n".join(out)


def notebook_to_text(raw: str) -> tuple[str, str]:
    """(script text, language) of a notebook's JSON. Raises `MalformedNotebook`."""
    try:
        nb = json.loads(raw)
    except (json.JSONDecodeError, RecursionError) as exc:
        raise MalformedNotebook(f"not JSON: {exc}") from exc
    if not isinstance(nb, dict):
        raise MalformedNotebook("not a notebook object")
    cells = nb.get("cells")
    if cells is None and isinstance(nb.get("worksheets"), list):  # nbformat 3
        cells = [c for ws in nb["worksheets"] if isinstance(ws, dict) for c in ws.get("cells", [])]
    if not isinstance(cells, list):
        raise MalformedNotebook("no list of cells")
    language = notebook_language(nb)
    parts: list[str] = []
    for cell in cells:
        if not isinstance(cell, dict):
            raise MalformedNotebook("a cell is not an object")
        kind = cell.get("cell_type")
        src = _source(cell if "source" in cell else {"source": cell.get("input", "")})
        if not src.strip():
            continue
        if kind == "markdown":
            body = "\n".join(f"# {line}" if line else "#" for line in src.split("\n"))
            parts.append(f"{CELL_MARKER} [markdown]\n{body}\n")
        elif kind == "code":
            parts.append(f"{CELL_MARKER}\n{_code(src)}\n")
    return "\n".join(parts), language


def looks_like_notebook_json(text: str) -> bool:
    """A notebook still in its JSON form (a raw document crawled before notebooks were read)."""
    return text.lstrip().startswith("{")
