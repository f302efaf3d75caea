"""The incremental feature pipeline: clean -> chunk -> embed, redoing only what changed.

Each stage compares hashes it recorded last time with its input's hashes and works only on the
difference, so a re-run after one page changed costs one document, not the corpus:

- cleaning: raw `content_hash` (+ `CLEANER_VERSION`) vs the cleaned document's `raw_content_hash`;
- chunking: cleaned `content_hash` (+ chunker/model fingerprint) vs the document's
  `ChunkManifest`;
- embedding: the chunk manifest's `chunks_hash` vs the `EmbeddingManifest`, which also lists the
  vector point ids written for the document.

Where chunks live: in the warehouse (a `ChunkStore`), written by the `chunks` asset and read
by `embedded_chunks`. Keeping them there (rather than letting `embedded_chunks` re-chunk) makes
chunks a first-class, inspectable asset with its own checks (token limit), lets dataset builders
read them without Qdrant, and lets embedding fetch only the chunks of changed documents.

The diff for Qdrant is computed from the embedding manifests, not by scrolling the collection
(which is a full scan in local mode). A cheap count per author guards the bookkeeping: if Qdrant
does not hold exactly the points the manifests list (a crash mid-write, a wiped folder), the
author's points are reconciled by one scroll and the difference is repaired.

Everything here is written against the protocols of `twin_assets.domain.stores` (a
`FeatureStore`, a `VectorIndex`, an `Embedder`); `resources/` supplies MongoDB and Qdrant.
"""

from __future__ import annotations

import queue
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Sequence

from pydantic import BaseModel, Field

from twin_assets.domain.documents import sha256_text
from twin_assets.domain.features import Chunk, CleanedDocument, DocumentFailure
from twin_assets.domain.stores import (
    ChunkManifest,
    ChunkStore,
    DocumentStore,
    Embedder,
    EmbeddingManifest,
    FeatureStore,
    ManifestStore,
    VectorIndex,
    point_id,
)
from twin_assets.features.chunking import CHUNKER_VERSION, ChunkingConfig, TokenBudget, chunk_document
from twin_assets.features.cleaning import CLEANER_VERSION, clean_document

Log = Callable[[str], None]


def _noop(_: str) -> None:
    pass


def _batched(items: Sequence, size: int) -> Iterable[Sequence]:
    """Encoding batches."""
    for i in range(0, len(items), size):
        yield items[i : i + size]


class StageStats(BaseModel):
    """What one incremental run of a stage did (shown as asset metadata).

    `failed_documents`: the documents this run skipped because processing them raised, each
    with its reason. They keep what an earlier run stored for them and are not marked
    processed, so the next run tries them again; `failures` is the same as readable lines."""

    new: int = 0
    updated: int = 0
    unchanged: int = 0
    deleted: int = 0
    failed: int = 0
    failures: list[str] = Field(default_factory=list)
    failed_documents: list[DocumentFailure] = Field(default_factory=list)
    changed_ids: list[str] = Field(default_factory=list)
    deleted_ids: list[str] = Field(default_factory=list)

    def record_failure(self, failure: DocumentFailure, log: Log, kept: str) -> None:
        """Count a skipped document; `kept` says what it keeps from earlier runs."""
        self.failed += 1
        self.failed_documents.append(failure)
        self.failures.append(f"{failure.link or failure.document_id}: {failure.reason}; {kept}")
        log(f"{failure.stage} failed, {kept}: {failure.link or failure.document_id}: {failure.reason}")

    @property
    def all_failed(self) -> bool:
        """Documents failed and none is in a usable state (processed now or unchanged since a
        successful run): the stage produced nothing, which is an error, not a warning."""
        return self.failed > 0 and self.new + self.updated + self.unchanged == 0


def load_each(
    fetch: Callable[[Sequence[str]], Sequence[BaseModel]],
    ids: Sequence[str],
    stage: str,
    stats: StageStats,
    log: Log = _noop,
) -> list:
    """`fetch(ids)`, and when that raises (a stored document that no longer validates), each
    id on its own: the malformed one is recorded as failed, the others are still processed."""
    try:
        return list(fetch(ids))
    except Exception as batch_error:
        log(f"loading {len(ids)} documents failed ({type(batch_error).__name__}): loading one by one")
    out: list = []
    for i in ids:
        try:
            out.extend(fetch([i]))
        except Exception as exc:
            stats.record_failure(DocumentFailure.of(stage, exc, i), log, "previous output kept")
    return out


