"""The feature pipeline's invariants, as plain functions the asset checks call.

Each returns (passed, metadata). They read the real stores (Qdrant is scrolled in full: a check
may afford the scan the incremental path avoids), through the protocols of
`twin_assets.domain.stores`.
"""

from __future__ import annotations

from collections.abc import Collection

import numpy as np

from twin_assets.domain.features import DocumentFailure, failure_table
from twin_assets.domain.stores import ChunkStore, FeatureStore, VectorIndex, point_id
from twin_assets.features.chunking import TokenBudget


def _chunk_ids(store: ChunkStore, author_id: str) -> set[str]:
    return {point_id(i) for i in store.chunk_ids(author_id)}


def check_token_limit(store: ChunkStore, author_id: str, budget: TokenBudget) -> tuple[bool, dict]:
    """Re-measures every chunk with the model's tokenizer (not the stored counts)."""
    rows = store.chunk_texts(author_id)
    counts = budget.count([content for _, content in rows])
    over = [chunk_id for (chunk_id, _), n in zip(rows, counts, strict=True) if n > budget.max_seq_length]
    return not over, {
        "chunks": len(rows),
        "max_tokens": max(counts, default=0),
        "limit": budget.max_seq_length,
        "over_limit": len(over),
        "over_limit_ids": over[:20],
    }


def _excused_chunk_ids(store: FeatureStore, author_id: str, excused: Collection[str]) -> set[str]:
    if not excused:
        return set()
    manifests = store.chunk_manifests(author_id)
    return {point_id(c) for d in excused if d in manifests for c in manifests[d].chunk_ids}


def check_embedded_once(
    store: FeatureStore, index: VectorIndex, author_id: str, excused: Collection[str] = ()
) -> tuple[bool, dict]:
    """Every warehouse chunk has exactly one point (point id = chunk id) and no point is extra.

    `excused`: documents this run failed to embed (reported by `no_failed_documents`): their new
    chunks have no point yet and their previous points are kept on purpose until a run embeds
    them, so neither counts here."""
    skip = _excused_chunk_ids(store, author_id, excused)
    chunk_ids = _chunk_ids(store, author_id) - skip
    points = [(point_id(r.id), r.payload.get("document_id")) for r in index.scroll(author_id)]
    point_ids = [p for p, doc in points if doc not in excused]
    missing = chunk_ids - set(point_ids)
    extra = set(point_ids) - chunk_ids
    duplicated = len(point_ids) - len(set(point_ids))
    passed = not missing and not extra and not duplicated
    return passed, {
        "chunks": len(chunk_ids),
        "points": len(point_ids),
        "missing": len(missing),
        "extra": len(extra),
        "duplicated": duplicated,
        "excused_documents": len(excused),
    }


def check_dimension(
    index: VectorIndex, author_id: str, dimension: int, sample: int = 32
) -> tuple[bool, dict]:
    """Collection config and a sample of stored vectors both have the model's dimension (and unit norm)."""
    size = index.vector_size()
    vectors = [np.asarray(v, dtype=np.float32) for v in index.sample_vectors(author_id, sample)]
    bad_dims = sum(1 for v in vectors if v.shape != (dimension,))
    norms = [float(np.linalg.norm(v)) for v in vectors]
    bad_norms = sum(1 for n in norms if abs(n - 1.0) > 1e-3)
    passed = size == dimension and not bad_dims and not bad_norms
    return passed, {
        "model_dimension": dimension,
        "collection_dimension": size if size is not None else -1,
        "sampled": len(vectors),
        "wrong_dimension": bad_dims,
        "not_normalised": bad_norms,
    }


def check_no_orphans(
    store: FeatureStore, index: VectorIndex, author_id: str, excused: Collection[str] = ()
) -> tuple[bool, dict]:
    """No point whose document no longer exists (cleaned) or whose chunk was replaced. The kept
    previous points of a document that failed to embed in this run (`excused`) are not orphans."""
    docs = set(store.cleaned_hashes(author_id))
    chunk_ids = _chunk_ids(store, author_id)
    orphans = [
        point_id(r.id)
        for r in index.scroll(author_id)
        if r.payload.get("document_id") not in docs
        or (point_id(r.id) not in chunk_ids and r.payload.get("document_id") not in excused)
    ]
    return not orphans, {"orphan_points": len(orphans), "orphan_ids": orphans[:20]}


def check_failed_documents(failures: list[DocumentFailure]) -> tuple[bool, dict]:
    """Passes when no document failed in this run; otherwise lists them (document, stage,
    reason). Not blocking: the others were processed and are usable."""
    return not failures, {
        "failed_documents": len(failures),
        "failures": failure_table(failures),
        "document_ids": sorted({f.document_id for f in failures})[:50],
    }
