"""Chunking: cleaned documents -> chunks that the embedding model sees whole.

Token-exact: a sentence-transformers model silently truncates anything longer than its
`max_seq_length` (special tokens included), so a chunk over the limit would be embedded without
its tail. Every chunk is therefore measured with the model's own tokenizer, and a final pass
splits anything still over the limit at token boundaries (character offsets from the fast
tokenizer, so no character is lost).

Category-aware:
- posts are short and self-contained: small chunks (`post_max_tokens`), cut at paragraphs;
- articles are packed paragraph by paragraph (sentences when a paragraph is too long), a new
  heading starts a new chunk, and consecutive chunks overlap by up to `article_overlap_tokens`
  of whole sentences so an idea cut at a boundary is still retrievable;
- code is cut along its structure: Python files at top-level `class`/`def` (classes too large are
  cut at their methods) via `ast`, other languages or unparseable files by line windows. Code
  chunks are verbatim slices of the file (joined back they give the file), with its path.

Chunk ids are UUID5(document id, position, content hash): deterministic, so re-running upserts
the same Qdrant points, and a chunk whose text did not change keeps its id (and its vector).
"""

from __future__ import annotations

import ast
import re
import uuid
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, Field

from twin_assets.domain.documents import Category, RepoFile, sha256_text
from twin_assets.domain.features import Chunk, CleanedDocument
from twin_assets.text.markdown import FENCE_RE, HEADING_RE

CHUNKER_VERSION = "1"
CHUNK_NAMESPACE = uuid.UUID("6f1c1a52-3d1e-5b8e-9a57-2d0c7f0e4b11")


class ChunkingConfig(BaseModel):
    """Chunk sizes in tokens *including* the model's special tokens. None = the model's maximum."""

    post_max_tokens: int = Field(default=128, ge=16)
    post_overlap_tokens: int = Field(default=16, ge=0)
    article_max_tokens: int | None = Field(default=None, ge=16)
    article_overlap_tokens: int = Field(default=48, ge=0)
    code_max_tokens: int | None = Field(default=None, ge=16)

    def fingerprint(self) -> str:
        return sha256_text(self.model_dump_json())[:12]


class TokenBudget:
    """Counts tokens exactly as the embedding model will see them."""

    def __init__(self, tokenizer: Any, max_seq_length: int):
        if not getattr(tokenizer, "is_fast", False):
            raise ValueError("token-exact chunking needs a fast tokenizer (character offsets)")
        self.tokenizer = tokenizer
        self.max_seq_length = int(max_seq_length)
        self.special_tokens = len(tokenizer("", add_special_tokens=True)["input_ids"])

    def count(self, texts: list[str]) -> list[int]:
        """Token counts with special tokens, as the model would see each text untruncated."""
        if not texts:
            return []
        enc = self.tokenizer(list(texts), add_special_tokens=True, truncation=False, verbose=False)
        return [len(ids) for ids in enc["input_ids"]]

    def content_tokens(self, texts: list[str]) -> list[int]:
        return [n - self.special_tokens for n in self.count(texts)]

    def limit(self, requested: int | None) -> int:
        return min(requested or self.max_seq_length, self.max_seq_length)

    def split_at_tokens(self, text: str, limit: int) -> list[str]:
        """Cut `text` into consecutive pieces of at most `limit` tokens (special tokens included).

        Pieces are exact character slices: joined, they give `text` back.
        """
        per_piece = limit - self.special_tokens
        enc = self.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True, verbose=False)
        offsets = enc["offset_mapping"]
        if len(offsets) <= per_piece:
            return [text]
        pieces, start = [], 0
        for i in range(per_piece, len(offsets), per_piece):
            cut = offsets[i][0]
            if cut > start:
                pieces.append(text[start:cut])
                start = cut
        pieces.append(text[start:])
        out: list[str] = []
        for piece, n in zip(pieces, self.count(pieces)):
            # Re-tokenising a slice can differ by a token at the cut; split again if so.
            out.extend([piece] if n <= limit else self.split_at_tokens_halving(piece, limit))
        return out

    def split_at_tokens_halving(self, text: str, limit: int) -> list[str]:
        if len(text) <= 1 or self.count([text])[0] <= limit:
            return [text]
        mid = len(text) // 2
        return self.split_at_tokens_halving(text[:mid], limit) + self.split_at_tokens_halving(text[mid:], limit)


