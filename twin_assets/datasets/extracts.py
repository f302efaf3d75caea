"""Cut the author's cleaned documents into extracts: the verbatim answers of the datasets.

Why extracts and not whole documents: a training target should be something one request could
plausibly ask for (a section, a post, a function) and fit a small model's context. Cuts fall on
paragraph boundaries, then sentence boundaries, never mid-sentence, so every extract is still the
author's own text, word for word. Each category is cut its own way: articles by heading-delimited
sections, posts whole, repositories by top-level functions/classes (Python) or whole files.
"""

from __future__ import annotations

import ast
import bisect
import re
from collections.abc import Callable, Sequence
from pathlib import PurePosixPath
from typing import Literal

from pydantic import BaseModel, Field

from twin_assets.domain.documents import Category, sha256_text
from twin_assets.domain.features import CleanedDocument

_HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$")
_SENTENCE_END = re.compile(r"(?<=[.!?…])[\"')\]]*\s+(?=[A-Z0-9\"'(\[])")
_CODE_EXT = {
    ".py": "python",
    ".js": "javascript",
    ".ts": "typescript",
    ".go": "go",
    ".rs": "rust",
    ".java": "java",
    ".rb": "ruby",
    ".sh": "bash",
    ".c": "c",
    ".cpp": "cpp",
    ".sql": "sql",
    ".toml": "toml",
    ".yaml": "yaml",
    ".yml": "yaml",
}


class ExtractParams(BaseModel):
    min_chars: int = 200
    max_chars: int = 2000


ExtractKind = Literal["section", "post", "function", "class", "file", "readme"]
"""What an extract is cut from: an article section, a post, a Python function or class, a whole
code file, or a section of a repository's prose file (README and the like)."""


class Extract(BaseModel):
    """A verbatim piece of one cleaned document, plus what an instruction can be written from."""

    id: str
    document_id: str
    content_hash: str  # hash of the cleaned document it was cut from (lineage)
    category: Category
    kind: ExtractKind
    title: str = ""
    heading: str = ""  # the section heading / symbol name / file path
    headings: list[str] = Field(default_factory=list)  # the document's outline
    text: str
    language: str = "unknown"  # natural language of the document
    code_language: str | None = None
    docstring: str = ""  # for code symbols


def split_sentences(text: str) -> list[str]:
    return [s for s in _SENTENCE_END.split(text.strip()) if s.strip()]


def _greedy(
    units: Sequence[str], min_chars: int, max_chars: int, sep: str, oversize: Callable[[str], list[str]]
) -> list[str]:
    """Greedy packing of units into pieces of at most `max_chars`; a unit longer than that is
    cut by `oversize` into pieces of its own; a too-short tail joins the previous piece if that
    still fits."""
    pieces: list[str] = []
    current: list[str] = []

    def flush() -> None:
        if current:
            pieces.append(sep.join(current))
            current.clear()

    for unit in units:
        if len(unit) > max_chars:
            flush()
            pieces.extend(oversize(unit))
            continue
        if current and len(sep.join([*current, unit])) > max_chars:
            flush()
        current.append(unit)
    flush()
    if len(pieces) >= 2 and len(pieces[-1]) < min_chars:
        merged = pieces[-2] + sep + pieces[-1]
        if len(merged) <= max_chars:
            pieces[-2:] = [merged]
    return pieces


_SPACE = re.compile(r"\s")


def cut_at_whitespace(text: str, min_chars: int, max_chars: int) -> list[str]:
    """Exact slices of `text`, each at most `max_chars` long, for a run with no sentence end
    inside the limit (a psql table pasted into a post, a log, a minified line): cut at the last
    line break of the window when it keeps at least half of it, else at its last whitespace,
    and a single token longer than the limit is cut hard. One pass, no recursion: the work
    grows with the text, the stack does not. A too-short tail joins the previous piece if the
    two still fit."""
    text = text.strip()
    max_chars = max(1, max_chars)
    spaces = [m.start() for m in _SPACE.finditer(text)]
    spans: list[tuple[int, int]] = []
    start, n = 0, len(text)
    while n - start > max_chars:
        end = start + max_chars  # the piece is text[start:cut], cut <= end
        line = text.rfind("\n", start + 1, end + 1)
        i = bisect.bisect_right(spaces, end) - 1
        space = spaces[i] if i >= 0 and spaces[i] > start else -1
        if line >= start + max_chars // 2:
            cut = line
        elif space > start:
            cut = space
        else:
            cut = end  # one token longer than the limit: hard cut
        spans.append((start, cut))
        # the next piece starts after the whitespace; from the start of its line when that run
        # holds a line break, so a table row keeps its indentation
        start, line_start = cut, -1
        while start < n and text[start].isspace():
            if text[start] == "\n":
                line_start = start + 1
            start += 1
        if line_start >= 0:
            start = line_start
    if start < n:
        spans.append((start, n))
    trimmed: list[tuple[int, int]] = []
    for a, b in spans:
        while b > a and text[b - 1].isspace():
            b -= 1
        if b > a:
            trimmed.append((a, b))
    if len(trimmed) >= 2:
        (a, _), (c, d) = trimmed[-2:]
        if d - c < min_chars and d - a <= max_chars:
            trimmed[-2:] = [(a, d)]
    return [text[a:b] for a, b in trimmed]


