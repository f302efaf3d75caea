"""Merging and reranking the candidates of all queries.

Two steps with different jobs:

- `fuse`: the ranked lists of every query (question + expansions) and every retriever (dense,
  BM25) become one candidate pool, deduplicated by chunk id, by reciprocal rank fusion. RRF
  uses ranks only, so cosine similarities and BM25 scores, which live on unrelated scales, need
  no calibration; a chunk found by several queries or both retrievers rises.
- a reranker orders the pool against the ORIGINAL question (expansions may drift):
  `HybridReranker` (the offline default) scores every candidate with both signals, the exact
  cosine to the question's vector and the BM25 of the question's terms (also for candidates
  that only one retriever found), normalised within the pool and mixed; optional MMR keeps the
  top k from being near-duplicates. `CrossEncoderReranker` reads (question, chunk) pairs with a
  configured cross-encoder when one is available locally.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from twin_assets.serving.memory_index import AuthorIndex, Hits
from twin_assets.serving.types import ScoredChunk

RRF_K = 60


class RerankerUnavailableError(RuntimeError):
    """A configured reranker model cannot be loaded (not in the local cache, bad path)."""


def fuse(
    index: AuthorIndex,
    dense: Sequence[Hits],
    lexical: Sequence[Hits],
    limit: int,
    *,
    query_weights: Sequence[float] | None = None,
    rrf_k: int = RRF_K,
) -> list[ScoredChunk]:
    """One pool of at most `limit` chunks from per-query dense and lexical lists (lists are
    aligned with the queries; `lexical` may be empty), best RRF score first."""
    n_queries = max(len(dense), len(lexical))
    weights = list(query_weights) if query_weights is not None else [1.0] * n_queries
    if len(weights) < n_queries:
        raise ValueError(f"{len(weights)} query weights for {n_queries} queries")
    rrf: dict[int, float] = {}
    best_dense: dict[int, float] = {}
    best_lexical: dict[int, float] = {}
    for lists, best in ((dense, best_dense), (lexical, best_lexical)):
        for q, hits in enumerate(lists):
            for rank, (row, score) in enumerate(
                zip(hits.rows.tolist(), hits.scores.tolist(), strict=True), 1
            ):
                rrf[row] = rrf.get(row, 0.0) + weights[q] / (rrf_k + rank)
                if score > best.get(row, -np.inf):
                    best[row] = score
    ranked = sorted(rrf.items(), key=lambda item: (-item[1], item[0]))[: max(limit, 0)]
    return [
        index.scored(row, score, dense_score=best_dense.get(row), lexical_score=best_lexical.get(row))
        for row, score in ranked
    ]


def _minmax(x: np.ndarray) -> np.ndarray:
    if x.size == 0:
        return x
    lo, hi = float(x.min()), float(x.max())
    return (x - lo) / (hi - lo) if hi > lo else np.zeros_like(x)


class HybridReranker:
    """Normalised fusion of the question's cosine and BM25 scores over the candidate pool.

    `dense_weight` is the share of the cosine (the rest is BM25); `mmr_lambda` < 1 trades
    relevance for diversity (maximal marginal relevance over the chunk vectors).

    Defaults from the sample author's ablation (benchmarks/rag_ablation.py): an equal mix beat
    0.6-1.0 on hit rate and MRR (pure cosine was worst); MMR did not help there (the relevant
    chunks of a question are usually several chunks of one document), so it is off."""

    name = "hybrid"

    def __init__(self, dense_weight: float = 0.5, mmr_lambda: float = 1.0):
        if not 0.0 <= dense_weight <= 1.0 or not 0.0 < mmr_lambda <= 1.0:
            raise ValueError("dense_weight must be in [0, 1] and mmr_lambda in (0, 1]")
        self.dense_weight = dense_weight
        self.mmr_lambda = mmr_lambda

    def rerank(
        self,
        index: AuthorIndex,
        question: str,
        question_vector: np.ndarray,
        candidates: Sequence[ScoredChunk],
        k: int,
    ) -> list[ScoredChunk]:
        rows = index.rows_of([c.chunk_id for c in candidates])
        if rows.size == 0 or k < 1:
            return []
        q = np.asarray(question_vector, dtype=np.float32).reshape(-1)
        q = q / (np.linalg.norm(q) or 1.0)
        vectors = index.vectors[rows]
        cosine = vectors @ q
        lexical = index.bm25.scores_for(question, rows)
        lex_norm = lexical / lexical.max() if lexical.max() > 0 else np.zeros_like(lexical)
        relevance = self.dense_weight * _minmax(cosine) + (1.0 - self.dense_weight) * lex_norm
        order = (
            self._mmr(vectors, relevance, k)
            if self.mmr_lambda < 1.0
            else np.argsort(-relevance, kind="stable")
        )
        return [
            index.scored(
                int(rows[i]),
                float(relevance[i]),
                dense_score=float(cosine[i]),
                lexical_score=float(lexical[i]),
            )
            for i in order[:k]
        ]

    def _mmr(self, vectors: np.ndarray, relevance: np.ndarray, k: int) -> np.ndarray:
        chosen: list[int] = []
        left = list(range(len(relevance)))
        similarity = vectors @ vectors.T
        while left and len(chosen) < k:
            if chosen:
                redundancy = similarity[np.ix_(left, chosen)].max(axis=1)
            else:
                redundancy = np.zeros(len(left), dtype=np.float32)
            value = self.mmr_lambda * relevance[left] - (1.0 - self.mmr_lambda) * redundancy
            pick = left[int(np.argmax(value))]
            chosen.append(pick)
            left.remove(pick)
        return np.asarray(chosen, dtype=np.int64)


class CrossEncoderReranker:
    """A sentence-transformers cross-encoder over (question, chunk) pairs, loaded from local
    files only (a hub id works only if it is already in the local cache)."""

    name = "cross-encoder"

    def __init__(self, model: str, *, device: str = "cpu", max_length: int = 512):
        if not model.strip():
            raise RerankerUnavailableError("no cross-encoder model configured (an id or a local path)")
        try:
            from sentence_transformers import CrossEncoder

            self._model = CrossEncoder(model, device=device, max_length=max_length, local_files_only=True)
        except Exception as exc:
            raise RerankerUnavailableError(
                f"cross-encoder {model!r} cannot be loaded from local files ({type(exc).__name__}: "
                f"{exc}); nothing is downloaded: put the model in the local cache or give a path, "
                "or use rerank='hybrid'"
            ) from exc
        self.model = model

    def rerank(
        self,
        index: AuthorIndex,
        question: str,
        question_vector: np.ndarray,
        candidates: Sequence[ScoredChunk],
        k: int,
    ) -> list[ScoredChunk]:
        if not candidates or k < 1:
            return []
        scores = np.asarray(
            self._model.predict([(question, c.content) for c in candidates], show_progress_bar=False),
            dtype=np.float32,
        ).reshape(len(candidates), -1)[:, -1]
        order = np.argsort(-scores, kind="stable")[:k]
        return [candidates[i].model_copy(update={"score": float(scores[i])}) for i in order]