@dataclass
class _Piece:
    text: str
    section: str | None = None
    file_path: str | None = None
    symbol: str | None = None
    language: str | None = None


# -- prose -------------------------------------------------------------------------------------

_SENTENCE_RE = re.compile(r"(?<=[.!?…])[\"')\]]*\s+(?=[\"'(\[]?[A-Z0-9#@*_-])")


@dataclass
class _Unit:
    text: str
    tokens: int  # content tokens (no special tokens)
    heading: bool = False
    joiner: str = "\n\n"  # what separates it from the previous unit in the same chunk


def _paragraphs(text: str) -> list[str]:
    """Blank-line separated blocks; a fenced code block stays one block even with blank lines."""
    blocks: list[str] = []
    current: list[str] = []
    in_code = False
    for line in text.split("\n"):
        if FENCE_RE.match(line):
            in_code = not in_code
        if not line.strip() and not in_code:
            if current:
                blocks.append("\n".join(current))
                current = []
            continue
        current.append(line)
    if current:
        blocks.append("\n".join(current))
    return blocks


def _prose_units(text: str, budget: TokenBudget, limit: int) -> list[_Unit]:
    """Headings, code blocks and sentences with their exact token counts, in reading order.

    Tokenising is nearly all of chunking's cost, so each text is tokenised once: plain
    paragraphs are never measured whole (only their sentences matter to packing), and all
    sentences of the document go to the tokenizer in one batch.
    """
    paragraphs = _paragraphs(text)
    per_chunk = limit - budget.special_tokens
    kinds: list[tuple[str, bool, bool]] = []  # (paragraph, heading, code)
    for para in paragraphs:
        kinds.append((para, bool(HEADING_RE.match(para)) and "\n" not in para, bool(FENCE_RE.match(para))))
    whole = iter(budget.content_tokens([p for p, heading, code in kinds if heading or code]))
    split = [[s for s in _SENTENCE_RE.split(p) if s.strip()] for p, heading, code in kinds if not (heading or code)]
    sent_tokens = iter(budget.content_tokens([s for sentences in split for s in sentences]))
    split_iter = iter(split)
    units: list[_Unit] = []
    for para, heading, is_code in kinds:
        if heading or is_code:
            n = next(whole)
            if heading or n <= per_chunk:
                units.append(_Unit(para, n, heading))
                continue
            parts = _line_windows(para, budget, limit)  # long code inside an article: cut by lines
            units += [_Unit(p, n_, joiner="") for p, n_ in zip(parts, budget.content_tokens(parts))]
            units[-len(parts)].joiner = "\n\n"
            continue
        first = True
        for sent in next(split_iter):
            m = next(sent_tokens)
            pieces = [sent] if m <= per_chunk else budget.split_at_tokens(sent, limit)
            counts = [m] if len(pieces) == 1 else budget.content_tokens(pieces)
            for piece, k in zip(pieces, counts):
                units.append(_Unit(piece, k, joiner="\n\n" if first else " "))
                first = False
    return units


def _pack(units: list[_Unit], budget: TokenBudget, limit: int, overlap: int) -> list[tuple[str, str | None]]:
    """Greedy packing of units into chunks of <= limit tokens, overlapping by whole units.

    Returns (text, section heading) pairs. Sums of unit counts are an estimate (joining can
    merge tokens for some tokenizers); `_enforce_limit` measures the real text afterwards.
    """
    per_chunk = limit - budget.special_tokens
    out: list[tuple[str, str | None]] = []
    section: str | None = None
    i = 0
    n = len(units)
    while i < n:
        chunk_section = section
        j, total = i, 0
        while j < n:
            u = units[j]
            if u.heading and j > i and any(not x.heading for x in units[i:j]):
                break  # a new section starts a new chunk
            cost = u.tokens + (1 if j > i else 0)
            if j > i and total + cost > per_chunk:
                break
            total += cost
            if u.heading:
                section = HEADING_RE.match(u.text).group(2).strip()
                if all(x.heading for x in units[i : j + 1]):
                    chunk_section = section
            j += 1
        text = units[i].text + "".join(u.joiner + u.text for u in units[i + 1 : j])
        out.append((text, chunk_section))
        if j >= n:
            break
        # overlap: restart at the earliest unit k > i whose tail up to j fits in `overlap`
        k = j
        if overlap and not units[j].heading:
            acc = 0
            while k - 1 > i and not units[k - 1].heading and acc + units[k - 1].tokens <= overlap:
                acc += units[k - 1].tokens
                k -= 1
        i = k
    return out


