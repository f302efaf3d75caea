"""Embedding into local Qdrant, incremental behaviour, retrieval, and the Dagster assets/checks."""

from __future__ import annotations

import dagster as dg
import numpy as np
import pytest

from resources.artifacts import ArtifactStoreResource
from resources.embedder import EmbedderResource
from resources.vector_store import QdrantResource
from twin_assets.defs.features import assets as fa
from twin_assets.defs.partitions import authors_partitions
from twin_assets.domain.documents import Block, Category, Platform, RawDocument, RepoFile
from twin_assets.features import incremental, validation
from twin_assets.features.retrieval import retrieve

AUTHOR = "ada"

STORE_PY = '''"""A tiny persistent key-value store."""
import json
from pathlib import Path


class KVStore:
    """Stores values as JSON on disk."""

    def __init__(self, path: str):
        self.path = Path(path)
        self.data = json.loads(self.path.read_text()) if self.path.exists() else {}

    def put(self, key: str, value) -> None:
        self.data[key] = value
        self.path.write_text(json.dumps(self.data, indent=2))


def open_store(path: str) -> KVStore:
    return KVStore(path)
'''


def corpus() -> list[RawDocument]:
    sourdough = RawDocument(
        author_id=AUTHOR,
        platform=Platform.SUBSTACK,
        category=Category.ARTICLES,
        link="https://ada.substack.com/p/sourdough?utm_source=twitter",
        title="What sourdough taught me about patience",
        content="(blocks)",
        blocks=[
            Block(kind="title", text="Feeding the starter", level=2),
            Block(
                kind="paragraph",
                text="My sourdough starter lives on the kitchen counter. I feed it flour and water every morning, "
                "and the wild yeast and lactobacilli make the dough rise slowly over twelve hours.",
            ),
            Block(
                kind="paragraph",
                text="Baking bread with a long fermentation gives the loaf its sour taste and open crumb. "
                "Bake the loaf in a hot Dutch oven so the crust gets dark and crackly.",
            ),
            Block(kind="paragraph", text="Subscribe"),
        ],
    )
    qdrant_article = RawDocument(
        author_id=AUTHOR,
        platform=Platform.MEDIUM,
        category=Category.ARTICLES,
        link="https://medium.com/@ada/vector-databases",
        title="Choosing a vector database",
        content="## Why vectors\n\nSemantic search compares embeddings instead of keywords. A vector database such as "
        "Qdrant stores the embeddings with a payload and answers nearest-neighbour queries with filters.\n\n"
        "## Indexes\n\nHNSW graphs make approximate search fast. Payload indexes keep filtered queries quick "
        "when many tenants share one collection.\n\n5 min read",
    )
    post = RawDocument(
        author_id=AUTHOR,
        platform=Platform.LINKEDIN,
        category=Category.POSTS,
        link="https://www.linkedin.com/posts/ada_marathon",
        content=(
            "𝗜 𝗿𝗮𝗻 𝗺𝘆 𝗳𝗶𝗿𝘀𝘁 𝗺𝗮𝗿𝗮𝘁𝗵𝗼𝗻 🏃‍♀️🎉\n\nTraining plan that worked:\n✅ Easy runs four days a week\n✅ One long run on Sunday\n"
            "👉 Rest days are training too\n\nhttps://strava.com/activities/1?utm_medium=social https://lnkd.in/abc\n\nhashtag#running #marathon"
        ),
    )
    repo = RawDocument(
        author_id=AUTHOR,
        platform=Platform.GITHUB,
        category=Category.REPOSITORIES,
        link="https://github.com/ada/kvstore",
        title="kvstore",
        content="# kvstore\n\nA tiny persistent key-value store in Python.",
        files=[
            RepoFile(path="kvstore/store.py", content=STORE_PY, language="python"),
            RepoFile(path="poetry.lock", content="[[package]]\nname = 'x'\n"),
        ],
    )
    return [sourdough, qdrant_article, post, repo]


@pytest.fixture(scope="module")
def embedder() -> EmbedderResource:
    return EmbedderResource(batch_size=16)


@pytest.fixture
def qdrant(tmp_path) -> QdrantResource:
    return QdrantResource(path=str(tmp_path / "qdrant"), collection="test_chunks")


def run_all(store, qdrant, embedder):
    clean = incremental.clean_author(store, AUTHOR)
    chunk = incremental.chunk_author(store, AUTHOR, embedder.token_budget(), embedder.model_name)
    with qdrant.open() as index:
        embed = incremental.embed_author(store, index, embedder, AUTHOR)
    return clean, chunk, embed


def all_checks(store, qdrant, embedder) -> dict[str, bool]:
    with qdrant.open() as index:
        return {
            "once": validation.check_embedded_once(store, index, AUTHOR)[0],
            "dim": validation.check_dimension(index, AUTHOR, embedder.dimension)[0],
            "orphans": validation.check_no_orphans(store, index, AUTHOR)[0],
            "tokens": validation.check_token_limit(store, AUTHOR, embedder.token_budget())[0],
        }


