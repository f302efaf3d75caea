"""The vector store: Qdrant through qdrant-client, embedded on disk by default, a server in production.

One collection for every author and category, with `author_id`, `category` and `platform` in the
payload (indexed), rather than one collection per category:
- retrieval ranks all of an author's writing in one query, so scores are comparable across
  categories and a category filter is one payload condition, not a fan-out and a merge;
- Qdrant's multitenancy guidance is one collection with a tenant key (`author_id`, created with
  `is_tenant=True`) rather than many small collections;
- a model change needs one new collection, not three.

Local mode (`QdrantClient(path=...)`) locks its folder: one client per path per process tree.
`QdrantResource.open()` is therefore a context manager that always closes its client, and the
Dagster assets that write go through the `qdrant` concurrency pool (limit 1) so that two steps
never open the folder at the same time. A server (TWIN_QDRANT_URL) has no such lock; the code
is the same.

`QdrantIndex` implements the `VectorIndex` protocol of `twin_assets.domain.stores`: the logic
(incremental embedding, checks, retrieval) sees `VectorPoint`/`VectorHit`, never qdrant-client
types. Retrieval itself is plain logic in `twin_assets.features.retrieval`; `retrieve` here only
opens and closes a client around it.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import numpy as np
from pydantic import Field
from qdrant_client import QdrantClient, models

from twin_assets.domain.features import Chunk, RetrievedChunk
from twin_assets.domain.stores import Embedder, VectorHit, VectorPoint, point_id
from twin_assets.features.retrieval import retrieve

DEFAULT_COLLECTION = "twin_chunks"
KEYWORD_INDEXES = ("author_id", "category", "platform", "document_id")


class VectorStoreError(RuntimeError):
    pass


def _match(key: str, values: Iterable[str] | str | None) -> models.FieldCondition | None:
    if values is None:
        return None
    if isinstance(values, str):
        return models.FieldCondition(key=key, match=models.MatchValue(value=values))
    values = [str(v) for v in values]
    return models.FieldCondition(key=key, match=models.MatchAny(any=values))


def _author_filter(
    author_id: str,
    categories: Iterable[str] | None = None,
    platforms: Iterable[str] | None = None,
    document_ids: Iterable[str] | None = None,
) -> models.Filter:
    conditions: list[models.Condition] = [
        c
        for c in (
            _match("author_id", author_id),
            _match("category", list(categories) if categories is not None else None),
            _match("platform", list(platforms) if platforms is not None else None),
            _match("document_id", list(document_ids) if document_ids is not None else None),
        )
        if c is not None
    ]
    return models.Filter(must=conditions)


class QdrantIndex:
    """The chunk collection: the queries the feature pipeline and retrieval need
    (implements `twin_assets.domain.stores.VectorIndex`)."""

    def __init__(self, client: QdrantClient, collection: str):
        self.client = client
        self.collection = collection

    # -- schema ------------------------------------------------------------------------------
    def exists(self) -> bool:
        return self.client.collection_exists(self.collection)

    def vector_size(self) -> int | None:
        if not self.exists():
            return None
        params = self.client.get_collection(self.collection).config.params.vectors
        if params is None or isinstance(params, dict):  # named (or no) vectors: not ours
            raise VectorStoreError(f"collection {self.collection!r} uses named vectors")
        return int(params.size)

    def ensure_collection(self, dimension: int) -> bool:
        """Create the collection and its payload indexes if missing. True if it was created.

        A dimension mismatch is a configuration error (another model wrote this collection):
        raised rather than silently mixing vector spaces.
        """
        existing = self.vector_size()
        if existing is not None:
            if existing != dimension:
                raise VectorStoreError(
                    f"collection {self.collection!r} holds {existing}-d vectors but the embedding "
                    f"model gives {dimension}-d; set TWIN_QDRANT_COLLECTION to a new collection"
                )
            return False
        self.client.create_collection(
            self.collection,
            vectors_config=models.VectorParams(size=dimension, distance=models.Distance.COSINE),
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # local mode warns that indexes have no effect
            logging.getLogger("qdrant_client").setLevel(logging.ERROR)
            for key in KEYWORD_INDEXES:
                schema: models.PayloadSchemaType | models.KeywordIndexParams = (
                    models.PayloadSchemaType.KEYWORD
                )
                if key == "author_id":
                    schema = models.KeywordIndexParams(type=models.KeywordIndexType.KEYWORD, is_tenant=True)
                self.client.create_payload_index(self.collection, field_name=key, field_schema=schema)
        return True

    # -- writes ------------------------------------------------------------------------------
    def upsert_chunks(self, chunks: Sequence[Chunk], vectors: np.ndarray) -> None:
        if len(chunks) != len(vectors):
            raise ValueError(f"{len(chunks)} chunks but {len(vectors)} vectors")
        if not chunks:
            return
        self.client.upsert(
            self.collection,
            points=models.Batch(
                ids=[c.id for c in chunks],
                vectors=np.asarray(vectors, dtype=np.float32).tolist(),
                payloads=[c.payload() for c in chunks],
            ),
            wait=True,
        )

    def delete_points(self, ids: Iterable[str]) -> int:
        points: list[models.ExtendedPointId] = list(ids)
        if points and self.exists():
            self.client.delete(self.collection, points_selector=models.PointIdsList(points=points), wait=True)
        return len(points)

    def delete_documents(self, author_id: str, document_ids: Iterable[str]) -> None:
        document_ids = list(document_ids)
        if document_ids and self.exists():
            self.client.delete(
                self.collection,
                points_selector=models.FilterSelector(
                    filter=_author_filter(author_id, document_ids=document_ids)
                ),
                wait=True,
            )

    def delete_author(self, author_id: str) -> int:
        """Every point of one author (an author purge); returns how many there were."""
        if not self.exists():
            return 0
        n = self.count(author_id)
        if n:
            self.client.delete(
                self.collection,
                points_selector=models.FilterSelector(filter=_author_filter(author_id)),
                wait=True,
            )
        return n

    # -- reads -------------------------------------------------------------------------------
    def count(self, author_id: str) -> int:
        if not self.exists():
            return 0
        return self.client.count(self.collection, count_filter=_author_filter(author_id), exact=True).count

    def existing_ids(self, ids: Iterable[str], batch: int = 2048) -> set[str]:
        """Which of `ids` have a point (a lookup by id: no scan, no payload, no vectors)."""
        ids = list(ids)
        found: set[str] = set()
        if not ids or not self.exists():
            return found
        for i in range(0, len(ids), batch):
            records = self.client.retrieve(
                self.collection, ids=ids[i : i + batch], with_payload=False, with_vectors=False
            )
            found.update(point_id(r.id) for r in records)
        return found

    def scroll(self, author_id: str, with_vectors: bool = False, batch: int = 1024) -> Iterator[VectorPoint]:
        """Every point of the author (for checks and reconciliation; not on the hot path)."""
        if not self.exists():
            return
        offset = None
        while True:
            records, offset = self.client.scroll(
                self.collection,
                scroll_filter=_author_filter(author_id),
                limit=batch,
                offset=offset,
                with_payload=True,
                with_vectors=with_vectors,
            )
            yield from (_point(r) for r in records)
            if offset is None:
                break

    def sample_vectors(self, author_id: str, limit: int) -> list[list[float]]:
        """Up to `limit` stored vectors of the author (one page, no payloads)."""
        if not self.exists():
            return []
        records, _ = self.client.scroll(
            self.collection,
            scroll_filter=_author_filter(author_id),
            limit=limit,
            with_vectors=True,
            with_payload=False,
        )
        return [_point(r).vector or [] for r in records]

    def search(
        self,
        vector: np.ndarray,
        author_id: str,
        k: int,
        categories: Iterable[str] | None = None,
        platforms: Iterable[str] | None = None,
    ) -> list[VectorHit]:
        if not self.exists():
            return []
        points = self.client.query_points(
            self.collection,
            query=np.asarray(vector, dtype=np.float32).tolist(),
            query_filter=_author_filter(author_id, categories, platforms),
            limit=k,
            with_payload=True,
        ).points
        return [VectorHit(id=point_id(p.id), score=p.score, payload=p.payload or {}) for p in points]


def _point(record: models.Record) -> VectorPoint:
    vector = record.vector
    if vector is not None and not isinstance(vector, list):  # named/sparse vectors: not ours
        raise VectorStoreError(f"point {record.id} does not hold one dense vector")
    return VectorPoint(id=point_id(record.id), payload=record.payload or {}, vector=vector)  # type: ignore[arg-type]


class QdrantResource(dg.ConfigurableResource):
    """Where vectors live: TWIN_QDRANT_URL (+ TWIN_QDRANT_API_KEY) or a local folder."""

    url: str = Field(default="", description="Qdrant server URL (TWIN_QDRANT_URL). Empty: local mode.")
    api_key: str = Field(default="", description="Qdrant API key (TWIN_QDRANT_API_KEY).")
    path: str = Field(default=".data/qdrant", description="Local-mode folder (default <data_dir>/qdrant).")
    collection: str = Field(default=DEFAULT_COLLECTION, description="Collection (TWIN_QDRANT_COLLECTION).")
    timeout_s: int = 60

    @property
    def is_local(self) -> bool:
        return not self.url

    def location(self) -> str:
        return self.url or str(Path(self.path).resolve())

    def make_client(self) -> QdrantClient:
        if self.url:
            return QdrantClient(url=self.url, api_key=self.api_key or None, timeout=self.timeout_s)
        Path(self.path).mkdir(parents=True, exist_ok=True)
        try:
            return QdrantClient(path=str(Path(self.path).resolve()))
        except RuntimeError as exc:  # the local folder is locked by another client
            raise VectorStoreError(
                f"{exc}. Local Qdrant allows one client per folder: run writers in the 'qdrant' "
                "pool, stop other processes using it, or use a Qdrant server (TWIN_QDRANT_URL)."
            ) from exc

    @contextmanager
    def open(self) -> Iterator[QdrantIndex]:
        """A `QdrantIndex` whose client is closed on exit (releases the local folder lock)."""
        client = self.make_client()
        try:
            yield QdrantIndex(client, self.collection)
        finally:
            client.close()

    def retrieve(
        self,
        query: str,
        author_id: str,
        k: int,
        *,
        embedder: Embedder,
        categories: Iterable[str] | None = None,
        platforms: Iterable[str] | None = None,
    ) -> list[RetrievedChunk]:
        """What inference and dataset generation call: top-k cited chunks for one author, with a
        client opened and closed around the query (local mode's folder lock)."""
        with self.open() as index:
            return retrieve(
                query,
                author_id,
                k,
                embedder=embedder,
                index=index,
                categories=categories,
                platforms=platforms,
            )