# -- code --------------------------------------------------------------------------------------

_PYTHON_SUFFIXES = (".py", ".pyi")
_PROSE_SUFFIXES = (".md", ".markdown", ".rst", ".txt")


def _line_windows(text: str, budget: TokenBudget, limit: int) -> list[str]:
    """Consecutive line ranges of <= limit tokens; an over-long single line is cut at tokens."""
    lines = text.splitlines(keepends=True)
    counts = budget.content_tokens(lines)
    per_chunk = limit - budget.special_tokens
    out: list[str] = []
    current: list[str] = []
    total = 0
    for line, n in zip(lines, counts):
        if n > per_chunk:
            if current:
                out.append("".join(current))
                current, total = [], 0
            out.extend(budget.split_at_tokens(line, limit))
            continue
        if current and total + n > per_chunk:
            out.append("".join(current))
            current, total = [], 0
        current.append(line)
        total += n
    if current:
        out.append("".join(current))
    return out


def _node_start(node: ast.stmt, lines: list[str]) -> int:
    """0-based first line of a definition, including decorators and the comments right above."""
    start = min([d.lineno for d in getattr(node, "decorator_list", [])] + [node.lineno]) - 1
    while start > 0 and lines[start - 1].lstrip().startswith("#"):
        start -= 1
    return start


def _structural_segments(
    body: list[ast.stmt], lines: list[str], lo: int, hi: int, prefix: str = "", head: str = "module"
) -> list[tuple[int, int, str]]:
    """Contiguous (start, end, label) line ranges covering lines[lo:hi] exactly.

    `prefix` qualifies nested names (class name for methods); `head` labels the code before
    the first definition and between definitions.
    """
    marks: list[tuple[int, str]] = [(lo, head)]
    prev_was_def = False
    for node in body:
        is_def = isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
        if is_def:
            kind = "class" if isinstance(node, ast.ClassDef) else "def"
            name = f"{prefix}.{node.name}" if prefix else node.name
            marks.append((max(_node_start(node, lines), lo), f"{kind} {name}"))
        elif prev_was_def:
            marks.append((node.lineno - 1, head))
        prev_was_def = is_def
    marks.sort(key=lambda m: m[0])
    segments = []
    for (start, label), nxt in zip(marks, marks[1:] + [(hi, "")]):
        end = nxt[0]
        if end > start:
            segments.append((start, end, label))
    return segments


def _python_pieces(file: RepoFile, budget: TokenBudget, limit: int) -> list[_Piece] | None:
    try:
        tree = ast.parse(file.content)
    except (SyntaxError, ValueError):
        return None
    lines = file.content.splitlines(keepends=True)
    by_start = {}
    for n in tree.body:
        if isinstance(n, ast.ClassDef):
            by_start[f"class {n.name}"] = n
    pieces: list[_Piece] = []
    for start, end, label in _structural_segments(tree.body, lines, 0, len(lines), ""):
        text = "".join(lines[start:end])
        if not text.strip():
            continue
        if budget.count([text])[0] <= limit:
            pieces.append(_Piece(text, file_path=file.path, symbol=label, language="python"))
            continue
        cls = by_start.get(label)
        sub = (
            _structural_segments(cls.body, lines, start, end, prefix=cls.name, head=label)
            if cls is not None
            else [(start, end, label)]
        )
        for s, e, sub_label in sub:
            sub_text = "".join(lines[s:e])
            if not sub_text.strip():
                continue
            for k, part in enumerate(_line_windows(sub_text, budget, limit)):
                tag = sub_label if k == 0 else f"{sub_label} (part {k + 1})"
                pieces.append(_Piece(part, file_path=file.path, symbol=tag, language="python"))
    return pieces