def test_embedding_payload_dimension_and_retrieval(warehouse, qdrant, embedder):
    store = warehouse.get_store()
    store.upsert_documents(corpus())
    clean, chunk, embed = run_all(store, qdrant, embedder)
    assert (clean.new, chunk.new, embed.new) == (4, 4, 4)
    chunks = incremental.get_chunks(store, AUTHOR)
    assert embed.chunks_embedded == len(chunks)
    assert all(all_checks(store, qdrant, embedder).values())
    with qdrant.open() as index:
        assert index.vector_size() == embedder.dimension == 384
        records = list(index.scroll(AUTHOR, with_vectors=True))
        assert len(records) == len(chunks)
        code = [r for r in records if r.payload["category"] == "repositories" and r.payload["file_path"]]
        assert {r.payload["file_path"] for r in code} == {"kvstore/store.py"}
        for r in records:
            assert {"link", "title", "platform", "document_id", "position", "content", "author_id"} <= set(
                r.payload
            )
            assert abs(np.linalg.norm(r.vector) - 1) < 1e-4

        hits = retrieve(
            "how do I bake bread with a sourdough starter?", AUTHOR, 3, embedder=embedder, index=index
        )
        assert hits[0].title == "What sourdough taught me about patience"
        assert (
            hits[0].link == "https://ada.substack.com/p/sourdough?utm_source=twitter"
        )  # the document's own link
        assert hits[0].score > hits[-1].score
        hits = retrieve(
            "nearest neighbour search with payload filters", AUTHOR, 2, embedder=embedder, index=index
        )
        assert hits[0].document_id == corpus()[1].id
        only_posts = retrieve(
            "training for a marathon", AUTHOR, 5, embedder=embedder, index=index, categories=["posts"]
        )
        assert only_posts and {h.category for h in only_posts} == {Category.POSTS}
        assert "I ran my first marathon" in only_posts[0].content
        assert retrieve("sourdough", "someone-else", 3, embedder=embedder, index=index) == []
    # the resource method inference calls opens and closes its own client
    assert (
        qdrant.retrieve("persistent key value store", AUTHOR, 1, embedder=embedder)[0].category
        == Category.REPOSITORIES
    )


def test_incremental_change_delete_and_noop(warehouse, qdrant, embedder):
    store = warehouse.get_store()
    docs = corpus()
    store.upsert_documents(docs)
    run_all(store, qdrant, embedder)
    v_chunks, v_embedded = (
        incremental.chunks_version(store, AUTHOR),
        incremental.embedded_version(store, AUTHOR, embedder.model_name),
    )

    # no-op: nothing recleaned, rechunked or re-embedded; same data versions
    clean, chunk, embed = run_all(store, qdrant, embedder)
    assert (
        clean.new + clean.updated,
        chunk.new + chunk.updated,
        embed.chunks_embedded,
        embed.points_deleted,
    ) == (0, 0, 0, 0)
    assert incremental.chunks_version(store, AUTHOR) == v_chunks
    assert incremental.embedded_version(store, AUTHOR, embedder.model_name) == v_embedded

    # change one document: only it is re-embedded, its old points go
    old_ids = {c.id for c in incremental.get_chunks(store, AUTHOR) if c.document_id == docs[1].id}
    docs[1] = docs[1].model_copy(
        update={
            "content": "## Why vectors\n\nQdrant now runs as a managed cluster for us.",
            "content_hash": "",
        }
    )
    docs[1] = RawDocument.model_validate(docs[1].model_dump())
    store.upsert_documents([docs[1]])
    clean, chunk, embed = run_all(store, qdrant, embedder)
    assert (
        clean.changed_ids == [docs[1].id]
        and chunk.changed_ids == [docs[1].id]
        and embed.changed_ids == [docs[1].id]
    )
    new_ids = {c.id for c in incremental.get_chunks(store, AUTHOR) if c.document_id == docs[1].id}
    assert (
        embed.chunks_embedded == len(new_ids - old_ids) and embed.points_deleted == len(old_ids - new_ids) > 0
    )
    with qdrant.open() as index:
        present = {str(r.id) for r in index.scroll(AUTHOR)}
    assert not (old_ids - new_ids) & present and new_ids <= present
    assert incremental.embedded_version(store, AUTHOR, embedder.model_name) != v_embedded

    # delete one document: its cleaned doc, chunks and points all go
    assert store.delete_documents(AUTHOR, [docs[2].id]) == 1
    clean, chunk, embed = run_all(store, qdrant, embedder)
    assert clean.deleted == chunk.deleted == embed.deleted == 1
    with qdrant.open() as index:
        assert not [r for r in index.scroll(AUTHOR) if r.payload["document_id"] == docs[2].id]
    assert all(all_checks(store, qdrant, embedder).values())


