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
- repositories are chunked once, from their files (never from a prose rendering of them):
  Python at top-level `class`/`def` via `ast`; a definition over the budget is packed from its
  statements (methods, body statements, recursively inside a loop or `try`), never cut inside a
  statement, and each part is labelled ("class GPT (part 2/3)") and, after the first, starts
  with its enclosing signatures as a comment (`# in class GPT(nn.Module): > def forward(...):`),
  so no chunk is a bare header and none loses where it lives. Other languages, unparseable
  Python and notebooks that do not parse are cut between lines, preferring blank lines and
  closing braces; plain text files (a list of URLs, requirements.txt) between lines; Markdown
  and reStructuredText as prose. Code chunks are verbatim slices of the file after that
  optional context line (joined back without it they give the file), with its path;
- Markdown tables (a run of lines starting with `|`, in an article, a post or a Markdown file)
  are cut between rows, never inside one: each chunk after the first that holds part of a table
  starts with the table's header row and separator line, so every chunk is a readable table,
  and the chunks of a split table are labelled "table (part 2/5)" (`symbol`) under their
  section heading. Rows are never repeated as overlap. A row alone over the budget is cut at
  cell boundaries (` | `), then like an over-long sentence; never mid-word.

Chunk ids are UUID5(document id, position, content hash): deterministic, so re-running upserts
the same Qdrant points, and a chunk whose text did not change keeps its id (and its vector).
"""

from __future__ import annotations

import ast
import re
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, Field

from twin_assets.domain.documents import Category, RepoFile, sha256_text
from twin_assets.domain.features import Chunk, CleanedDocument
from twin_assets.text.markdown import FENCE_RE, HEADING_RE

CHUNKER_VERSION = "3"  # 2: repositories chunked once, from their files; code cut at statements
# 3: Markdown tables cut between rows, each part repeating the header row and separator
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
        for piece, n in zip(pieces, self.count(pieces), strict=True):
            # Re-tokenising a slice can differ by a token at the cut; split again if so.
            out.extend([piece] if n <= limit else self.split_at_tokens_halving(piece, limit))
        return out

    def split_at_tokens_halving(self, text: str, limit: int) -> list[str]:
        if len(text) <= 1 or self.count([text])[0] <= limit:
            return [text]
        mid = len(text) // 2
        return self.split_at_tokens_halving(text[:mid], limit) + self.split_at_tokens_halving(
            text[mid:], limit
        )


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
    table: int | None = None  # rows of a Markdown table: the table's index in the document
    lead: str = ""  # put before it when it starts a chunk: its table's header and separator
    lead_tokens: int = 0  # tokens of `lead` (with the line break after it)


# A row of a Markdown table, and the line under its header row ("|---|:---:|").
_TABLE_LINE_RE = re.compile(r"^\s*\|")
_TABLE_SEPARATOR_RE = re.compile(r"^\s*\|?\s*:?-+:?\s*(\|\s*:?-+:?\s*)*\|?\s*$")
# A cell boundary: an unescaped pipe and the blanks before it (a cut goes right before them).
_CELL_BOUNDARY_RE = re.compile(r"[ \t]*(?<!\\)\|")


def _segments(para: str) -> list[tuple[str, bool]]:
    """A paragraph as (text, is_table) runs in reading order: a table is a run of lines that
    start with `|` (two or more, or one that also ends with `|`); the lines around it are prose.
    A paragraph without a table is one prose run, itself."""
    lines = para.split("\n")
    runs: list[tuple[list[str], bool]] = []
    for line in lines:
        is_row = bool(_TABLE_LINE_RE.match(line))
        if runs and runs[-1][1] == is_row:
            runs[-1][0].append(line)
        else:
            runs.append(([line], is_row))
    out: list[tuple[str, bool]] = []
    for run, is_row in runs:
        table = is_row and (len(run) > 1 or run[0].rstrip().endswith("|"))
        if out and not table and not out[-1][1]:
            out[-1] = (out[-1][0] + "\n" + "\n".join(run), False)
        else:
            out.append(("\n".join(run), table))
    return out


def _split_row(row: str, budget: TokenBudget, per_chunk: int) -> list[str]:
    """One table row over the budget: cut right before a cell's pipe (so each piece reads as
    cells), greedily; a single cell over the budget is cut like an over-long sentence.

    Exact slices: joined, they give `row` back."""
    cuts = [
        m.start()
        for m in _CELL_BOUNDARY_RE.finditer(row)
        if row[: m.start()].strip() and row[m.end() :].strip()
    ]
    parts = [row[a:b] for a, b in zip([0, *cuts], [*cuts, len(row)], strict=True)]
    return _pack_slices(parts, budget, per_chunk, lambda part: _split_long_text(part, budget, per_chunk))


def _pack_slices(
    parts: list[str], budget: TokenBudget, per_chunk: int, split_long: Callable[[str], list[str]]
) -> list[str]:
    """Consecutive slices of one text packed greedily into pieces of at most `per_chunk` tokens;
    a slice over the budget on its own is handed to `split_long`. Joined, the pieces give the
    slices back."""
    out: list[str] = []
    current, total = "", 0
    for part, n in zip(parts, budget.content_tokens(parts), strict=True):
        if n > per_chunk:
            if current:
                out.append(current)
                current, total = "", 0
            out.extend(split_long(part))
            continue
        if current and total + n > per_chunk:
            out.append(current)
            current, total = "", 0
        current += part
        total += n
    if current:
        out.append(current)
    return out


def _table_units(
    lines: list[str], counts: list[int], budget: TokenBudget, per_chunk: int, joiner: str, index: int
) -> list[_Unit]:
    """A table's rows as units: the first holds the header row and separator with the first row
    (a header is never left alone at the end of a chunk), the others carry the header as their
    `lead`. A header over half the budget is not repeated (it would crowd out the rows); one
    over the whole budget is not kept together either (its two lines are then rows like any)."""
    head = 2 if len(lines) >= 2 and _TABLE_SEPARATOR_RE.match(lines[1]) else 0
    head_tokens = counts[0] + counts[1] + 2 if head else 0  # both lines, the line breaks after them
    if head_tokens > per_chunk:
        head, head_tokens = 0, 0
    header = lines[0] + "\n" + lines[1] + "\n" if head else ""
    repeat = bool(head) and head_tokens <= per_chunk // 2
    lead, lead_tokens = (header, head_tokens) if repeat else ("", 0)
    room = per_chunk - lead_tokens
    units: list[_Unit] = []
    for line, n in zip(lines[head:], counts[head:], strict=True):
        pieces = [line] if n <= room else _split_row(line, budget, room)
        piece_counts = [n] if len(pieces) == 1 else budget.content_tokens(pieces)
        for k, (piece, m) in enumerate(zip(pieces, piece_counts, strict=True)):
            # the pieces of one over-long row are exact slices: joined back with nothing
            units.append(
                _Unit(
                    piece, m, joiner="\n" if k == 0 else "", table=index, lead=lead, lead_tokens=lead_tokens
                )
            )
    if head and units and head_tokens + units[0].tokens <= per_chunk:
        first = units[0]
        units[0] = _Unit(header + first.text, head_tokens + first.tokens, table=index)
    elif head:  # a header with nothing under it, or too long to share a chunk with the first row
        units.insert(0, _Unit(header.rstrip("\n"), head_tokens - 1, table=index))
    units[0].joiner = joiner
    return units


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
    # (text, heading, code, table, joiner before it): a paragraph holding a table is its runs
    kinds: list[tuple[str, bool, bool, bool, str]] = []
    for para in paragraphs:
        heading, is_code = bool(HEADING_RE.match(para)) and "\n" not in para, bool(FENCE_RE.match(para))
        if heading or is_code:
            kinds.append((para, heading, is_code, False, "\n\n"))
            continue
        for k, (run, table) in enumerate(_segments(para)):
            kinds.append((run, False, False, table, "\n\n" if k == 0 else "\n"))
    whole = iter(budget.content_tokens([p for p, heading, code, _, _ in kinds if heading or code]))
    split = [
        [s for s in _SENTENCE_RE.split(p) if s.strip()]
        for p, heading, code, table, _ in kinds
        if not (heading or code or table)
    ]
    sent_tokens = iter(budget.content_tokens([s for sentences in split for s in sentences]))
    split_iter = iter(split)
    rows = [p.split("\n") for p, _, _, table, _ in kinds if table]
    row_tokens = iter(budget.content_tokens([r for lines in rows for r in lines]))
    rows_iter = iter(rows)
    units: list[_Unit] = []
    tables = 0
    for para, heading, is_code, table, joiner in kinds:
        if table:
            lines = next(rows_iter)
            counts = [next(row_tokens) for _ in lines]
            units += _table_units(lines, counts, budget, per_chunk, joiner, tables)
            tables += 1
            continue
        if heading or is_code:
            n = next(whole)
            if heading or n <= per_chunk:
                units.append(_Unit(para, n, heading))
                continue
            parts = _line_windows(para, budget, limit)  # long code inside an article: cut by lines
            units += [
                _Unit(p, n_, joiner="") for p, n_ in zip(parts, budget.content_tokens(parts), strict=True)
            ]
            units[-len(parts)].joiner = "\n\n"
            continue
        first = True
        for sent in next(split_iter):
            m = next(sent_tokens)
            pieces = [sent] if m <= per_chunk else _split_oversized(sent, budget, limit)
            counts = [m] if len(pieces) == 1 else budget.content_tokens(pieces)
            for k_, (piece, k) in enumerate(zip(pieces, counts, strict=True)):
                # the pieces of one over-long sentence are exact slices: joined back with nothing
                units.append(_Unit(piece, k, joiner=(joiner if first else " ") if k_ == 0 else ""))
                first = False
    return units


def _split_oversized(text: str, budget: TokenBudget, limit: int) -> list[str]:
    """A "sentence" over the budget: a run of lines (a list of links, a table) is cut between
    its lines, one long line at sentence ends and then spaces; tokens are the last resort."""
    if "\n" in text.strip():
        return [w.text for w in _code_windows(text, budget, limit, _cut_score_text)]
    return _split_long_text(text, budget, limit - budget.special_tokens)


def _pack(
    units: list[_Unit], budget: TokenBudget, limit: int, overlap: int
) -> list[tuple[str, str | None, str | None]]:
    """Greedy packing of units into chunks of <= limit tokens, overlapping by whole units.

    Returns (text, section heading, label) triples; the label names the part of a table split
    over several chunks ("table (part 2/5)"), None otherwise. A chunk that starts inside a table
    starts with its header (`_Unit.lead`); table rows are never repeated as overlap. Sums of
    unit counts are an estimate (joining can merge tokens for some tokenizers);
    `_enforce_limit` measures the real text afterwards.
    """
    per_chunk = limit - budget.special_tokens
    out: list[tuple[str, str | None]] = []
    chunk_tables: list[int | None] = []  # the first table each chunk holds rows of
    section: str | None = None
    i = 0
    n = len(units)
    while i < n:
        chunk_section = section
        j, total = i, units[i].lead_tokens
        while j < n:
            u = units[j]
            if u.heading and j > i and any(not x.heading for x in units[i:j]):
                break  # a new section starts a new chunk
            cost = u.tokens + (1 if j > i else 0)
            if j > i and total + cost > per_chunk:
                break
            total += cost
            if u.heading:
                heading = HEADING_RE.match(u.text)
                section = heading.group(2).strip() if heading else u.text.strip()
                if all(x.heading for x in units[i : j + 1]):
                    chunk_section = section
            j += 1
        head = units[i]
        start = head.text.lstrip() if head.table is not None and not head.joiner else head.text
        text = head.lead + start + "".join(u.joiner + u.text for u in units[i + 1 : j])
        out.append((text, chunk_section))
        chunk_tables.append(next((u.table for u in units[i:j] if u.table is not None), None))
        if j >= n:
            break
        # overlap: restart at the earliest unit k > i whose tail up to j fits in `overlap`
        k = j
        if overlap and not units[j].heading:
            acc = 0
            while (
                k - 1 > i
                and not units[k - 1].heading
                and units[k - 1].table is None
                and acc + units[k - 1].tokens <= overlap
            ):
                acc += units[k - 1].tokens
                k -= 1
        i = k
    parts: dict[int, int] = {}
    for table in chunk_tables:
        if table is not None:
            parts[table] = parts.get(table, 0) + 1
    seen: dict[int, int] = {}
    labelled: list[tuple[str, str | None, str | None]] = []
    for (text, chunk_section), table in zip(out, chunk_tables, strict=True):
        label = None
        if table is not None and parts[table] > 1:
            seen[table] = seen.get(table, 0) + 1
            label = f"table (part {seen[table]}/{parts[table]})"
        labelled.append((text, chunk_section, label))
    return labelled


# -- code --------------------------------------------------------------------------------------

_PYTHON_SUFFIXES = (".py", ".pyi")
# the crawler's file header, as raw content has it and as the old Markdown cleaner left it
_RENDERED_RE = re.compile(r"\A\s*==> \S[^\n]* <==")
_NOTEBOOK_SUFFIXES = (".ipynb",)
_PROSE_SUFFIXES = (".md", ".markdown", ".rst")
_PROSE_LANGUAGES = {"markdown", "rst"}
_WORD_GAP_RE = re.compile(r"\s+")
_CELL_MARKER = "# %%"
_OPENS = ("{", "(", "[", ",", "\\", "=", ":", "&&", "||", "+", "->", "=>", "|")
_CONTINUES = ("}", ")", "]", ".", "&&", "||", "+", "?", ":", "else", "elif", "except", "finally", "catch")
_CLOSERS = frozenset({"}", "};", "});", "})", "]", "];", ")", ");", "end", "fi", "done", "esac"})


def _cut_score_code(prev: str, nxt: str) -> int:
    """How good a cut between two lines of code is: after a blank line or a closing brace and
    before a line at the left margin is best; after an opening line or before a continuation
    (`}`, `else`, `.method()`) is worst. Never mid-line: only line boundaries are scored."""
    p, q = prev.strip(), nxt.strip()
    score = 0
    if not p:
        score += 3
    if p in _CLOSERS:
        score += 2
    if q and len(nxt) - len(nxt.lstrip()) == 0 and not q.startswith(_CONTINUES):
        score += 2
    if q.startswith(_CELL_MARKER):
        score += 4
    if p.endswith(_OPENS):
        score -= 3
    if q.startswith(_CONTINUES):
        score -= 3
    return score


def _cut_score_text(prev: str, nxt: str) -> int:
    """Plain text (a list of URLs, requirements.txt, notes): any line boundary, blank lines best."""
    return 3 if not prev.strip() else 0


def _split_long_text(text: str, budget: TokenBudget, per_chunk: int) -> list[str]:
    """An over-long line cut at sentence ends, then at spaces, and only then at tokens.

    Exact slices: joined, they give `text` back."""
    for pattern in (_SENTENCE_RE, _WORD_GAP_RE):
        cuts = [m.end() for m in pattern.finditer(text) if 0 < m.end() < len(text)]
        if not cuts:
            continue
        parts = [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)], strict=True)]
        if pattern is _SENTENCE_RE:
            return _pack_slices(
                parts, budget, per_chunk, lambda part: _split_long_text(part, budget, per_chunk)
            )
        return _pack_slices(
            parts,
            budget,
            per_chunk,
            lambda part: budget.split_at_tokens(part, per_chunk + budget.special_tokens),
        )
    return budget.split_at_tokens(text, per_chunk + budget.special_tokens)


@dataclass
class _Window:
    start: int  # 0-based first line
    end: int  # 0-based line after the last
    text: str
    fragment: tuple[int, int] | None = None  # (k, n) when one over-long line is cut in n pieces


def _pack_lines(
    lines: list[str], counts: list[int], per_chunk: int, budget: TokenBudget, score=_cut_score_code
) -> list[_Window]:
    """Consecutive line ranges of <= per_chunk content tokens, cut at the best-scored line
    boundary of the window (one that keeps at least a third of the window, when there is one).
    A single line over the budget is cut inside (`_split_long_text`): the only mid-line cut."""
    prefix = [0]
    for c in counts:
        prefix.append(prefix[-1] + c)
    n = len(lines)
    out: list[_Window] = []
    ws, i = 0, 0
    while i < n:
        if counts[i] > per_chunk:
            if ws < i:
                out.append(_Window(ws, i, "".join(lines[ws:i])))
            frags = _split_long_text(lines[i], budget, per_chunk)
            out += [
                _Window(i, i + 1, f, (k + 1, len(frags)) if len(frags) > 1 else None)
                for k, f in enumerate(frags)
            ]
            i += 1
            ws = i
            continue
        if prefix[i + 1] - prefix[ws] <= per_chunk:
            i += 1
            continue
        floor = per_chunk // 3
        candidates = range(ws + 1, i + 1)
        full = [c for c in candidates if prefix[c] - prefix[ws] >= floor] or list(candidates)
        cut = max(full, key=lambda c: (score(lines[c - 1], lines[c] if c < n else ""), c))
        out.append(_Window(ws, cut, "".join(lines[ws:cut])))
        ws = cut
    if ws < n:
        out.append(_Window(ws, n, "".join(lines[ws:n])))
    return out


def _code_windows(text: str, budget: TokenBudget, limit: int, score=_cut_score_code) -> list[_Window]:
    lines = text.splitlines(keepends=True)
    return _pack_lines(lines, budget.content_tokens(lines), limit - budget.special_tokens, budget, score)


def _line_windows(text: str, budget: TokenBudget, limit: int) -> list[str]:
    """Consecutive line ranges of <= limit tokens, cut at code boundaries (see `_pack_lines`)."""
    return [w.text for w in _code_windows(text, budget, limit)]


def _window_pieces(
    file: RepoFile, budget: TokenBudget, limit: int, language: str | None, score
) -> list[_Piece]:
    pieces = []
    for w in _code_windows(file.content, budget, limit, score):
        if not w.text.strip():
            continue
        symbol = (
            f"line {w.start + 1} (part {w.fragment[0]}/{w.fragment[1]})"
            if w.fragment
            else f"lines {w.start + 1}-{w.end}"
        )
        pieces.append(_Piece(w.text, file_path=file.path, symbol=symbol, language=language))
    return pieces


# -- python ------------------------------------------------------------------------------------

_DEFS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
_Node = ast.stmt | ast.ExceptHandler  # what a compound statement is split between
_TRY_NODES = (ast.Try, *((ast.TryStar,) if hasattr(ast, "TryStar") else ()))


def _node_start(node: ast.stmt, lines: list[str]) -> int:
    """0-based first line of a definition, including decorators and the comments right above."""
    start = min([d.lineno for d in getattr(node, "decorator_list", [])] + [node.lineno]) - 1
    while (
        start > 0
        and lines[start - 1].lstrip().startswith("#")
        and _indent(lines[start - 1]) <= node.col_offset
    ):
        start -= 1
    return start


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


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
        is_def = isinstance(node, _DEFS)
        if is_def:
            kind = "class" if isinstance(node, ast.ClassDef) else "def"
            name = f"{prefix}.{node.name}" if prefix else node.name
            marks.append((max(_node_start(node, lines), lo), f"{kind} {name}"))
        elif prev_was_def:
            marks.append((node.lineno - 1, head))
        prev_was_def = is_def
    marks.sort(key=lambda m: m[0])
    segments = []
    for (start, label), nxt in zip(marks, [*marks[1:], (hi, "")], strict=True):
        end = nxt[0]
        if end > start:
            segments.append((start, end, label))
    return segments


def _children(node: _Node | None) -> list[_Node]:
    """The statements (and except handlers) a compound statement can be split between."""
    if isinstance(node, (*_DEFS, ast.With, ast.AsyncWith, ast.ExceptHandler)):
        kids = list(node.body)
    elif isinstance(node, (ast.For, ast.AsyncFor, ast.While, ast.If)):
        kids = [*node.body, *node.orelse]
    elif isinstance(node, _TRY_NODES):
        kids = [*node.body, *node.handlers, *node.orelse, *node.finalbody]
    else:
        return []
    return sorted(kids, key=lambda k: k.lineno)


def _signature(node: _Node | None) -> str | None:
    """`class GPT(nn.Module):` / `def forward(self, idx, targets=None):`, one line, bounded."""
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
        sig = f"{'async ' if isinstance(node, ast.AsyncFunctionDef) else ''}def {node.name}({ast.unparse(node.args)})"
        if node.returns is not None:
            sig += f" -> {ast.unparse(node.returns)}"
    elif isinstance(node, ast.ClassDef):
        bases = [ast.unparse(b) for b in (*node.bases, *node.keywords)]
        sig = f"class {node.name}({', '.join(bases)})" if bases else f"class {node.name}"
    else:
        return None
    sig = " ".join(sig.split())
    return (sig if len(sig) <= 150 else sig[:146] + " ...") + ":"


@dataclass(frozen=True)
class _Lead:
    """Text put before a piece: the enclosing signatures as a comment, or a verbatim header."""

    text: str = ""
    tokens: int = 0


@dataclass
class _Group:
    """Consecutive statements being packed into one part: lines[start:...] after `lead`."""

    start: int
    lead: _Lead
    cost: int
    has: bool = False  # holds at least one statement (a header alone is never a part)


class _PythonSplitter:
    """Cuts a parsed Python file at statement boundaries, never inside a statement.

    A top-level definition that fits is one chunk. One that does not is packed greedily from its
    statements (a class from its methods and attributes, a function from its body statements);
    a statement that alone is over the budget is split the same way inside (a method, a loop, a
    `try`), and only a simple statement over the budget (a huge literal) falls back to line
    windows. Every part after the first starts with `# in class GPT(nn.Module): > def ...:`
    (the enclosing signatures), the first keeps the definition's own header, so no chunk is a
    bare header and none loses where it lives. Parts are labelled "class GPT (part 2/3)"; a
    method split on its own carries its own label and numbering ("def GPT.forward (part 1/2)")
    and counts as one part of its class.
    """

    def __init__(self, lines: list[str], budget: TokenBudget, limit: int):
        self.lines = lines
        self.budget = budget
        self.per = limit - budget.special_tokens
        self.counts = budget.content_tokens(lines) if lines else []
        self.prefix = [0]
        for c in self.counts:
            self.prefix.append(self.prefix[-1] + c)
        self._leads: dict[tuple[str, ...], _Lead] = {}

    def cost(self, s: int, e: int) -> int:
        return self.prefix[e] - self.prefix[s]

    def text(self, s: int, e: int) -> str:
        return "".join(self.lines[s:e])

    def context(self, signatures: list[str]) -> _Lead:
        key = tuple(signatures)
        if key not in self._leads:
            text = f"# in {' > '.join(signatures)}\n" if signatures else ""
            self._leads[key] = _Lead(text, self.budget.content_tokens([text])[0] if text else 0)
        return self._leads[key]

    def spans(
        self, kids: Sequence[_Node], s: int, e: int, header_floor: int | None
    ) -> list[tuple[int, int, _Node | None]]:
        """Line ranges of the children tiling [first child, e): comments and `else:`/`finally:`
        lines go with the statement after them, blank lines with the one before."""
        starts: list[int] = []
        owners: list[_Node | None] = []
        for i, kid in enumerate(kids):
            st = max(min([d.lineno for d in getattr(kid, "decorator_list", [])] + [kid.lineno]) - 1, s)
            col = getattr(kid, "col_offset", 0)
            if i == 0:
                floor = s if header_floor is None else max(header_floor, s)
                while (
                    st - 1 >= floor
                    and self.lines[st - 1].lstrip().startswith("#")
                    and _indent(self.lines[st - 1]) <= col
                ):
                    st -= 1
            else:
                # the run of lines right above, at this statement's indentation or less
                # (comments, `else:`), goes with it; deeper ones close the statement before
                prev_end = min(max(getattr(kids[i - 1], "end_lineno", 0) or 0, s), st)
                j = st
                while j > prev_end and (not self.lines[j - 1].strip() or _indent(self.lines[j - 1]) <= col):
                    j -= 1
                while j < st and not self.lines[j].strip():
                    j += 1  # blank lines stay with the statement before
                st = j
            if st >= e:
                break
            if starts and st <= starts[-1]:  # statements sharing a line: one simple span
                owners[-1] = None
                continue
            starts.append(st)
            owners.append(kid)
        return [(a, b, kid) for a, b, kid in zip(starts, [*starts[1:], e], owners, strict=True)]

    def unit(
        self,
        s: int,
        e: int,
        node: _Node | None,
        kids: Sequence[_Node],
        label: str,
        context: list[str],
        lead: _Lead,
    ) -> list[tuple[str, str]]:
        """(text, symbol) pieces of lines[s:e], numbered when there is more than one."""
        if lead.tokens + self.cost(s, e) <= self.per:
            return [(lead.text + self.text(s, e), label)]
        entries, group = self.split(s, e, node, kids, label, context, lead)
        if group.has or self.text(group.start, e).strip():
            entries.append(group.lead.text + self.text(group.start, e))
        out: list[tuple[str, str]] = []
        for k, entry in enumerate(entries, 1):
            if isinstance(entry, str):
                out.append((entry, f"{label} (part {k}/{len(entries)})"))
            else:
                out.extend(entry)
        return out

    def split(
        self,
        s: int,
        e: int,
        node: _Node | None,
        kids: Sequence[_Node],
        label: str,
        context: list[str],
        lead: _Lead,
    ) -> tuple[list[str | list[tuple[str, str]]], _Group]:
        """The closed parts of lines[s:e] and the open last group (lines from `start` to `e`),
        which the caller may go on filling with the statements that follow."""
        header_floor = node.lineno if node is not None else None  # comments after the header line
        spans = self.spans(kids, s, e, header_floor)
        sig = _signature(node)
        inner = [*context, sig] if sig else context
        inner_lead = self.context(inner)
        if not spans:
            return self.windows(s, e, lead, inner_lead)
        entries: list[str | list[tuple[str, str]]] = []
        g = _Group(s, lead, lead.tokens + self.cost(s, spans[0][0]))
        for cs, ce, kid in spans:
            c = self.cost(cs, ce)
            if g.cost + c <= self.per:
                g.cost, g.has = g.cost + c, True
                continue
            if g.has:
                entries.append(g.lead.text + self.text(g.start, cs))
                g = _Group(cs, inner_lead, inner_lead.tokens)
                if g.cost + c <= self.per:
                    g.cost, g.has = g.cost + c, True
                    continue
            # this statement alone is over the budget: split inside it, after what leads to it
            sub_lead = _Lead(g.lead.text + self.text(g.start, cs), g.lead.tokens + self.cost(g.start, cs))
            sub_kids = _children(kid)
            if isinstance(kid, _DEFS):  # its own label and numbering; one part of this unit
                kind = "class" if isinstance(kid, ast.ClassDef) else "def"
                base = label.split(" ", 1)[1] if label.startswith(("class ", "def ")) else ""
                sub_label = f"{kind} {base}.{kid.name}" if base else f"{kind} {kid.name}"
                entries.append(self.unit(cs, ce, kid, sub_kids, sub_label, inner, sub_lead))
                g = _Group(ce, inner_lead, inner_lead.tokens)
                continue
            if sub_kids:  # a loop, `if`, `with` or `try`: its parts are parts of this unit
                sub_entries, g = self.split(cs, ce, kid, sub_kids, label, inner, sub_lead)
            else:
                sub_entries, g = self.windows(cs, ce, sub_lead, inner_lead)
            entries.extend(sub_entries)
        return entries, g

    def windows(
        self, s: int, e: int, first: _Lead, later: _Lead
    ) -> tuple[list[str | list[tuple[str, str]]], _Group]:
        """Line windows of one statement (or unparsed lines); the first gets `first` before it,
        the others the enclosing signatures; the last is left open (see `split`)."""
        out: list[str | list[tuple[str, str]]] = []
        if first.tokens > self.per // 2:  # an oversized header: on its own, cut at its lines
            out += _line_windows(first.text, self.budget, self.per + self.budget.special_tokens)
            first = later
        room = self.per - max(first.tokens, later.tokens)
        if room < self.per // 4:  # absurdly long signatures: the context is dropped, not the code
            first, later, room = _Lead(), _Lead(), self.per
        windows = _pack_lines(self.lines[s:e], self.counts[s:e], room, self.budget)
        for k, w in enumerate(windows[:-1]):
            out.append((first if k == 0 else later).text + w.text)
        last, last_lead = windows[-1], first if len(windows) == 1 else later
        if last.fragment is not None:  # a cut line cannot be continued
            out.append(last_lead.text + last.text)
            return out, _Group(e, later, later.tokens)
        start = s + last.start
        return out, _Group(start, last_lead, last_lead.tokens + self.cost(start, e), has=True)


def _python_pieces(file: RepoFile, budget: TokenBudget, limit: int) -> list[_Piece] | None:
    try:
        tree = ast.parse(file.content)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None
    lines = file.content.splitlines(keepends=True)
    splitter = _PythonSplitter(lines, budget, limit)
    defs = {_node_start(n, lines): n for n in tree.body if isinstance(n, _DEFS)}
    pieces: list[_Piece] = []
    for start, end, label in _structural_segments(tree.body, lines, 0, len(lines), ""):
        if not "".join(lines[start:end]).strip():
            continue
        node = defs.get(start) if label != "module" else None
        if node is not None:
            parts = splitter.unit(start, end, node, _children(node), label, [], _Lead())
        else:
            kids = [n for n in tree.body if start <= n.lineno - 1 < end]
            parts = splitter.unit(start, end, None, kids, label, [], _Lead())
        pieces += [
            _Piece(text, file_path=file.path, symbol=symbol, language="python") for text, symbol in parts
        ]
    return pieces


def _code_pieces(
    file: RepoFile, budget: TokenBudget, limit: int, prose_limit: int, overlap: int
) -> list[_Piece]:
    path = file.path.lower()
    language = (file.language or "").lower() or None
    if path.endswith(_PYTHON_SUFFIXES) or language == "python":
        pieces = _python_pieces(file, budget, limit)
        if pieces is not None:
            return pieces
    if path.endswith(_PROSE_SUFFIXES) or language in _PROSE_LANGUAGES:
        units = _prose_units(file.content, budget, prose_limit)
        return [
            _Piece(text, section=section, file_path=file.path, symbol=label, language=language or "markdown")
            for text, section, label in _pack(units, budget, prose_limit, overlap)
        ]
    code_like = language not in (None, "text") or path.endswith(_NOTEBOOK_SUFFIXES)
    return _window_pieces(file, budget, limit, language, _cut_score_code if code_like else _cut_score_text)


# -- documents ---------------------------------------------------------------------------------


def chunk_id(document_id: str, position: int, content: str) -> str:
    return str(uuid.uuid5(CHUNK_NAMESPACE, f"{document_id}:{position}:{sha256_text(content)}"))


def _enforce_limit(pieces: list[_Piece], budget: TokenBudget, limit: int) -> list[tuple[_Piece, int]]:
    """The guarantee: measure every final text with the real tokenizer; cut what is still over."""
    out: list[tuple[_Piece, int]] = []
    for piece, n in zip(pieces, budget.count([p.text for p in pieces]), strict=True):
        if n <= limit:
            out.append((piece, n))
            continue
        # an estimate was off: cut between lines first (code and text files), tokens last
        parts = _line_windows(piece.text, budget, limit) if "\n" in piece.text.strip() else [piece.text]
        parts = [
            q
            for p in parts
            for q in ([p] if budget.count([p])[0] <= limit else budget.split_at_tokens(p, limit))
        ]
        for part, m in zip(parts, budget.count(parts), strict=True):
            out.append((_Piece(part, piece.section, piece.file_path, piece.symbol, piece.language), m))
    return out


def chunk_document(
    doc: CleanedDocument, budget: TokenBudget, config: ChunkingConfig | None = None
) -> list[Chunk]:
    """All chunks of one cleaned document, in reading order, each within the model's limit."""
    config = config or ChunkingConfig()
    pieces: list[_Piece] = []
    if doc.category == Category.POSTS:
        limit = budget.limit(config.post_max_tokens)
        units = _prose_units(doc.content, budget, limit)
        for u in units:  # posts have no sections; line breaks join paragraphs
            u.heading = False
        pieces = [
            _Piece(t, symbol=label, language=doc.language)
            for t, _, label in _pack(units, budget, limit, config.post_overlap_tokens)
        ]
    else:
        prose_limit = budget.limit(config.article_max_tokens)
        # A repository is chunked from its files only: a content that renders them (the
        # crawler's `==> path <==` headers, left by an older cleaner) is the same code again.
        if doc.content.strip() and not (
            doc.category == Category.REPOSITORIES and _RENDERED_RE.search(doc.content)
        ):
            units = _prose_units(doc.content, budget, prose_limit)
            pieces = [
                _Piece(t, section=s, symbol=label, language=doc.language)
                for t, s, label in _pack(units, budget, prose_limit, config.article_overlap_tokens)
            ]
        code_limit = budget.limit(config.code_max_tokens)
        for file in doc.files:
            pieces += _code_pieces(file, budget, code_limit, prose_limit, config.article_overlap_tokens)
    limit = budget.max_seq_length
    if doc.category == Category.POSTS:
        limit = budget.limit(config.post_max_tokens)
    chunks = []
    for position, (piece, n) in enumerate(
        _enforce_limit([p for p in pieces if p.text.strip()], budget, limit)
    ):
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
