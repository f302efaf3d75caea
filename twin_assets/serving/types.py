"""The vocabulary shared by the service's stages: filters, scored chunks, citations, generation
parameters and results, and the `Generator` protocol every generation backend implements.

Why one module: retrieval, prompt assembly, generation and the HTTP layer are built and tested
apart; they agree on these types and on nothing else.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from datetime import date, datetime
from pathlib import Path
from typing import Literal, Protocol

from pydantic import BaseModel, Field

from twin_assets.domain.documents import Category, Platform
from twin_assets.domain.generation import Message


class SearchFilters(BaseModel):
    """What the question itself restricts the search to (self-query). The author filter is not
    here: it is always applied, from the twin being asked, never from the question."""

    categories: list[Category] | None = None
    platforms: list[Platform] | None = None
    published_after: date | None = None  # inclusive
    published_before: date | None = None  # inclusive
    repositories: list[str] | None = None  # repository names, e.g. "llm-twin"

    def is_empty(self) -> bool:
        return not any(
            (
                self.categories,
                self.platforms,
                self.published_after,
                self.published_before,
                self.repositories,
            )
        )


class ScoredChunk(BaseModel):
    """One chunk as the service retrieves it: the chunk's citation fields plus its scores."""

    chunk_id: str
    document_id: str
    author_id: str
    category: Category
    platform: Platform
    link: str
    title: str | None = None
    position: int = 0
    content: str
    section: str | None = None
    file_path: str | None = None
    symbol: str | None = None
    published_at: datetime | None = None
    score: float  # the final score the list is ordered by (higher is better)
    dense_score: float | None = None  # cosine similarity of the best-matching query
    lexical_score: float | None = None  # BM25 of the best-matching query


class Citation(BaseModel):
    """A numbered source of an answer: `[n]` in the answer refers to it."""

    n: int
    chunk_id: str
    document_id: str
    title: str | None = None
    link: str
    platform: Platform
    category: Category
    section: str | None = None
    file_path: str | None = None
    text: str  # the quoted chunk text (the span the answer may draw on)
    position: int = 0  # the chunk's place in its document
    score: float


class RetrievalResult(BaseModel):
    author_id: str
    question: str
    filters: SearchFilters = Field(default_factory=SearchFilters)
    queries: list[str] = Field(default_factory=list)  # the question first, then its expansions
    chunks: list[ScoredChunk] = Field(default_factory=list)  # best first
    index_version: str = ""
    timings_ms: dict[str, float] = Field(default_factory=dict)  # self_query, expansion, search, rerank
    stages: dict[str, bool] = Field(default_factory=dict)  # which stages ran


class GenerationParams(BaseModel):
    max_tokens: int = Field(default=256, ge=1)
    temperature: float = Field(default=0.0, ge=0.0, le=2.0)  # 0: greedy
    top_p: float = Field(default=1.0, gt=0.0, le=1.0)
    stop: list[str] = Field(default_factory=list)
    seed: int | None = None
    # OpenAI's semantics: subtracted from a token's logit once per occurrence in the completion
    # so far (frequency) or once if it occurred at all (presence); small models loop without
    frequency_penalty: float = Field(default=0.0, ge=-2.0, le=2.0)
    presence_penalty: float = Field(default=0.0, ge=-2.0, le=2.0)
    timeout_s: float = Field(default=120.0, gt=0)


FinishReason = Literal["stop", "length", "cancelled", "timeout", "error"]


class GenerationOutput(BaseModel):
    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: FinishReason
    model: str  # "<author>@<version>" or the base model's name
    error: str | None = None


class GenerationHandle(Protocol):
    """One submitted request: iterate it for text deltas, read `output` once it is done."""

    def __aiter__(self) -> AsyncIterator[str]: ...

    async def result(self) -> GenerationOutput: ...

    def cancel(self) -> None: ...


class Generator(Protocol):
    """A generation backend shared by every author the process serves."""

    @property
    def name(self) -> str: ...

    @property
    def context_window(self) -> int: ...

    def count_tokens(self, text: str) -> int: ...

    def render_prompt(self, messages: Sequence[Message]) -> str:
        """The prompt text the model sees, built with its one chat template."""
        ...

    def load_adapter(self, adapter: str, path: Path) -> None:
        """Load (or replace) the LoRA adapter named `adapter` ("<author>@<version>") while serving."""
        ...

    def unload_adapter(self, adapter: str) -> None: ...

    def adapters(self) -> list[str]: ...

    def submit(
        self, adapter: str | None, messages: Sequence[Message], params: GenerationParams
    ) -> GenerationHandle:
        """Queue a request (`adapter` None: the base model); returns at once."""
        ...

    def close(self) -> None: ...
