"""Token-aware text splitting with overlap.

The splitter works in three passes:

1. Split the text into paragraphs on blank lines.
2. Split any paragraph that is over budget into sentences, and any sentence
   that is still over budget into runs of words.
3. Greedily pack those pieces into chunks of at most ``max_tokens``, carrying
   a tail of the previous chunk forward as overlap.

Token counting is pluggable. Pass the tokenizer of your embedding model;
words are not tokens, and the difference matters.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable, Iterator, List, NamedTuple

TokenCounter = Callable[[str], int]

_PARAGRAPH_BREAK = re.compile(r"\n\s*\n")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(\[])")


def whitespace_tokens(text: str) -> int:
    """Count whitespace-separated words. A crude stand-in for a real tokenizer."""
    return len(text.split())


def split_paragraphs(text: str) -> List[str]:
    """Split on blank lines, trimming each paragraph and dropping empty ones."""
    return [p.strip() for p in _PARAGRAPH_BREAK.split(text) if p.strip()]


def split_sentences(paragraph: str) -> List[str]:
    """Split a paragraph into sentences on terminal punctuation.

    Deliberately simple: it will split after "e.g. Foo". For packing that
    is fine, because a slightly wrong boundary costs almost nothing.
    """
    parts = _SENTENCE_END.split(paragraph.strip())
    return [p.strip() for p in parts if p.strip()]


class _Piece(NamedTuple):
    text: str
    paragraph: int
    tokens: int


@dataclass(frozen=True)
class Chunk:
    """One packed chunk and where it came from."""

    text: str
    index: int
    n_tokens: int
    start_piece: int
    end_piece: int  # exclusive


@dataclass
class TextSplitter:
    """Pack paragraphs and sentences into chunks under a token budget.

    Args:
        max_tokens: upper bound for a chunk, as measured by ``count_tokens``.
        overlap_tokens: how much trailing text to repeat at the start of the
            next chunk. Overlap is made of whole pieces, never partial ones.
        count_tokens: callable returning the token count of a string.
    """

    max_tokens: int = 256
    overlap_tokens: int = 32
    count_tokens: TokenCounter = whitespace_tokens

    def __post_init__(self) -> None:
        if self.max_tokens <= 0:
            raise ValueError("max_tokens must be positive")
        if not 0 <= self.overlap_tokens < self.max_tokens:
            raise ValueError("overlap_tokens must be in [0, max_tokens)")

    def split(self, text: str) -> List[Chunk]:
        """Split ``text`` into chunks. Returns an empty list for blank input."""
        pieces = self._pieces(text)
        chunks: List[Chunk] = []
        start = 0
        while start < len(pieces):
            end, used = start, 0
            while end < len(pieces) and (end == start or used + pieces[end].tokens <= self.max_tokens):
                used += pieces[end].tokens
                end += 1
            chunks.append(
                Chunk(
                    text=self._join(pieces[start:end]),
                    index=len(chunks),
                    n_tokens=used,
                    start_piece=start,
                    end_piece=end,
                )
            )
            if end >= len(pieces):
                break
            start = self._overlap_start(pieces, start, end)
        return chunks

    def _pieces(self, text: str) -> List[_Piece]:
        pieces: List[_Piece] = []
        for p_index, paragraph in enumerate(split_paragraphs(text)):
            if self.count_tokens(paragraph) <= self.max_tokens:
                pieces.append(_Piece(paragraph, p_index, self.count_tokens(paragraph)))
                continue
            for sentence in split_sentences(paragraph):
                if self.count_tokens(sentence) <= self.max_tokens:
                    pieces.append(_Piece(sentence, p_index, self.count_tokens(sentence)))
                else:
                    for run in self._split_words(sentence):
                        pieces.append(_Piece(run, p_index, self.count_tokens(run)))
        return pieces

    def _split_words(self, sentence: str) -> Iterator[str]:
        """Last resort: cut a very long sentence into runs of words.

        A single "word" longer than the budget (a URL, a base64 blob) is
        emitted on its own and will exceed ``max_tokens``. That is a choice:
        silently cutting identifiers in half is worse for retrieval.
        """
        current: List[str] = []
        for word in sentence.split():
            candidate = " ".join(current + [word])
            if current and self.count_tokens(candidate) > self.max_tokens:
                yield " ".join(current)
                current = [word]
            else:
                current.append(word)
        if current:
            yield " ".join(current)

    def _overlap_start(self, pieces: List[_Piece], start: int, end: int) -> int:
        """Index where the next chunk starts, walking back from ``end``.

        The carried-over tail must fit in ``overlap_tokens`` and still leave
        room for the next fresh piece, so every chunk makes progress.
        """
        budget = min(self.overlap_tokens, self.max_tokens - pieces[end].tokens)
        new_start, carried = end, 0
        while new_start - 1 > start and carried + pieces[new_start - 1].tokens <= budget:
            new_start -= 1
            carried += pieces[new_start].tokens
        return new_start

    @staticmethod
    def _join(pieces: List[_Piece]) -> str:
        out = pieces[0].text
        for prev, piece in zip(pieces, pieces[1:]):
            out += (" " if piece.paragraph == prev.paragraph else "\n\n") + piece.text
        return out


def split_text(
    text: str,
    max_tokens: int = 256,
    overlap_tokens: int = 32,
    count_tokens: TokenCounter = whitespace_tokens,
) -> List[str]:
    """Convenience wrapper: split ``text`` and return just the chunk strings."""
    splitter = TextSplitter(max_tokens=max_tokens, overlap_tokens=overlap_tokens, count_tokens=count_tokens)
    return [chunk.text for chunk in splitter.split(text)]