def test_bookkeeping_repairs_orphans_and_lost_points(warehouse, qdrant, embedder):
    store = warehouse.get_store()
    store.upsert_documents(corpus())
    run_all(store, qdrant, embedder)
    chunk = incremental.get_chunks(store, AUTHOR)[0]
    with qdrant.open() as index:  # simulate a crash: a stray point and a lost point
        stray = chunk.model_copy(update={"id": "00000000-0000-5000-8000-000000000001", "document_id": "gone"})
        index.upsert_chunks([stray], embedder.embed(["stray"]))
        index.delete_points([chunk.id])
        assert not validation.check_no_orphans(store, index, AUTHOR)[0]
        stats = incremental.embed_author(store, index, embedder, AUTHOR)
    assert stats.reconciled and stats.orphans_repaired == 1 and stats.chunks_embedded >= 1
    assert all(all_checks(store, qdrant, embedder).values())


def test_assets_and_checks_through_dagster(warehouse, qdrant, embedder, tmp_path):
    warehouse.get_store().upsert_documents(corpus())
    raw = dg.AssetSpec("raw_documents", partitions_def=authors_partitions)
    artifacts = ArtifactStoreResource(root_dir=str(tmp_path / "artifacts"))
    resources = {"warehouse": warehouse, "embedder": embedder, "qdrant": qdrant, "artifacts": artifacts}
    assets = [raw, fa.cleaned_documents, fa.chunks, fa.embedded_chunks]
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("authors", [AUTHOR])
        result = dg.materialize(
            assets,
            resources=resources,
            instance=instance,
            partition_key=AUTHOR,
            selection=["cleaned_documents", "chunks", "embedded_chunks"],
        )
        assert result.success
        checks = result.get_asset_check_evaluations()
        assert len(checks) == 7 and all(c.passed for c in checks)  # 4 invariants + no_failed_documents x3
        mats = {m.asset_key.path[-1]: m for m in result.get_asset_materialization_events()}
        meta = mats["chunks"].materialization.metadata
        assert (
            "| tokens | chunks | share |" in meta["token_histogram"].value
            and "posts" in meta["by_category"].value
        )
        assert meta["preview"].value

        again = dg.materialize(
            assets,
            resources=resources,
            instance=instance,
            partition_key=AUTHOR,
            selection=["cleaned_documents", "chunks", "embedded_chunks"],
        )
        mats2 = {m.asset_key.path[-1]: m for m in again.get_asset_materialization_events()}
        emb_meta = mats2["embedded_chunks"].materialization.metadata
        assert emb_meta["chunks_embedded"].value == 0 and emb_meta["unchanged"].value == 4
        # the service's index: published once, the same version again for unchanged data
        first_index = mats["embedded_chunks"].materialization.metadata["index_version"].value
        assert emb_meta["index_version"].value == first_index
        assert artifacts.read_alias(f"indexes/{AUTHOR}", "latest") == first_index
        # retention ran after the publish: one version, nothing to prune, nothing failed
        assert emb_meta["index_versions_kept"].value == [first_index]
        assert emb_meta["pruned_index_versions"].value == [] and emb_meta["prune_errors"].value == []
        for key in ("cleaned_documents", "chunks", "embedded_chunks"):
            assert (
                mats[key].materialization.tags["dagster/data_version"]
                == mats2[key].materialization.tags["dagster/data_version"]
            )


def test_new_raw_documents_materialization_requests_the_feature_assets(warehouse, qdrant, tmp_path):
    raw = dg.AssetSpec("raw_documents", partitions_def=authors_partitions)
    # resources are only declared here (nothing connects or loads until an asset runs)
    defs = dg.Definitions(
        assets=[raw, fa.cleaned_documents, fa.chunks, fa.embedded_chunks],
        resources={
            "warehouse": warehouse,
            "embedder": EmbedderResource(),
            "qdrant": qdrant,
            "artifacts": ArtifactStoreResource(root_dir=str(tmp_path / "artifacts")),
        },
    )
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("authors", [AUTHOR, "bob"])
        first = dg.evaluate_automation_conditions(defs=defs, instance=instance)
        assert first.total_requested == 0  # nothing upstream yet
        instance.report_runless_asset_event(
            dg.AssetMaterialization(asset_key="raw_documents", partition=AUTHOR)
        )
        second = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=first.cursor)
        assert second.get_requested_partitions(dg.AssetKey("cleaned_documents")) == {AUTHOR}
        # downstream assets of the same partition follow in the same run (eager on missing/updated parents)
        assert second.get_requested_partitions(dg.AssetKey("embedded_chunks")) == {AUTHOR}