def version_of(pairs: Iterable[tuple[str, str]], *salt: str) -> str:
    """Data version of a partition: a hash of (id, content hash) pairs, order-independent."""
    return sha256_text(*salt, *[f"{a}:{b}" for a, b in sorted(pairs)])[:32]


# -- cleaning ----------------------------------------------------------------------------------


def clean_author(store: DocumentStore, author_id: str, log: Log = _noop) -> StageStats:
    """Re-clean new/changed raw documents, delete cleaned ones whose raw document is gone.
    A document that fails to clean (even to nothing) keeps its previous cleaned version."""
    stats = StageStats()
    raw_hashes = store.document_hashes(author_id)
    stored = store.cleaned_provenance(author_id)
    todo = [i for i, h in raw_hashes.items() if stored.get(i) != (h, CLEANER_VERSION)]
    stats.unchanged = len(raw_hashes) - len(todo)
    gone = [i for i in stored if i not in raw_hashes]
    log(f"cleaning {len(todo)} of {len(raw_hashes)} raw documents ({len(gone)} gone)")
    cleaned: list[CleanedDocument] = []
    kept = "previous cleaned version kept"
    for doc in sorted(load_each(store.get_documents_by_id, todo, "cleaning", stats, log), key=lambda d: d.id):
        try:
            cleaned.append(clean_document(doc))
        except Exception as exc:  # one bad document never stops the others (RecursionError too)
            # `EmptyAfterCleaning` included: only a raw document that no longer exists is gone.
            # One whose new content cleans to nothing is far more often a broken fetch (a
            # consent wall, a changed layout) than an author who blanked a post: keep the
            # previous version and its chunks/vectors.
            stats.record_failure(DocumentFailure.of("cleaning", exc, doc.id, doc.link), log, kept)
    write = store.upsert_cleaned(cleaned)
    # same output under a new cleaner version: record the version so it is not re-cleaned again
    same = [d.id for d in cleaned if d.id not in write.new_ids and d.id not in write.updated_ids]
    if same:
        store.set_cleaner_version(same, CLEANER_VERSION)
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


def write_chunks(
    store: FeatureStore,
    author_id: str,
    document_id: str,
    chunks: list[Chunk],
    fingerprint: str,
    source_hash: str,
) -> None:
    """The document's chunks, then its manifest: a crash in between re-chunks it next time."""
    ids = [c.id for c in chunks]
    store.replace_chunks(document_id, chunks)
    store.put_chunk_manifest(
        ChunkManifest(
            document_id=document_id,
            author_id=author_id,
            source_hash=source_hash,
            fingerprint=fingerprint,
            chunk_ids=ids,
            chunks_hash=sha256_text(*ids)[:32],
            category=chunks[0].category.value if chunks else None,
        )
    )


