"""The storage interfaces the plain logic packages are written against.

The logic in `crawling/`, `features/`, `datasets/`, `training/` and `authors/` never imports a
resource or a database driver: it takes one of these protocols, and `resources/` supplies the
implementations (MongoDB, Qdrant, the local/S3 artifact store). That keeps the dependencies
pointing one way (domain <- logic <- resources <- Dagster definitions) and lets tests hand in a
real store or a small fake.

Where the logic needs a record that only a store holds (the bookkeeping of the incremental
feature pipeline, a stored vector), its type is defined here too, so that no caller ever sees a
driver's row or point type.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Protocol

import numpy as np
from pydantic import BaseModel, Field

from twin_assets.domain.documents import Author, Category, CrawlFailure, RawDocument, WriteStats
from twin_assets.domain.features import Chunk, CleanedDocument
from twin_assets.domain.serving import ApiKeyRecord, PromptLog


class ArtifactStore(Protocol):
    """Versioned files (datasets, models, reports) under slash-separated keys, mirrored in a
    local directory and, when configured, in S3."""

    def local_path(self, key: str) -> Path: ...

    def uri(self, key: str) -> str: ...

    def exists(self, key: str) -> bool: ...

    def put_dir(self, key: str, local_dir: Path | None = None) -> str: ...

    def put_json(self, key: str, obj: object) -> str: ...

    def put_bytes(self, key: str, data: bytes) -> str: ...

    def get_json(self, key: str, *, mirror: bool = True) -> object:
        """`mirror=False`: read without leaving a local copy (a lone card in the mirror would
        pass for a complete version to `get_dir`)."""
        ...

    def get_dir(self, key: str) -> Path: ...

    def list_children(self, key: str) -> list[str]:
        """Names directly under `key` (sub-keys and files), sorted; [] when nothing is there."""
        ...

    def delete_prefix(self, key: str) -> int: ...

    def write_alias(self, key: str, alias: str, version: str) -> str: ...

    def read_alias(self, key: str, alias: str) -> str | None: ...


# -- the document warehouse --------------------------------------------------------------------


class DocumentStore(Protocol):
    """Authors, raw documents (one collection per category), crawl failures and cleaned
    documents. Writes are idempotent upserts keyed by document id: an unchanged document (same
    content hash) is never rewritten, which is what keeps downstream data versions stable."""

    # authors
    def upsert_author(self, author: Author) -> None: ...

    def get_author(self, author_id: str) -> Author | None: ...

    def list_authors(self) -> list[Author]: ...

    # raw documents
    def upsert_documents(self, documents: Sequence[RawDocument]) -> WriteStats: ...

    def delete_documents(self, author_id: str, ids: Iterable[str]) -> int: ...

    def get_documents(
        self, author_id: str, categories: Iterable[Category] | None = None
    ) -> list[RawDocument]: ...

    def get_documents_by_id(self, ids: Sequence[str]) -> list[RawDocument]:
        """Raw documents by id, whatever their category (ids that are not stored are skipped)."""
        ...

    def document_hashes(self, author_id: str) -> dict[str, str]:
        """id -> content hash of every raw document of the author (no content is read)."""
        ...

    def document_sources(self, author_id: str) -> dict[str, str | None]:
        """id -> registered link that produced the document (None: stored before it was kept)."""
        ...

    def duplicate_links(self, author_id: str) -> list[dict]: ...

    def empty_documents(self, author_id: str) -> list[dict]: ...

    # crawl failures
    def record_failures(self, author_id: str, failures: Sequence[CrawlFailure]) -> None: ...

    def clear_failures(self, author_id: str, links: Iterable[str]) -> int: ...

    def list_failures(self, author_id: str) -> list[CrawlFailure]: ...

    # cleaned documents
    def upsert_cleaned(self, documents: Sequence[CleanedDocument]) -> WriteStats: ...

    def get_cleaned(
        self, author_id: str, categories: Iterable[Category] | None = None
    ) -> list[CleanedDocument]: ...

    def get_cleaned_by_id(self, ids: Sequence[str]) -> list[CleanedDocument]: ...

    def cleaned_hashes(self, author_id: str) -> dict[str, tuple[str, str]]:
        """id -> (cleaned content hash, raw content hash it was cleaned from)."""
        ...

    def cleaned_provenance(self, author_id: str) -> dict[str, tuple[str | None, str | None]]:
        """id -> (raw content hash, cleaner version) each cleaned document was made from: what
        decides whether a raw document must be cleaned again."""
        ...

    def set_cleaner_version(self, ids: Sequence[str], version: str) -> None:
        """Record that a new cleaner version gave the same output, so it is not re-cleaned."""
        ...

    def delete_cleaned(self, author_id: str, ids: Iterable[str]) -> int: ...


class ChunkStore(Protocol):
    """Chunks in the warehouse: the inspectable copy of what is embedded, read by embedding,
    checks and dataset builders without going through the vector store."""

    def replace_chunks(self, document_id: str, chunks: Sequence[Chunk]) -> None:
        """Make `chunks` the document's chunks: upsert them and delete its other chunks."""
        ...

    def delete_chunks(self, author_id: str, document_ids: Sequence[str]) -> int: ...

    def find_chunks(self, author_id: str, ids: Sequence[str] | None = None) -> list[Chunk]:
        """The author's chunks (all, or those with the given ids), in no particular order."""
        ...

    def chunk_ids(self, author_id: str) -> set[str]: ...

    def chunk_texts(self, author_id: str) -> list[tuple[str, str]]:
        """(chunk id, content) of every chunk of the author."""
        ...

    def chunk_sizes(self, author_id: str) -> list[tuple[str, int]]:
        """(category, stored token count) of every chunk of the author."""
        ...


