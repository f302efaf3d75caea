"""The incremental feature pipeline: clean -> chunk -> embed, redoing only what changed.

Each stage compares hashes it recorded last time with its input's hashes and works only on the
difference, so a re-run after one page changed costs one document, not the corpus:

- cleaning: raw `content_hash` (+ `CLEANER_VERSION`) vs the cleaned document's `raw_content_hash`;
- chunking: cleaned `content_hash` (+ chunker/model fingerprint) vs the document's chunk
  manifest (warehouse collection `chunk_manifests`);
- embedding: the chunk manifest's `chunks_hash` vs the embedding manifest (`embedding_manifests`),
  which also lists the Qdrant point ids written for the document.

Where chunks live: in the warehouse (collection `chunks`), written by the `chunks` asset and read
by `embedded_chunks`. Keeping them there (rather than letting `embedded_chunks` re-chunk) makes
chunks a first-class, inspectable asset with its own checks (token limit), lets dataset builders
read them without Qdrant, and lets embedding fetch only the chunks of changed documents.

The diff for Qdrant is computed from the embedding manifests, not by scrolling the collection
(which is a full scan in local mode). A cheap count per author guards the bookkeeping: if Qdrant
does not hold exactly the points the manifests list (a crash mid-write, a wiped folder), the
author's points are reconciled by one scroll and the difference is repaired.
"""

from __future__ import annotations

import queue
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Sequence

from pydantic import BaseModel, Field
from pymongo import DeleteMany, UpdateOne

from resources.vector_store import VectorIndex, point_id
from resources.warehouse import CLEANED, DocumentStore
from twin_assets.domain.documents import Category, RawDocument, sha256_text
from twin_assets.domain.features import Chunk, CleanedDocument
from twin_assets.features.chunking import CHUNKER_VERSION, ChunkingConfig, TokenBudget, chunk_document
from twin_assets.features.cleaning import CLEANER_VERSION, EmptyAfterCleaning, clean_document

CHUNKS = "chunks"
CHUNK_MANIFESTS = "chunk_manifests"
EMBEDDING_MANIFESTS = "embedding_manifests"
_ID_BATCH = 1000

Log = Callable[[str], None]


def _noop(_: str) -> None:
    pass


def _batched(items: Sequence, size: int) -> Iterable[Sequence]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


class StageStats(BaseModel):
    """What one incremental run of a stage did (shown as asset metadata)."""

    new: int = 0
    updated: int = 0
    unchanged: int = 0
    deleted: int = 0
    failed: int = 0
    failures: list[str] = Field(default_factory=list)
    changed_ids: list[str] = Field(default_factory=list)
    deleted_ids: list[str] = Field(default_factory=list)


def version_of(pairs: Iterable[tuple[str, str]], *salt: str) -> str:
    """Data version of a partition: a hash of (id, content hash) pairs, order-independent."""
    return sha256_text(*salt, *[f"{a}:{b}" for a, b in sorted(pairs)])[:32]


# -- cleaning ----------------------------------------------------------------------------------


def _fetch_raw(store: DocumentStore, ids: Sequence[str]) -> list[RawDocument]:
    out: list[RawDocument] = []
    for batch in _batched(list(ids), _ID_BATCH):
        for category in Category:
            for data in store.collection(category.value).find({"_id": {"$in": list(batch)}}):
                data.pop("stored_at", None)
                out.append(RawDocument.from_mongo(data))
    return out


