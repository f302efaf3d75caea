"""Split Python source into top-level definitions using :mod:`ast`.

Token windows are a bad fit for code: they cut functions in half and glue
the end of one class to the start of the next. Top-level ``def`` and
``class`` statements are natural boundaries, so use them.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from typing import List, Union

_Definition = Union[ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef]


@dataclass(frozen=True)
class CodeBlock:
    """A contiguous slice of a module. Line numbers are 1-based and inclusive."""

    name: str
    kind: str  # "module", "function" or "class"
    start_line: int
    end_line: int
    source: str


def _first_line(node: _Definition) -> int:
    """Start at the first decorator, not at the ``def`` line."""
    lines = [d.lineno for d in node.decorator_list] + [node.lineno]
    return min(lines)


def split_python(source: str, include_module: bool = True) -> List[CodeBlock]:
    """Return one block per top-level function or class.

    Everything before the first definition (docstring, imports, constants)
    becomes a ``"module"`` block when ``include_module`` is true. Statements
    between definitions are attached to nothing and skipped; in practice
    they are rare, and a chunker should not pretend they belong to a def.

    Raises:
        SyntaxError: if ``source`` is not valid Python.
    """
    tree = ast.parse(source)
    lines = source.splitlines(keepends=True)
    blocks: List[CodeBlock] = []

    definitions = [
        node
        for node in tree.body
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
    ]

    first_def = _first_line(definitions[0]) if definitions else len(lines) + 1
    preamble = "".join(lines[: first_def - 1])
    if include_module and preamble.strip():
        blocks.append(CodeBlock("<module>", "module", 1, first_def - 1, preamble))

    for node in definitions:
        start = _first_line(node)
        end = node.end_lineno or node.lineno
        kind = "class" if isinstance(node, ast.ClassDef) else "function"
        blocks.append(CodeBlock(node.name, kind, start, end, "".join(lines[start - 1 : end])))

    return blocks


def pack_blocks(blocks: List[CodeBlock], count_tokens, max_tokens: int = 512) -> List[str]:
    """Merge consecutive small blocks so tiny helpers don't become tiny chunks.

    A block bigger than ``max_tokens`` is kept whole: half a function is
    worse for retrieval than an oversized chunk.
    """
    packed: List[str] = []
    current: List[str] = []
    used = 0
    for block in blocks:
        size = count_tokens(block.source)
        if current and used + size > max_tokens:
            packed.append("\n\n".join(current))
            current, used = [], 0
        current.append(block.source.rstrip("\n"))
        used += size
    if current:
        packed.append("\n\n".join(current))
    return packed