def _code_pieces(file: RepoFile, budget: TokenBudget, limit: int, prose_limit: int, overlap: int) -> list[_Piece]:
    path = file.path.lower()
    language = (file.language or "").lower() or None
    if path.endswith(_PYTHON_SUFFIXES) or language == "python":
        pieces = _python_pieces(file, budget, limit)
        if pieces is not None:
            return pieces
    if path.endswith(_PROSE_SUFFIXES) or language in {"markdown", "text", "rst"}:
        units = _prose_units(file.content, budget, prose_limit)
        return [
            _Piece(text, section=section, file_path=file.path, language=language or "markdown")
            for text, section in _pack(units, budget, prose_limit, overlap)
        ]
    pieces, line_no = [], 1
    for text in _line_windows(file.content, budget, limit):
        n_lines = text.count("\n")
        if text.strip():
            end = line_no + max(n_lines - (1 if text.endswith("\n") else 0), 0)
            pieces.append(_Piece(text, file_path=file.path, symbol=f"lines {line_no}-{end}", language=language))
        line_no += n_lines
    return pieces


# -- documents ---------------------------------------------------------------------------------


def chunk_id(document_id: str, position: int, content: str) -> str:
    return str(uuid.uuid5(CHUNK_NAMESPACE, f"{document_id}:{position}:{sha256_text(content)}"))


def _enforce_limit(pieces: list[_Piece], budget: TokenBudget, limit: int) -> list[tuple[_Piece, int]]:
    """The guarantee: measure every final text with the real tokenizer; cut what is still over."""
    out: list[tuple[_Piece, int]] = []
    for piece, n in zip(pieces, budget.count([p.text for p in pieces])):
        if n <= limit:
            out.append((piece, n))
            continue
        parts = budget.split_at_tokens(piece.text, limit)
        for part, m in zip(parts, budget.count(parts)):
            out.append((_Piece(part, piece.section, piece.file_path, piece.symbol, piece.language), m))
    return out


def chunk_document(doc: CleanedDocument, budget: TokenBudget, config: ChunkingConfig | None = None) -> list[Chunk]:
    """All chunks of one cleaned document, in reading order, each within the model's limit."""
    config = config or ChunkingConfig()
    pieces: list[_Piece] = []
    if doc.category == Category.POSTS:
        limit = budget.limit(config.post_max_tokens)
        units = _prose_units(doc.content, budget, limit)
        for u in units:  # posts have no sections; line breaks join paragraphs
            u.heading = False
        pieces = [_Piece(t, language=doc.language) for t, _ in _pack(units, budget, limit, config.post_overlap_tokens)]
    else:
        prose_limit = budget.limit(config.article_max_tokens)
        if doc.content.strip():
            units = _prose_units(doc.content, budget, prose_limit)
            pieces = [
                _Piece(t, section=s, language=doc.language)
                for t, s in _pack(units, budget, prose_limit, config.article_overlap_tokens)
            ]
        code_limit = budget.limit(config.code_max_tokens)
        for file in doc.files:
            pieces += _code_pieces(file, budget, code_limit, prose_limit, config.article_overlap_tokens)
    limit = budget.max_seq_length
    if doc.category == Category.POSTS:
        limit = budget.limit(config.post_max_tokens)
    chunks = []
    for position, (piece, n) in enumerate(_enforce_limit([p for p in pieces if p.text.strip()], budget, limit)):
        chunks.append(
            Chunk(
                id=chunk_id(doc.id, position, piece.text),
                author_id=doc.author_id,
                document_id=doc.id,
                category=doc.category,
                platform=doc.platform,
                link=doc.link,
                title=doc.title,
                position=position,
                content=piece.text,
                token_count=n,
                section=piece.section,
                file_path=piece.file_path,
                symbol=piece.symbol,
                language=piece.language,
                source_hash=doc.content_hash,
            )
        )
    return chunks
