"""Recovery without waste: a crash between writing vectors (Qdrant) and recording them (the
embedding manifests in the warehouse) must not make the next run re-embed what is already right.

Two real crashes: the bookkeeping write raising after the upserts, and a `kill -9` of a process
in the middle of embedding. The next run keeps every point whose payload carries a current
chunk's id and content hash under the current model, embeds only what is missing, and leaves
every chunk embedded once with no orphans.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from resources.embedder import EmbedderResource
from resources.vector_store import QdrantResource
from twin_assets.domain.documents import Category, Platform, RawDocument
from twin_assets.domain.stores import point_id
from twin_assets.features import incremental, validation

AUTHOR = "rita"
ROOT = Path(__file__).resolve().parents[1]

TOPICS = [
    "sourdough starters and slow fermentation",
    "choosing a vector database for semantic search",
    "training for a first marathon",
    "writing a tiny key-value store in Python",
    "growing tomatoes on a balcony",
    "reading old maps of the coastline",
    "tuning a bicycle derailleur",
    "brewing coffee with a hand grinder",
    "sketching birds in a field notebook",
    "repairing a wooden chair",
]


def _article(i: int, topic: str, revision: int = 0) -> RawDocument:
    paragraphs = []
    for p in range(4):
        paragraphs.append(
            f"Part {p} of my notes on {topic} (revision {revision}). "
            + " ".join(
                f"Observation {p}.{s}: the {topic} lesson number {s} taught me something about "
                f"patience, tools and small daily habits, and I wrote it down on day {i * 10 + s}."
                for s in range(3)
            )
        )
    return RawDocument(
        author_id=AUTHOR,
        platform=Platform.MEDIUM,
        category=Category.ARTICLES,
        link=f"https://medium.com/@rita/note-{i}",
        title=f"Notes on {topic}",
        content="\n\n".join(f"## Section {n}\n\n{text}" for n, text in enumerate(paragraphs)),
    )


class CountingEmbedder:
    """The real embedding model, counting what it is asked to encode (and optionally slow, so a
    process can be killed in the middle of a run)."""

    def __init__(self, inner: EmbedderResource, delay_s: float = 0.0):
        self.inner = inner
        self.delay_s = delay_s
        self.texts = 0

    @property
    def model_name(self) -> str:
        return self.inner.model_name

    @property
    def dimension(self) -> int:
        return self.inner.dimension

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        self.texts += len(texts)
        if self.delay_s:
            time.sleep(self.delay_s)
        return self.inner.embed(texts)

    def embed_query(self, text: str) -> np.ndarray:
        return self.inner.embed_query(text)


class CrashingBookkeeping:
    """The warehouse store, except that recording embeddings fails (the crash point)."""

    def __init__(self, store: object):
        self._store = store

    def __getattr__(self, name: str) -> object:
        return getattr(self._store, name)

    def put_embedding_manifests(self, manifests: Sequence) -> None:
        raise RuntimeError("crash: the warehouse went away after the vectors were written")


@pytest.fixture(scope="module")
def model() -> EmbedderResource:
    return EmbedderResource(batch_size=16)


@pytest.fixture
def qdrant(tmp_path: Path) -> QdrantResource:
    return QdrantResource(path=str(tmp_path / "qdrant"), collection="recovery_chunks")


def _prepare(store, model: EmbedderResource, docs: list[RawDocument]) -> None:
    store.upsert_documents(docs)
    incremental.clean_author(store, AUTHOR)
    incremental.chunk_author(store, AUTHOR, model.token_budget(), model.model_name)


def _assert_final_state(store, index, model: EmbedderResource) -> None:
    assert validation.check_embedded_once(store, index, AUTHOR)[0]
    assert validation.check_no_orphans(store, index, AUTHOR)[0]
    assert validation.check_dimension(index, AUTHOR, model.dimension)[0]
    chunks = {point_id(i) for i in store.chunk_ids(AUTHOR)}
    listed = [point_id(p) for m in store.embedding_manifests(AUTHOR).values() for p in m.point_ids]
    assert sorted(listed) == sorted(chunks)  # every chunk recorded once
    assert set(store.embedding_manifests(AUTHOR)) == set(store.chunk_manifests(AUTHOR))
    for point in index.scroll(AUTHOR):
        assert point.payload["embedding_model"] == model.model_name
        assert point.payload["content_hash"] and point.payload["chunk_id"] == point.id


def test_bookkeeping_crash_after_the_upserts_reembeds_nothing(warehouse, qdrant, model) -> None:
    store = warehouse.get_store()
    docs = [_article(i, t) for i, t in enumerate(TOPICS[:6])]
    _prepare(store, model, docs[:4])
    with qdrant.open() as index:
        incremental.embed_author(store, index, model, AUTHOR)  # a clean first run
        before = {p.id for p in index.scroll(AUTHOR)}

    # new documents and one changed document, then the crash between the two writes
    _prepare(store, model, [*docs[4:], _article(2, TOPICS[2], revision=1)])
    chunks = {point_id(i) for i in store.chunk_ids(AUTHOR)}
    with qdrant.open() as index, pytest.raises(RuntimeError, match="crash"):
        incremental.embed_author(CrashingBookkeeping(store), index, model, AUTHOR)  # type: ignore[arg-type]
    with qdrant.open() as index:
        written = {p.id for p in index.scroll(AUTHOR)}
    fresh = chunks - before
    assert fresh and fresh <= written  # the new vectors are in Qdrant, unrecorded

    counting = CountingEmbedder(model)
    with qdrant.open() as index:
        stats = incremental.embed_author(store, index, counting, AUTHOR)
        assert stats.reconciled
        assert counting.texts == 0 and stats.chunks_embedded == 0
        assert stats.points_adopted == len(fresh)
        # the changed document's previous chunks are stale: removed, not kept
        assert {p.id for p in index.scroll(AUTHOR)} == chunks
        _assert_final_state(store, index, model)

        again = incremental.embed_author(store, index, counting, AUTHOR)
        assert not again.reconciled and again.chunks_embedded == 0 and counting.texts == 0


def test_killed_mid_embedding_embeds_only_the_missing_chunks(warehouse, qdrant, model, tmp_path) -> None:
    store = warehouse.get_store()
    _prepare(store, model, [_article(i, t) for i, t in enumerate(TOPICS)])
    total = len(store.chunk_ids(AUTHOR))
    assert total >= 20
    progress = tmp_path / "progress"
    script = textwrap.dedent(
        f"""
        import sys, time
        from pathlib import Path
        sys.path.insert(0, {str(ROOT)!r})
        from resources.embedder import EmbedderResource
        from resources.vector_store import QdrantResource
        from resources.warehouse import WarehouseResource
        from twin_assets.features import incremental
        from twin_assets_tests.test_features_recovery import CountingEmbedder

        store = WarehouseResource(uri={warehouse.uri!r}, database={warehouse.database!r}).get_store()
        slow = CountingEmbedder(EmbedderResource(batch_size=16), delay_s=0.3)
        with QdrantResource(path={qdrant.path!r}, collection={qdrant.collection!r}).open() as index:
            incremental.embed_author(
                store, index, slow, {AUTHOR!r},
                log=lambda m: Path({str(progress)!r}).write_text(m), encode_batch=2,
            )
        """
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", script], cwd=ROOT, start_new_session=True, stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 60
    while True:  # "embedded N/M chunks" is logged every 5 batches (of 2): kill after the first
        text = progress.read_text() if progress.exists() else ""
        if text.startswith("embedded") and int(text.split()[1].split("/")[0]) >= 10:
            break
        if proc.poll() is not None or time.monotonic() > deadline:
            os.killpg(proc.pid, signal.SIGKILL)
            pytest.fail(f"the embedding process never got going: {text!r} {proc.communicate()[1][-2000:]}")
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    assert store.embedding_manifests(AUTHOR) == {}  # killed before any bookkeeping

    counting = CountingEmbedder(model)
    with qdrant.open() as index:
        present = index.count(AUTHOR)
        assert 0 < present < total
        stats = incremental.embed_author(store, index, counting, AUTHOR)
        assert stats.reconciled and stats.points_adopted == present and stats.orphans_repaired == 0
        assert counting.texts == stats.chunks_embedded == total - present  # only the missing ones
        _assert_final_state(store, index, model)
