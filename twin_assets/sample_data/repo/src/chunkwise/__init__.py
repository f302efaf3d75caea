"""chunkwise: token-aware text chunking with overlap, plus a code splitter."""

from ._version_generated import __version__
from .code import CodeBlock, pack_blocks, split_python
from .splitter import Chunk, TextSplitter, split_paragraphs, split_sentences, split_text, whitespace_tokens

__all__ = [
    "Chunk",
    "CodeBlock",
    "TextSplitter",
    "pack_blocks",
    "__version__",
    "split_paragraphs",
    "split_python",
    "split_sentences",
    "split_text",
    "whitespace_tokens",
]
