"""Markdown as the pipeline writes and reads it: rendering extracted blocks, and the patterns
that recognise fences and headings in that markdown.

The crawler and the cleaner both render `Block`s to markdown, but not the same way: the
crawler writes the page as it was (the raw document's text), the cleaner rebuilds an article
as the input of `clean_markdown`. One renderer serves both; a `MarkdownStyle` names every rule
in which they differ, so each keeps its output byte for byte (the cleaner's is covered by
CLEANER_VERSION, the crawler's by the raw document hashes).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from twin_assets.domain.documents import Block

# A line that opens or closes a fenced code block (indented fences count, as markdown has it).
FENCE_RE = re.compile(r"^\s*(```|~~~)")
# An ATX heading line: group 1 the hashes (its level), group 2 its text.
HEADING_RE = re.compile(r"^(#{1,6})\s+(.*)$")


@dataclass(frozen=True)
class MarkdownStyle:
    """The rules in which renderings of blocks differ."""

    # Strip every block, drop the empty ones, put headings on one line and drop the trailing
    # newlines of code: blocks are normalised first, not written as extracted.
    tidy: bool
    # The level of a title block that has none.
    default_heading_level: int
    # Consecutive list items form one list (one line each, continuation lines indented under
    # their item); otherwise every item is a paragraph of its own, its lines as they are.
    tight_lists: bool
    # What an empty line inside a quote becomes.
    quote_blank_line: str
    # The result is stripped and ends with one newline (a file's text); otherwise it is the
    # blocks joined, nothing added.
    final_newline: bool


# The crawled page as the raw document's text (`Extracted.markdown`).
PAGE_MARKDOWN = MarkdownStyle(
    tidy=False, default_heading_level=1, tight_lists=True, quote_blank_line=">", final_newline=True
)
# An article rebuilt from its blocks for the cleaner (`clean_document`).
CLEANING_MARKDOWN = MarkdownStyle(
    tidy=True, default_heading_level=2, tight_lists=False, quote_blank_line="> ", final_newline=False
)


def code_fence(code: str) -> str:
    """A fence the code cannot close early: four backticks when it holds three itself."""
    return "````" if "```" in code else "```"


def _render(block: Block, style: MarkdownStyle) -> str | None:
    """One block as markdown; None when a tidy style drops it (nothing but whitespace)."""
    if block.kind == "code":
        fence = code_fence(block.text)
        body = block.text.rstrip("\n") if style.tidy else block.text
        return f"{fence}{block.language or ''}\n{body}\n{fence}"
    text = block.text.strip() if style.tidy else block.text
    if style.tidy and not text:
        return None
    if block.kind == "title":
        level = min(max(block.level or style.default_heading_level, 1), 6)
        return "#" * level + " " + (" ".join(text.split()) if style.tidy else text)
    if block.kind == "list_item":
        return "- " + (text.replace("\n", "\n  ") if style.tight_lists else text)
    if block.kind == "quote":
        return "\n".join(f"> {line}" if line else style.quote_blank_line for line in text.split("\n"))
    return text


def blocks_to_markdown(blocks: Iterable[Block], style: MarkdownStyle = PAGE_MARKDOWN) -> str:
    """Blocks as markdown, one paragraph each (blank-line separated), in the given style."""
    parts: list[str] = []
    previous: str | None = None  # kind of the last block written
    for block in blocks:
        rendered = _render(block, style)
        if rendered is None:
            continue
        if style.tight_lists and parts and previous == "list_item" and block.kind == "list_item":
            parts[-1] += "\n" + rendered
        else:
            parts.append(rendered)
        previous = block.kind
    text = "\n\n".join(parts)
    if style.final_newline:
        return text.strip() + ("\n" if parts else "")
    return text
