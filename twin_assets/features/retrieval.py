"""Retrieval: query text -> the author's most similar chunks, with what is needed to cite them.

Used by the inference endpoint (RAG context) and by dataset generation. Vectors are normalised,
so Qdrant's cosine score is the similarity; filtering on author is mandatory (a twin only ever
speaks from its own author's writing), category/platform filters are optional.

Plain logic over the `Embedder` and `VectorIndex` protocols: `QdrantResource.retrieve` calls it
with a client it opens and closes, tests call it with an open index.
"""

from __future__ import annotations

from collections.abc import Iterable

from twin_assets.domain.features import RetrievedChunk
from twin_assets.domain.stores import Embedder, VectorIndex


def retrieve(
    query: str,
    author_id: str,
    k: int,
    *,
    embedder: Embedder,
    index: VectorIndex,
    categories: Iterable[str] | None = None,
    platforms: Iterable[str] | None = None,
) -> list[RetrievedChunk]:
    """Top-k chunks of `author_id` for `query`, best first. Empty query or k < 1 -> []."""
    if not query.strip() or k < 1:
        return []
    vector = embedder.embed_query(query)
    hits = index.search(
        vector,
        author_id,
        k,
        categories=[str(c) for c in categories] if categories is not None else None,
        platforms=[str(p) for p in platforms] if platforms is not None else None,
    )
    return [RetrievedChunk.from_payload(h.id, h.score, h.payload) for h in hits]