def clean_author(store: DocumentStore, author_id: str, log: Log = _noop) -> StageStats:
    """Re-clean new/changed raw documents, delete cleaned ones whose raw document is gone.
    A document that fails to clean (even to nothing) keeps its previous cleaned version."""
    stats = StageStats()
    raw_hashes = store.document_hashes(author_id)
    stored = {
        row["_id"]: (row.get("raw_content_hash"), row.get("cleaner_version"))
        for row in store.collection(CLEANED).find(
            {"author_id": author_id}, {"raw_content_hash": 1, "cleaner_version": 1}
        )
    }
    todo = [i for i, h in raw_hashes.items() if stored.get(i) != (h, CLEANER_VERSION)]
    stats.unchanged = len(raw_hashes) - len(todo)
    gone = [i for i in stored if i not in raw_hashes]
    log(f"cleaning {len(todo)} of {len(raw_hashes)} raw documents ({len(gone)} gone)")
    cleaned: list[CleanedDocument] = []
    for doc in sorted(_fetch_raw(store, todo), key=lambda d: d.id):
        try:
            cleaned.append(clean_document(doc))
        except EmptyAfterCleaning as exc:
            # Only a raw document that no longer exists is gone. One whose new content cleans to
            # nothing is far more often a broken fetch (a consent wall, a changed layout) than
            # an author who blanked a post: keep the previous version and its chunks/vectors.
            stats.failed += 1
            stats.failures.append(f"{exc}; previous cleaned version kept")
            log(f"cleaning failed, previous version kept: {exc}")
        except Exception as exc:  # noqa: BLE001 - one bad document never stops the others
            stats.failed += 1
            stats.failures.append(f"{doc.link}: {type(exc).__name__}: {exc}")
            log(f"cleaning failed, previous version kept: {doc.link}: {exc}")
    write = store.upsert_cleaned(cleaned)
    # same output under a new cleaner version: record the version so it is not re-cleaned again
    same = [d.id for d in cleaned if d.id not in write.new_ids and d.id not in write.updated_ids]
    if same:
        store.collection(CLEANED).update_many(
            {"_id": {"$in": same}}, {"$set": {"cleaner_version": CLEANER_VERSION}}
        )
    stats.new, stats.updated = write.new, write.updated
    stats.unchanged += write.unchanged
    stats.changed_ids = write.new_ids + write.updated_ids
    stats.deleted = store.delete_cleaned(author_id, gone)
    stats.deleted_ids = gone
    return stats


def cleaned_version(store: DocumentStore, author_id: str) -> str:
    return version_of(((i, h[0]) for i, h in store.cleaned_hashes(author_id).items()), "cleaned")


# -- chunking ----------------------------------------------------------------------------------


def chunking_fingerprint(budget: TokenBudget, config: ChunkingConfig, model_name: str) -> str:
    return f"{CHUNKER_VERSION}:{config.fingerprint()}:{model_name}:{budget.max_seq_length}"


def _fetch_cleaned(store: DocumentStore, ids: Sequence[str]) -> list[CleanedDocument]:
    out: list[CleanedDocument] = []
    for batch in _batched(list(ids), _ID_BATCH):
        out += [CleanedDocument.from_mongo(r) for r in store.collection(CLEANED).find({"_id": {"$in": list(batch)}})]
    return out


def write_chunks(store: DocumentStore, author_id: str, document_id: str, chunks: list[Chunk], fingerprint: str, source_hash: str) -> None:
    ids = [c.id for c in chunks]
    col = store.collection(CHUNKS)
    # Stale chunks by exact id: a `$nin` delete makes the embedded server scan the whole
    # collection for every document (measured: 26 ms vs 1 ms per document at 16k chunks).
    stale = {r["_id"] for r in col.find({"document_id": document_id}, {"_id": 1})} - set(ids)
    ops: list = [DeleteMany({"_id": {"$in": sorted(stale)}})] if stale else []
    for c in chunks:
        data = c.to_mongo()
        data.pop("_id")
        ops.append(UpdateOne({"_id": c.id}, {"$set": data}, upsert=True))
    if ops:
        col.bulk_write(ops, ordered=True)
    store.collection(CHUNK_MANIFESTS).update_one(
        {"_id": document_id},
        {
            "$set": {
                "author_id": author_id,
                "source_hash": source_hash,
                "fingerprint": fingerprint,
                "chunk_ids": ids,
                "chunks_hash": sha256_text(*ids)[:32],
                "category": chunks[0].category.value if chunks else None,
            }
        },
        upsert=True,
    )


