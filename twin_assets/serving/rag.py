"""The retrieval half of the twin's RAG: question -> the author's best chunks, with the filters,
queries, per-stage timings and stages that produced them.

Stages, each switchable in `RagConfig` so that the ablation (benchmarks/rag_ablation.py) can
measure what each one earns:

1. self-query: filters from the question (LLM when configured, rules otherwise); skipped when
   the caller passes filters. When the extracted filters leave no chunk at all, the search runs
   unfiltered instead and `stages["filter_fallback"]` says so: a misread filter must not turn
   an answerable question into "I never wrote about that".
2. expansion: more phrasings of the question (LLM when configured, pseudo-relevance feedback
   otherwise). Off by default: on the sample author it lifts a dense-only search a lot (its
   feedback terms are a lexical signal) but adds nothing once BM25 and the rerank run.
3. search: every query embedded in one batch, exact filtered cosine top-N per query, and BM25
   top-N per query when `hybrid`; the lists are fused (RRF) into one deduplicated pool.
4. rerank: the pool ordered against the original question (hybrid cosine + BM25 by default,
   a local cross-encoder when configured, or the fused order with "none").

The author filter is structural: the `AuthorIndex` passed in holds one author's chunks only.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import Literal

from pydantic import BaseModel, Field

from twin_assets.domain.features import RetrievedChunk
from twin_assets.domain.generation import TextGenerator
from twin_assets.domain.stores import Embedder
from twin_assets.serving.expansion import expand_llm, expand_offline
from twin_assets.serving.memory_index import AuthorIndex
from twin_assets.serving.rerank import CrossEncoderReranker, HybridReranker, fuse
from twin_assets.serving.selfquery import llm_filters, rule_filters
from twin_assets.serving.types import RetrievalResult, ScoredChunk, SearchFilters

EXPANSION_WEIGHT = 1.0  # RRF weight of an expansion's lists relative to the question's (1.0)


class RagConfig(BaseModel):
    self_query: bool = True
    # off by default: on the sample author's ablation it changed hit rate/MRR by at most one
    # question in 96 while tripling the queries to embed (and costing an LLM call when one is
    # configured); see benchmarks/rag_ablation.py
    expansion: bool = False
    n_expansions: int = Field(default=2, ge=0, le=8)
    hybrid: bool = True
    rerank: Literal["none", "hybrid", "cross-encoder"] = "hybrid"
    candidates: int = Field(default=30, ge=1, le=1000)
    k: int = Field(default=5, ge=1, le=100)
    cross_encoder: str = ""  # model id (local cache only) or path, for rerank="cross-encoder"


def _ms(start: float) -> float:
    return round((time.perf_counter() - start) * 1000.0, 3)


class RagPipeline:
    """Stateless across requests (safe to share between threads); one per configuration.

    A cross-encoder, when configured, is loaded here, so a missing model fails at start-up
    with `RerankerUnavailableError`, not on the first question."""

    def __init__(
        self,
        embedder: Embedder,
        config: RagConfig | None = None,
        llm: TextGenerator | None = None,
        *,
        today: Callable[[], date] | None = None,
    ):
        self.embedder = embedder
        self.config = config or RagConfig()
        self.llm = llm if llm is not None and llm.uses_llm else None
        self._today = today or (lambda: datetime.now(UTC).date())
        self._hybrid = HybridReranker()
        self._cross = (
            CrossEncoderReranker(self.config.cross_encoder) if self.config.rerank == "cross-encoder" else None
        )

    def retrieve(
        self, index: AuthorIndex, question: str, *, k: int | None = None, filters: SearchFilters | None = None
    ) -> RetrievalResult:
        """The `k` best chunks of `index`'s author for `question` (best first).

        Raises ValueError for an empty question, k < 1, or an index embedded with another model
        than this pipeline's embedder (their vectors are not comparable)."""
        cfg = self.config
        question = " ".join(question.split())
        if not question:
            raise ValueError("the question is empty")
        k = cfg.k if k is None else k
        if k < 1:
            raise ValueError(f"k must be at least 1 (got {k})")
        if index.size and index.embedding_model != self.embedder.model_name:
            raise ValueError(
                f"index {index.version} of {index.author_id} was embedded with {index.embedding_model!r}, "
                f"the service embeds queries with {self.embedder.model_name!r}"
            )
        timings: dict[str, float] = {}
        stages: dict[str, bool] = {}

        start = time.perf_counter()
        if filters is not None:
            applied = filters
            stages["self_query"] = False
        elif cfg.self_query:
            extracted = None
            if self.llm is not None:
                extracted = llm_filters(question, self.llm, index.repositories(), self._today())
                stages["self_query_llm"] = extracted is not None
            applied = extracted or rule_filters(question, index.repositories(), self._today())
            stages["self_query"] = True
        else:
            applied = SearchFilters()
            stages["self_query"] = False
        search_filters: SearchFilters | None = applied
        stages["filter_fallback"] = False
        if stages["self_query"] and not applied.is_empty() and index.count(applied) == 0:
            search_filters = None  # the question's filters match nothing: search everything
            stages["filter_fallback"] = True
        timings["self_query"] = _ms(start)

        start = time.perf_counter()
        expansions: list[str] = []
        stages["expansion"] = cfg.expansion and cfg.n_expansions > 0
        if stages["expansion"]:
            if self.llm is not None:
                expansions = expand_llm(
                    question, self.llm, cfg.n_expansions, index=index, filters=search_filters
                )
            else:
                expansions = expand_offline(question, index, cfg.n_expansions, filters=search_filters)
        queries = [question, *expansions]
        timings["expansion"] = _ms(start)

        start = time.perf_counter()
        vectors = self.embedder.embed(queries)
        pool = max(cfg.candidates, k)
        dense = index.dense_rows(vectors, pool, search_filters)
        lexical = index.lexical_rows(queries, pool, search_filters) if cfg.hybrid else []
        stages["hybrid"] = cfg.hybrid
        candidates = fuse(
            index, dense, lexical, pool, query_weights=[1.0] + [EXPANSION_WEIGHT] * len(expansions)
        )
        timings["search"] = _ms(start)

        start = time.perf_counter()
        stages["rerank"] = cfg.rerank != "none"
        if cfg.rerank == "hybrid":
            chunks = self._hybrid.rerank(index, question, vectors[0], candidates, k)
        elif cfg.rerank == "cross-encoder" and self._cross is not None:
            chunks = self._cross.rerank(index, question, vectors[0], candidates, k)
        else:
            chunks = candidates[:k]
        timings["rerank"] = _ms(start)

        return RetrievalResult(
            author_id=index.author_id,
            question=question,
            filters=applied,
            queries=queries,
            chunks=chunks,
            index_version=index.version,
            timings_ms=timings,
            stages=stages,
        )

    def as_retriever(self, index: AuthorIndex) -> Callable[[str, int], list[RetrievedChunk]]:
        """This pipeline over `index` as the `Retriever` the evaluation scores."""

        def retrieve(question: str, k: int) -> list[RetrievedChunk]:
            return [to_retrieved(c) for c in self.retrieve(index, question, k=k).chunks]

        return retrieve


def to_retrieved(chunk: ScoredChunk) -> RetrievedChunk:
    data = {name: getattr(chunk, name) for name in RetrievedChunk.model_fields if hasattr(chunk, name)}
    return RetrievedChunk.model_validate(data)