def pack_units(units: list[str], min_chars: int, max_chars: int, sep: str) -> list[str]:
    """Greedy packing of paragraphs into pieces of [min_chars, max_chars]; an oversize paragraph
    is packed by its sentences, an oversize sentence cut at whitespace (`cut_at_whitespace`);
    a too-short tail joins the previous piece if that still fits.

    Iterative by construction (three fixed levels: paragraphs, sentences, whitespace), never
    recursive on the input: a 2,000-character paragraph without sentence punctuation once sent
    this into infinite recursion and took the author's whole dataset down with it."""

    def by_whitespace(sentence: str) -> list[str]:
        return cut_at_whitespace(sentence, min_chars, max_chars)

    def by_sentences(paragraph: str) -> list[str]:
        return _greedy(split_sentences(paragraph), min_chars, max_chars, " ", by_whitespace)

    return _greedy(units, min_chars, max_chars, sep, by_sentences)


def _paragraphs(text: str) -> list[str]:
    return [p.strip() for p in re.split(r"\n\s*\n", text) if p.strip()]


def _sections(content: str) -> list[tuple[str, str]]:
    """(heading, body) pairs of a markdown-ish document; text before the first heading has ''."""
    sections: list[tuple[str, list[str]]] = [("", [])]
    for line in content.splitlines():
        m = _HEADING.match(line.strip())
        if m:
            sections.append((m.group(2).strip(), []))
        else:
            sections[-1][1].append(line)
    return [(h, "\n".join(body).strip()) for h, body in sections if "\n".join(body).strip()]


def _make(doc: CleanedDocument, kind: ExtractKind, heading: str, text: str, idx: int, **extra) -> Extract:
    return Extract(
        id=sha256_text(doc.id, kind, heading, str(idx), text)[:20],
        document_id=doc.id,
        content_hash=doc.content_hash,
        category=doc.category,
        kind=kind,
        title=doc.title or "",
        heading=heading,
        text=text,
        language=doc.language,
        **extra,
    )


def prose_extracts(
    doc: CleanedDocument, params: ExtractParams, kind: Literal["section", "readme"]
) -> list[Extract]:
    sections = _sections(doc.content)
    outline = [h for h, _ in sections if h]
    out: list[Extract] = []
    for heading, body in sections:
        if heading and heading == (doc.title or "") and not body:
            continue
        if heading and heading.strip().lower() == (doc.title or "").strip().lower():
            heading = ""  # the H1 repeats the title: this is the introduction
        for piece in pack_units(_paragraphs(body), params.min_chars, params.max_chars, "\n\n"):
            out.append(_make(doc, kind, heading, piece, len(out), headings=outline))
    return out


def post_extracts(doc: CleanedDocument, params: ExtractParams) -> list[Extract]:
    text = doc.content.strip()
    if not text:
        return []
    pieces = (
        [text]
        if len(text) <= params.max_chars
        else pack_units(_paragraphs(text), params.min_chars, params.max_chars, "\n\n")
    )
    return [_make(doc, "post", "", p, i) for i, p in enumerate(pieces)]


def python_symbols(source: str) -> list[tuple[Literal["function", "class"], str, str, str]]:
    """(kind, name, docstring, source) of each top-level function/class, decorators included."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        # not Python, or nested/long beyond what the parser's stack takes (a generated
        # `x = 1 + 1 + ...` module): cut the file like any other code file
        return []
    lines = source.splitlines()
    out: list[tuple[Literal["function", "class"], str, str, str]] = []
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            start = min([node.lineno, *(d.lineno for d in node.decorator_list)]) - 1
            segment = "\n".join(lines[start : node.end_lineno])
            kind: Literal["function", "class"] = "class" if isinstance(node, ast.ClassDef) else "function"
            out.append((kind, node.name, ast.get_docstring(node) or "", segment))
    return out


def code_extracts(doc: CleanedDocument, params: ExtractParams) -> list[Extract]:
    out: list[Extract] = []
    files = list(doc.files)
    for f in sorted(files, key=lambda f: f.path):
        suffix = PurePosixPath(f.path).suffix.lower()
        content = f.content.strip("\n")
        if not content.strip():
            continue
        if suffix in (".md", ".rst", ".txt"):
            for e in prose_extracts(doc.model_copy(update={"content": content}), params, "readme"):
                out.append(
                    e.model_copy(
                        update={"heading": e.heading or f.path, "id": sha256_text(e.id, f.path)[:20]}
                    )
                )
            continue
        lang = f.language or _CODE_EXT.get(suffix)
        if lang is None:
            continue
        symbols = python_symbols(content) if lang == "python" else []
        if symbols:
            for kind, name, doc_str, segment in symbols:
                if len(segment) > params.max_chars * 2:
                    continue  # a whole module in one class: too long to be one answer
                out.append(
                    _make(
                        doc,
                        kind,
                        f"{f.path}:{name}",
                        segment,
                        len(out),
                        code_language=lang,
                        docstring=doc_str,
                    )
                )
        elif len(content) <= params.max_chars * 2:
            out.append(_make(doc, "file", f.path, content, len(out), code_language=lang))
    return out


def extract_document(doc: CleanedDocument, params: ExtractParams | None = None) -> list[Extract]:
    params = params or ExtractParams()
    if doc.category == Category.ARTICLES:
        return prose_extracts(doc, params, "section")
    if doc.category == Category.POSTS:
        return post_extracts(doc, params)
    return code_extracts(doc, params)


def extract_all(docs: list[CleanedDocument], params: ExtractParams | None = None) -> list[Extract]:
    """Every extract of every document, in a stable order (documents by id, then position)."""
    out: list[Extract] = []
    for doc in sorted(docs, key=lambda d: d.id):
        out.extend(extract_document(doc, params))
    return out