def chunk_author(
    store: DocumentStore,
    author_id: str,
    budget: TokenBudget,
    model_name: str,
    config: ChunkingConfig | None = None,
    log: Log = _noop,
) -> StageStats:
    """Re-chunk new/changed cleaned documents; drop chunks of documents that are gone."""
    config = config or ChunkingConfig()
    fingerprint = chunking_fingerprint(budget, config, model_name)
    stats = StageStats()
    # idempotent; per-document chunk lookups (write_chunks, get_chunks) stay cheap as it grows
    store.collection(CHUNKS).create_index([("document_id", 1)], name="document_id")
    store.collection(CHUNKS).create_index([("author_id", 1)], name="author_id")
    cleaned = {i: h[0] for i, h in store.cleaned_hashes(author_id).items()}
    manifests = {
        r["_id"]: (r.get("source_hash"), r.get("fingerprint"))
        for r in store.collection(CHUNK_MANIFESTS).find({"author_id": author_id}, {"source_hash": 1, "fingerprint": 1})
    }
    todo = [i for i, h in cleaned.items() if manifests.get(i) != (h, fingerprint)]
    gone = [i for i in manifests if i not in cleaned]
    stats.unchanged = len(cleaned) - len(todo)
    log(f"chunking {len(todo)} of {len(cleaned)} cleaned documents ({len(gone)} gone)")
    for n, doc in enumerate(sorted(_fetch_cleaned(store, todo), key=lambda d: d.id), 1):
        try:
            chunks = chunk_document(doc, budget, config)
        except Exception as exc:  # noqa: BLE001 - keep the previous chunks, carry on
            stats.failed += 1
            stats.failures.append(f"{doc.link}: {type(exc).__name__}: {exc}")
            log(f"chunking failed, previous chunks kept: {doc.link}: {exc}")
            continue
        write_chunks(store, author_id, doc.id, chunks, fingerprint, doc.content_hash)
        if doc.id in manifests:
            stats.updated += 1
        else:
            stats.new += 1
        stats.changed_ids.append(doc.id)
        if n % 200 == 0:
            log(f"chunked {n}/{len(todo)} documents")
    if gone:
        for batch in _batched(gone, _ID_BATCH):
            store.collection(CHUNKS).delete_many({"author_id": author_id, "document_id": {"$in": list(batch)}})
            store.collection(CHUNK_MANIFESTS).delete_many({"_id": {"$in": list(batch)}})
    stats.deleted = len(gone)
    stats.deleted_ids = gone
    return stats


def chunks_version(store: DocumentStore, author_id: str) -> str:
    rows = store.collection(CHUNK_MANIFESTS).find({"author_id": author_id}, {"chunks_hash": 1})
    return version_of(((r["_id"], r["chunks_hash"]) for r in rows), "chunks")


def get_chunks(store: DocumentStore, author_id: str, ids: Sequence[str] | None = None) -> list[Chunk]:
    if ids is None:
        rows = store.collection(CHUNKS).find({"author_id": author_id})
        return sorted((Chunk.from_mongo(r) for r in rows), key=lambda c: (c.document_id, c.position))
    out: list[Chunk] = []
    for batch in _batched(list(ids), _ID_BATCH):
        out += [Chunk.from_mongo(r) for r in store.collection(CHUNKS).find({"_id": {"$in": list(batch)}})]
    return sorted(out, key=lambda c: (c.document_id, c.position))


def chunk_profile(store: DocumentStore, author_id: str) -> tuple[Counter, list[int]]:
    """(chunks per category, token counts of every chunk) for metadata and checks."""
    by_category: Counter = Counter()
    tokens: list[int] = []
    for r in store.collection(CHUNKS).find({"author_id": author_id}, {"category": 1, "token_count": 1}):
        by_category[r["category"]] += 1
        tokens.append(int(r["token_count"]))
    return by_category, tokens


# -- embedding ---------------------------------------------------------------------------------


class EmbedStats(StageStats):
    chunks_embedded: int = 0
    chunks_reused: int = 0
    points_deleted: int = 0
    orphans_repaired: int = 0
    reconciled: bool = False