def chunk_author(
    store: FeatureStore,
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
    cleaned = {i: h[0] for i, h in store.cleaned_hashes(author_id).items()}
    manifests = {d: (m.source_hash, m.fingerprint) for d, m in store.chunk_manifests(author_id).items()}
    todo = [i for i, h in cleaned.items() if manifests.get(i) != (h, fingerprint)]
    gone = [i for i in manifests if i not in cleaned]
    stats.unchanged = len(cleaned) - len(todo)
    log(f"chunking {len(todo)} of {len(cleaned)} cleaned documents ({len(gone)} gone)")
    docs = load_each(store.get_cleaned_by_id, todo, "chunking", stats, log)
    for n, doc in enumerate(sorted(docs, key=lambda d: d.id), 1):
        try:
            chunks = chunk_document(doc, budget, config)
        except Exception as exc:  # keep the previous chunks (no manifest: retried next run)
            failure = DocumentFailure.of("chunking", exc, doc.id, doc.link)
            stats.record_failure(failure, log, "previous chunks kept")
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
        store.delete_chunks(author_id, gone)
        store.delete_chunk_manifests(gone)
    stats.deleted = len(gone)
    stats.deleted_ids = gone
    return stats


def chunks_version(store: ManifestStore, author_id: str) -> str:
    manifests = store.chunk_manifests(author_id)
    return version_of(((d, m.chunks_hash) for d, m in manifests.items()), "chunks")


def get_chunks(store: ChunkStore, author_id: str, ids: Sequence[str] | None = None) -> list[Chunk]:
    """The author's chunks (all, or those with `ids`) in document order."""
    return sorted(store.find_chunks(author_id, ids), key=lambda c: (c.document_id, c.position))


def chunk_profile(store: ChunkStore, author_id: str) -> tuple[Counter, list[int]]:
    """(chunks per category, token counts of every chunk) for metadata and checks."""
    by_category: Counter = Counter()
    tokens: list[int] = []
    for category, token_count in store.chunk_sizes(author_id):
        by_category[category] += 1
        tokens.append(token_count)
    return by_category, tokens


# -- embedding ---------------------------------------------------------------------------------


class EmbedStats(StageStats):
    chunks_embedded: int = 0
    chunks_reused: int = 0
    points_deleted: int = 0
    orphans_repaired: int = 0
    points_adopted: int = 0  # unrecorded but correct points kept by a reconciliation
    reconciled: bool = False


def _same_point(chunk_id: object, pid: str) -> bool:
    try:
        return point_id(chunk_id) == pid
    except (TypeError, ValueError):  # a payload without (or with a malformed) chunk id
        return False


def adoptable_points(
    store: ChunkStore,
    author_id: str,
    chunk_manifests: dict[str, ChunkManifest],
    unlisted: dict[str, dict],
    model: str,
) -> dict[str, str]:
    """point id -> document id of the points no manifest lists that are exactly right: the id
    and `chunk_id` of a chunk in its document's current chunk manifest, that chunk's content
    hash in the warehouse, and the current embedding model. Such a point is what this run
    would write again (a crash after the upsert and before the bookkeeping left it)."""
    current = {point_id(c): d for d, m in chunk_manifests.items() for c in m.chunk_ids}
    candidates = {
        p: payload
        for p, payload in unlisted.items()
        if p in current
        and payload.get("document_id") == current[p]
        and payload.get("embedding_model") == model
        and payload.get("content_hash")
        and _same_point(payload.get("chunk_id"), p)
    }
    if not candidates:
        return {}
    hashes = {point_id(c.id): c.content_hash for c in store.find_chunks(author_id, list(candidates))}
    return {p: current[p] for p, payload in candidates.items() if hashes.get(p) == payload["content_hash"]}


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
            except BaseException as exc:  # re-raised in the caller's thread
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


def _embed_isolated(
    embedder: Embedder, batch: Sequence[Chunk], failed: dict[str, DocumentFailure]
) -> list[tuple[list[Chunk], object]]:
    """(chunks, vectors) of one encoding batch. When the batch raises, each document's chunks
    are encoded on their own, so one document the model cannot encode is recorded in `failed`
    and the others of the batch are still embedded."""
    try:
        return [(list(batch), embedder.embed([c.content for c in batch]))]
    except Exception:
        pass
    groups: dict[str, list[Chunk]] = {}
    for c in batch:
        groups.setdefault(c.document_id, []).append(c)
    out: list[tuple[list[Chunk], object]] = []
    for doc_id, group in groups.items():
        try:
            out.append((group, embedder.embed([c.content for c in group])))
        except Exception as exc:
            failed[doc_id] = DocumentFailure.of("embedding", exc, doc_id, group[0].link)
    return out


def embed_author(
    store: FeatureStore,
    index: VectorIndex,
    embedder: Embedder,
    author_id: str,
    log: Log = _noop,
    encode_batch: int = 512,
) -> EmbedStats:
    """Bring the author's Qdrant points in line with the warehouse chunks, embedding only new ones.

    A chunk id encodes (document, position, content), so a chunk whose id already has a point
    under the same model keeps its vector; only new ids are encoded, vanished ids are deleted.
    A document whose chunks cannot be encoded is skipped (`failed_documents`): it keeps its
    previous points and manifest (stale points of a changed document are deleted only once its
    new ones are written), so retrieval still finds its earlier version and the next run
    retries it.
    """
    stats = EmbedStats()
    model = embedder.model_name
    created = index.ensure_collection(embedder.dimension)
    collection = index.collection
    manifests = store.embedding_manifests(author_id)
    valid = {
        d: m for d, m in manifests.items() if not created and (m.model, m.collection) == (model, collection)
    }

    # -- guard the bookkeeping: every listed point exists (lookup by id) and nothing else is
    # there (count); only if either fails are the author's points scrolled and repaired
    expected = {point_id(p) for m in valid.values() for p in m.point_ids}
    have = {d: {point_id(p) for p in m.point_ids} for d, m in valid.items()}  # known-good points
    chunk_manifests = store.chunk_manifests(author_id)
    if index.count(author_id) != len(expected) or len(index.existing_ids(expected)) != len(expected):
        stats.reconciled = True
        present = {point_id(r.id): r.payload for r in index.scroll(author_id)}
        have = {d: {p for p in points if p in present} for d, points in have.items()}
        unlisted = {p: payload for p, payload in present.items() if p not in expected}
        # a crash between writing points and recording them leaves correct points that no
        # manifest lists: each one that carries a current chunk's id and content hash under
        # this model is kept (adopted), only the rest are orphans
        adopted = adoptable_points(store, author_id, chunk_manifests, unlisted, model)
        for p, d in adopted.items():
            have.setdefault(d, set()).add(p)
        orphans = [p for p in unlisted if p not in adopted]
        stats.orphans_repaired = index.delete_points(orphans)
        stats.points_adopted = len(adopted)
        log(
            f"reconciled Qdrant with the manifests: {len(adopted)} unrecorded points kept (same "
            f"chunk, content and model), {len(orphans)} orphan points removed"
        )

    def up_to_date(d: str, m: ChunkManifest) -> bool:
        return (
            d in valid
            and valid[d].chunks_hash == m.chunks_hash
            and have.get(d, set()).issuperset(point_id(c) for c in m.chunk_ids)
        )

    gone = [d for d in manifests if d not in chunk_manifests]
    todo = [d for d, m in chunk_manifests.items() if not up_to_date(d, m)]
    stats.unchanged = len(chunk_manifests) - len(todo)

    # -- deletions first: points of documents that are gone; stale points of changed documents
    # go once their new points are written (below)
    gone_points = [p for d in gone for p in manifests[d].point_ids]
    index.delete_documents(author_id, gone)  # by filter too: catches points a manifest missed
    new_ids: dict[str, list[str]] = {}
    old_ids: dict[str, set[str]] = {}
    to_embed_ids: list[str] = []
    for d in todo:
        new_ids[d] = [point_id(p) for p in chunk_manifests[d].chunk_ids]
        old_ids[d] = have.get(d, set())
        reuse = [p for p in new_ids[d] if p in old_ids[d]]
        stats.chunks_reused += len(reuse)
        to_embed_ids += [p for p in new_ids[d] if p not in old_ids[d]]
    stats.points_deleted = index.delete_points(gone_points)
    if gone:
        store.delete_embedding_manifests(gone)
    stats.deleted, stats.deleted_ids = len(gone), gone

    # Longest first, like SentenceTransformer.encode sorts one call's inputs: batches of similar
    # length waste no compute on padding (document order would pad most batches to the limit).
    chunks = sorted(get_chunks(store, author_id, to_embed_ids), key=lambda c: len(c.content), reverse=True)
    log(f"embedding {len(chunks)} chunks of {len(todo)} documents ({stats.chunks_reused} reused)")
    failed: dict[str, DocumentFailure] = {}
    writer = _Writer(index)
    try:
        for n, batch in enumerate(_batched(chunks, encode_batch), 1):
            batch = [c for c in batch if c.document_id not in failed]
            for part, vectors in _embed_isolated(embedder, batch, failed):
                writer.put([c.for_model(model) for c in part], vectors)
                stats.chunks_embedded += len(part)
            if n % 5 == 0 or n * encode_batch >= len(chunks):
                log(f"embedded {stats.chunks_embedded}/{len(chunks)} chunks")
    finally:
        try:
            writer.close()
        finally:
            # manifests only for documents whose every new point is written: a crash or a
            # failed document re-embeds the rest next time
            done = [
                d
                for d in todo
                if d not in failed and all(p in writer.done_ids or p in old_ids[d] for p in new_ids[d])
            ]
            # a changed document's stale points go only now that its new ones are in; a failed
            # document keeps its previous points, and the new points it got before failing
            # (listed in no manifest) are removed
            stale = [p for d in done for p in old_ids[d].difference(new_ids[d])]
            partial = [p for d in failed for p in new_ids[d] if p in writer.done_ids and p not in old_ids[d]]
            stats.points_deleted += index.delete_points(stale + partial)
            store.put_embedding_manifests(
                [
                    EmbeddingManifest(
                        document_id=d,
                        author_id=author_id,
                        chunks_hash=chunk_manifests[d].chunks_hash,
                        point_ids=new_ids[d],
                        model=model,
                        collection=collection,
                    )
                    for d in done
                ]
            )
    for d in todo:
        if d in failed:
            stats.record_failure(failed[d], log, "previous points kept")
        elif d in manifests:
            stats.updated += 1
        else:
            stats.new += 1
    stats.changed_ids = [d for d in todo if d not in failed]
    return stats


def embedded_version(store: ManifestStore, author_id: str, model: str) -> str:
    manifests = store.embedding_manifests(author_id)
    return version_of(((d, m.chunks_hash) for d, m in manifests.items()), "embedded", model)