class ChunkManifest(BaseModel):
    """What chunking last produced for one cleaned document, and from what: the cleaned
    content hash and the chunker fingerprint decide whether the document is chunked again."""

    document_id: str
    author_id: str
    source_hash: str | None = None
    fingerprint: str | None = None
    chunk_ids: list[str] = Field(default_factory=list)
    chunks_hash: str = ""
    category: str | None = None


class EmbeddingManifest(BaseModel):
    """Which vector points hold one document's chunks, under which model and collection:
    Qdrant is diffed against these, never scanned, on the incremental path."""

    document_id: str
    author_id: str
    chunks_hash: str = ""
    point_ids: list[str] = Field(default_factory=list)
    model: str | None = None
    collection: str | None = None


class ManifestStore(Protocol):
    """The incremental feature pipeline's bookkeeping, one manifest per document and stage."""

    def chunk_manifests(self, author_id: str) -> dict[str, ChunkManifest]: ...

    def put_chunk_manifest(self, manifest: ChunkManifest) -> None: ...

    def delete_chunk_manifests(self, document_ids: Sequence[str]) -> int: ...

    def embedding_manifests(self, author_id: str) -> dict[str, EmbeddingManifest]: ...

    def put_embedding_manifests(self, manifests: Sequence[EmbeddingManifest]) -> None: ...

    def delete_embedding_manifests(self, document_ids: Sequence[str]) -> int: ...


class FeatureStore(DocumentStore, ChunkStore, ManifestStore, Protocol):
    """The warehouse as the feature pipeline sees it: documents, chunks and manifests."""


class AuthorDataStore(Protocol):
    """A store that can forget one author: every row it keeps under that author's id."""

    def delete_author_data(self, author_id: str) -> dict[str, int]:
        """Delete the author's rows everywhere; returns rows deleted per collection/table."""
        ...


# -- the vector index --------------------------------------------------------------------------


def point_id(value: object) -> str:
    """The canonical form of a vector point id (a UUID string): Qdrant returns ids normalised,
    chunk ids are compared with them in this form."""
    return str(uuid.UUID(str(value)))


@dataclass(frozen=True)
class VectorPoint:
    """A stored point: its id (canonical form), citation payload and, when asked, its vector."""

    id: str
    payload: dict = field(default_factory=dict)
    vector: list[float] | None = None


@dataclass(frozen=True)
class VectorHit:
    """A search result: a point's id, similarity score and payload."""

    id: str
    score: float
    payload: dict = field(default_factory=dict)


class VectorIndex(Protocol):
    """The chunk collection of the vector store: one collection for all authors, filtered by
    `author_id` (and optionally category/platform) in the point payloads."""

    @property
    def collection(self) -> str:
        """The collection's name (recorded in embedding manifests)."""
        ...

    def exists(self) -> bool: ...

    def vector_size(self) -> int | None: ...

    def ensure_collection(self, dimension: int) -> bool:
        """Create the collection if missing (True if it was created)."""
        ...

    def upsert_chunks(self, chunks: Sequence[Chunk], vectors: np.ndarray) -> None: ...

    def delete_points(self, ids: Iterable[str]) -> int: ...

    def delete_documents(self, author_id: str, document_ids: Iterable[str]) -> None: ...

    def delete_author(self, author_id: str) -> int: ...

    def count(self, author_id: str) -> int: ...

    def existing_ids(self, ids: Iterable[str]) -> set[str]:
        """Which of `ids` have a point (canonical form; a lookup by id, not a scan)."""
        ...

    def scroll(self, author_id: str, with_vectors: bool = False) -> Iterator[VectorPoint]:
        """Every point of the author (a full scan: for checks and reconciliation)."""
        ...

    def sample_vectors(self, author_id: str, limit: int) -> list[list[float]]:
        """Up to `limit` stored vectors of the author (for dimension and norm checks)."""
        ...

    def search(
        self,
        vector: np.ndarray,
        author_id: str,
        k: int,
        categories: Iterable[str] | None = None,
        platforms: Iterable[str] | None = None,
    ) -> list[VectorHit]: ...


class Embedder(Protocol):
    """A sentence-embedding model: unit-norm vectors of a fixed dimension."""

    @property
    def model_name(self) -> str: ...

    @property
    def dimension(self) -> int: ...

    def embed(self, texts: Sequence[str]) -> np.ndarray: ...

    def embed_query(self, text: str) -> np.ndarray: ...


# -- the inference service ---------------------------------------------------------------------


class ApiKeyStore(Protocol):
    """The service's API keys, looked up by the hash of the presented key (a key itself is
    never stored)."""

    def insert_key(self, record: ApiKeyRecord) -> None:
        """Store a new key record (its hash is unique)."""
        ...

    def find_key_by_hash(self, key_hash: str) -> ApiKeyRecord | None: ...

    def list_keys(self) -> list[ApiKeyRecord]:
        """Every key, revoked ones included, oldest first."""
        ...

    def revoke_key(self, key_id: str) -> bool:
        """Mark the key revoked; False when there is no such key or it already was."""
        ...


class PromptLogStore(Protocol):
    """Prompt monitoring: one row per request to the service, queried by time."""

    def insert_prompt_logs(self, logs: Sequence[PromptLog]) -> int:
        """Store the logs (ids already stored are skipped); returns how many were stored."""
        ...

    def find_prompt_logs(
        self, start: datetime, end: datetime, author_id: str | None = None
    ) -> list[PromptLog]:
        """The logs with `start <= at < end` (of one author, or all), oldest first."""
        ...

    def delete_prompt_logs_before(self, cutoff: datetime) -> int:
        """Retention: delete the logs older than `cutoff`; returns how many went."""
        ...