class _Writer:
    """Upserts in a background thread so that Qdrant writes overlap the next batch's encoding."""

    def __init__(self, index: VectorIndex):
        self.index = index
        self.queue: queue.Queue = queue.Queue(maxsize=2)
        self.error: BaseException | None = None
        self.done_ids: set[str] = set()
        self.thread = threading.Thread(target=self._run, name="qdrant-writer", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while True:
            item = self.queue.get()
            if item is None:
                return
            if self.error is not None:
                continue
            chunks, vectors = item
            try:
                self.index.upsert_chunks(chunks, vectors)
                self.done_ids.update(c.id for c in chunks)
            except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
                self.error = exc

    def put(self, chunks: list[Chunk], vectors) -> None:
        if self.error is not None:
            raise self.error
        self.queue.put((chunks, vectors))

    def close(self) -> None:
        self.queue.put(None)
        self.thread.join()
        if self.error is not None:
            raise self.error


def _embedding_manifests(store: DocumentStore, author_id: str) -> dict[str, dict]:
    return {r["_id"]: r for r in store.collection(EMBEDDING_MANIFESTS).find({"author_id": author_id})}


def embed_author(
    store: DocumentStore,
    index: VectorIndex,
    embedder,
    author_id: str,
    log: Log = _noop,
    encode_batch: int = 512,
) -> EmbedStats:
    """Bring the author's Qdrant points in line with the warehouse chunks, embedding only new ones.

    A chunk id encodes (document, position, content), so a chunk whose id already has a point
    under the same model keeps its vector; only new ids are encoded, vanished ids are deleted.
    """
    stats = EmbedStats()
    model = embedder.model_name
    created = index.ensure_collection(embedder.dimension)
    key = {"model": model, "collection": index.collection}
    manifests = _embedding_manifests(store, author_id)
    valid = {d: m for d, m in manifests.items() if not created and all(m.get(k) == v for k, v in key.items())}

    # -- guard the bookkeeping: every listed point exists (lookup by id) and nothing else is
    # there (count); only if either fails are the author's points scrolled and repaired
    expected = {point_id(p) for m in valid.values() for p in m["point_ids"]}
    if index.count(author_id) != len(expected) or len(index.existing_ids(expected)) != len(expected):
        stats.reconciled = True
        present = {point_id(r.id): (r.payload or {}).get("document_id") for r in index.scroll(author_id)}
        orphans = [p for p in present if p not in expected]
        stats.orphans_repaired = index.delete_points(orphans)
        for doc_id, m in list(valid.items()):
            if any(point_id(p) not in present for p in m["point_ids"]):
                del valid[doc_id]  # some of its points are missing: re-embed the document
        log(f"reconciled Qdrant with the manifests: {len(orphans)} orphan points removed")

    chunk_manifests = {
        r["_id"]: r for r in store.collection(CHUNK_MANIFESTS).find({"author_id": author_id}, {"chunk_ids": 1, "chunks_hash": 1})
    }
    gone = [d for d in manifests if d not in chunk_manifests]
    todo = [d for d, m in chunk_manifests.items() if valid.get(d, {}).get("chunks_hash") != m["chunks_hash"]]
    stats.unchanged = len(chunk_manifests) - len(todo)

    # -- deletions first: points of documents that are gone, and stale points of changed ones
    stale: list[str] = []
    for d in gone:
        stale += manifests[d].get("point_ids", [])
    index.delete_documents(author_id, gone)  # by filter too: catches points a manifest missed
    to_embed_ids: list[str] = []
    for d in todo:
        new_ids = [point_id(p) for p in chunk_manifests[d]["chunk_ids"]]
        old_ids = {point_id(p) for p in valid.get(d, {}).get("point_ids", [])}
        stale += [p for p in old_ids if p not in set(new_ids)]
        reuse = [p for p in new_ids if p in old_ids]
        stats.chunks_reused += len(reuse)
        to_embed_ids += [p for p in new_ids if p not in old_ids]
        if d in manifests:
            stats.updated += 1
        else:
            stats.new += 1
    stats.points_deleted = index.delete_points(stale)
    if gone:
        store.collection(EMBEDDING_MANIFESTS).delete_many({"_id": {"$in": gone}})
    stats.deleted, stats.deleted_ids = len(gone), gone
    stats.changed_ids = todo

    # Longest first, like SentenceTransformer.encode sorts one call's inputs: batches of similar
    # length waste no compute on padding (document order would pad most batches to the limit).
    chunks = sorted(get_chunks(store, author_id, to_embed_ids), key=lambda c: len(c.content), reverse=True)
    log(f"embedding {len(chunks)} chunks of {len(todo)} documents ({stats.chunks_reused} reused, {len(stale)} stale points deleted)")
    writer = _Writer(index)
    try:
        for n, batch in enumerate(_batched(chunks, encode_batch), 1):
            vectors = embedder.embed([c.content for c in batch])
            writer.put(list(batch), vectors)
            stats.chunks_embedded += len(batch)
            if n % 5 == 0 or stats.chunks_embedded == len(chunks):
                log(f"embedded {stats.chunks_embedded}/{len(chunks)} chunks")
    finally:
        try:
            writer.close()
        finally:
            # manifests only for documents whose every new point is written: a crash re-embeds the rest
            ops = []
            for d in todo:
                ids = [point_id(p) for p in chunk_manifests[d]["chunk_ids"]]
                old_ids = {point_id(p) for p in valid.get(d, {}).get("point_ids", [])}
                if all(p in writer.done_ids or p in old_ids for p in ids):
                    ops.append(
                        UpdateOne(
                            {"_id": d},
                            {"$set": {"author_id": author_id, "chunks_hash": chunk_manifests[d]["chunks_hash"], "point_ids": ids, **key}},
                            upsert=True,
                        )
                    )
            if ops:
                store.collection(EMBEDDING_MANIFESTS).bulk_write(ops, ordered=False)
    return stats


def embedded_version(store: DocumentStore, author_id: str, model: str) -> str:
    rows = store.collection(EMBEDDING_MANIFESTS).find({"author_id": author_id}, {"chunks_hash": 1})
    return version_of(((r["_id"], r["chunks_hash"]) for r in rows), "embedded", model)
