"""Asset metadata for the UI: counts by category, chunk-length histogram, sample chunks."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from itertools import pairwise

from twin_assets.domain.features import Chunk

HISTOGRAM_EDGES = (0, 32, 64, 96, 128, 160, 192, 224, 256)


def token_histogram(token_counts: Sequence[int], max_tokens: int) -> str:
    """Markdown table of chunk lengths in tokens (special tokens included), with a bar per bin."""
    edges = sorted({e for e in HISTOGRAM_EDGES if e < max_tokens} | {max_tokens})
    bins = Counter()
    over = 0
    for n in token_counts:
        if n > max_tokens:
            over += 1
            continue
        for lo, hi in pairwise(edges):
            if lo < n <= hi or (lo == 0 and n == 0):
                bins[(lo, hi)] += 1
                break
    total = max(len(token_counts), 1)
    rows = ["| tokens | chunks | share |", "|---|---:|---|"]
    for lo, hi in pairwise(edges):
        n = bins[(lo, hi)]
        rows.append(f"| {lo + 1}-{hi} | {n} | {'█' * round(20 * n / total)} |")
    if over:
        rows.append(f"| > {max_tokens} | {over} | over the limit |")
    return "\n".join(rows)


def category_table(counts: dict[str, int]) -> str:
    rows = ["| category | count |", "|---|---:|"]
    rows += [f"| {k} | {v} |" for k, v in sorted(counts.items())]
    return "\n".join(rows)


def chunk_preview(chunks: Sequence[Chunk], n: int = 3, width: int = 300) -> str:
    """A few chunks, one per category first, so the UI shows what the model will embed."""
    picked: list[Chunk] = []
    seen: set[str] = set()
    for c in chunks:
        if c.category not in seen:
            picked.append(c)
            seen.add(c.category)
    picked += [c for c in chunks if c not in picked][: max(n - len(picked), 0)]
    parts = []
    for c in picked[: max(n, len(seen))]:
        where = c.file_path or c.section or ""
        text = c.content if len(c.content) <= width else c.content[:width] + " …"
        parts.append(
            f"**{c.category} · {c.title or c.link} · #{c.position} · {c.token_count} tokens** {where}\n\n```\n{text}\n```"
        )
    return "\n\n".join(parts)
