"""Retrieval for the inference service: the published index snapshot, the in-memory author index
(isolation, filters), BM25, self-query, expansion, fusion/rerank and the RAG pipeline, over a
small corpus of two authors writing about the same topics, embedded with the real MiniLM."""

from __future__ import annotations

import itertools
import json
from collections.abc import Sequence
from datetime import UTC, date, datetime
from pathlib import Path

import numpy as np
import pytest

from resources.artifacts import ArtifactStoreResource
from resources.embedder import EmbedderResource, default_model_path
from resources.vector_store import QdrantResource
from twin_assets.domain.documents import Category, Platform, sha256_text
from twin_assets.domain.features import Chunk
from twin_assets.domain.generation import Generation, GenerationUsage
from twin_assets.domain.stores import VectorPoint
from twin_assets.evaluation.rag import RagQuestion, evaluate_retrieval
from twin_assets.features.chunking import chunk_id
from twin_assets.serving.expansion import expand_llm, expand_offline, keyword_query
from twin_assets.serving.lexical import BM25Index, tokenize
from twin_assets.serving.memory_index import AuthorIndex, IndexDataError
from twin_assets.serving.rag import RagConfig, RagPipeline
from twin_assets.serving.rerank import CrossEncoderReranker, HybridReranker, RerankerUnavailableError, fuse
from twin_assets.serving.selfquery import llm_filters, rule_filters
from twin_assets.serving.snapshot import (
    IndexNotFoundError,
    SnapshotError,
    build_snapshot,
    latest_index_version,
    load_index,
    publish_snapshot,
    refresh_index,
    snapshot_index,
)
from twin_assets.serving.types import SearchFilters

TODAY = date(2026, 3, 15)

# (author, document, platform, category, link, title, published, [chunk texts])
DOCS = [
    (
        "ada",
        "ada-vectors",
        Platform.MEDIUM,
        Category.ARTICLES,
        "https://medium.com/@ada/choosing-a-vector-database",
        "Choosing a vector database",
        datetime(2023, 5, 10, tzinfo=UTC),
        [
            "A vector database such as Qdrant stores embeddings with a payload and answers "
            "nearest-neighbour queries with metadata filters.",
            "HNSW graphs make approximate search fast; payload indexes keep filtered queries quick "
            "when many tenants share one collection.",
        ],
    ),
    (
        "ada",
        "ada-sourdough",
        Platform.SUBSTACK,
        Category.ARTICLES,
        "https://ada.substack.com/p/sourdough",
        "What sourdough taught me about patience",
        datetime(2024, 2, 1, tzinfo=UTC),
        [
            "My sourdough starter lives on the kitchen counter. I feed it rye flour and water every "
            "morning and the dough rises slowly over twelve hours.",
            "Bake the loaf in a hot Dutch oven so the crust gets dark and crackly.",
        ],
    ),
    (
        "ada",
        "ada-marathon",
        Platform.LINKEDIN,
        Category.POSTS,
        "https://www.linkedin.com/posts/ada_marathon",
        None,
        datetime(2025, 6, 1, tzinfo=UTC),
        [
            "I ran my first marathon. Easy runs four days a week, one long run on Sunday, rest days are training too."
        ],
    ),
    (
        "ada",
        "ada-kvstore",
        Platform.GITHUB,
        Category.REPOSITORIES,
        "https://github.com/ada/kvstore",
        "kvstore",
        datetime(2022, 11, 1, tzinfo=UTC),
        [
            "class KVStore:\n    def put_value(self, key, value):\n        self.data[key] = value\n"
            "        self.path.write_text(json.dumps(self.data))",
        ],
    ),
    (
        "ada",
        "ada-llm-twin",
        Platform.GITHUB,
        Category.REPOSITORIES,
        "https://github.com/ada/llm-twin",
        "llm-twin",
        None,  # unknown date
        [
            "def split_by_tokens(text, max_tokens):\n    words = text.split()\n    return [words[i:i + "
            "max_tokens] for i in range(0, len(words), max_tokens)]",
        ],
    ),
    (
        "bob",
        "bob-sourdough",
        Platform.MEDIUM,
        Category.ARTICLES,
        "https://medium.com/@bob/sourdough-starter",
        "Keeping a sourdough starter alive",
        datetime(2024, 3, 1, tzinfo=UTC),
        [
            "Bob's sourdough starter lives in the fridge; he feeds it rye flour and water every "
            "morning before baking the loaf in a Dutch oven.",
        ],
    ),
    (
        "bob",
        "bob-vectors",
        Platform.LINKEDIN,
        Category.POSTS,
        "https://www.linkedin.com/posts/bob_qdrant",
        None,
        datetime(2024, 4, 1, tzinfo=UTC),
        [
            "Qdrant payload filters and HNSW indexes: how a vector database answers filtered nearest-neighbour queries."
        ],
    ),
]


def make_chunks() -> tuple[list[Chunk], dict[str, datetime | None]]:
    chunks, dates = [], {}
    for author, doc, platform, category, link, title, published, texts in DOCS:
        dates[doc] = published
        for position, text in enumerate(texts):
            chunks.append(
                Chunk(
                    id=chunk_id(doc, position, text),
                    author_id=author,
                    document_id=doc,
                    category=category,
                    platform=platform,
                    link=link,
                    title=title,
                    position=position,
                    content=text,
                    token_count=len(text.split()),
                    file_path="src/module.py" if category == Category.REPOSITORIES else None,
                    source_hash=sha256_text(doc),
                )
            )
    return chunks, dates


@pytest.fixture(scope="module")
def embedder() -> EmbedderResource:
    return EmbedderResource(batch_size=16)


@pytest.fixture(scope="module")
def shared_collection(embedder, tmp_path_factory):
    """Both authors' points in ONE Qdrant collection (as the pipeline stores them), scrolled back
    per author with vectors."""
    chunks, dates = make_chunks()
    vectors = embedder.embed([c.content for c in chunks])
    qdrant = QdrantResource(path=str(tmp_path_factory.mktemp("qdrant")), collection="shared")
    with qdrant.open() as index:
        index.ensure_collection(vectors.shape[1])
        index.upsert_chunks(chunks, vectors)
        points = {a: list(index.scroll(a, with_vectors=True)) for a in ("ada", "bob")}
    return points, dates


@pytest.fixture(scope="module")
def indexes(shared_collection, embedder) -> dict[str, AuthorIndex]:
    points, dates = shared_collection
    return {a: snapshot_index(build_snapshot(p, dates, embedder.model_name)) for a, p in points.items()}


class FakeLLM:
    """A TextGenerator that answers with canned completions (JSON parsed like the real one)."""

    def __init__(self, replies: Sequence[str | None], uses_llm: bool = True):
        self.replies = list(replies)
        self.calls: list[list[dict[str, str]]] = []
        self._uses_llm = uses_llm

    @property
    def uses_llm(self) -> bool:
        return self._uses_llm

    @property
    def name(self) -> str:
        return "fake"

    @property
    def usage(self) -> GenerationUsage:
        return GenerationUsage()

    def generate(self, messages, *, max_tokens=None, temperature=None, json_keys=None, allow_truncated=False):
        self.calls.append(list(messages))
        reply = self.replies.pop(0) if self.replies else None
        if reply is None:
            return None
        try:
            data = json.loads(reply)
        except ValueError:
            return None  # the real generator counts bad JSON and returns None
        if json_keys and any(not str(data.get(k) or "").strip() for k in json_keys):
            return None
        return Generation(text=reply, data=data)

    def generate_many(self, batch, **kwargs):
        return [self.generate(m, **kwargs) for m in batch]


# -- isolation ---------------------------------------------------------------------------------


def test_two_authors_on_the_same_topics_never_see_each_others_chunks(indexes, embedder):
    ada, bob = indexes["ada"], indexes["bob"]
    assert ada.size == 7 and bob.size == 2
    pipeline = RagPipeline(embedder, RagConfig(k=10, candidates=50))
    for question in (
        "How does Bob keep his sourdough starter in the fridge?",  # bob's chunk is the best match
        "Qdrant payload filters and HNSW indexes",
        "rye flour Dutch oven",
    ):
        for index, author in ((ada, "ada"), (bob, "bob")):
            result = pipeline.retrieve(index, question)
            assert result.chunks and {c.author_id for c in result.chunks} == {author}
            hits = index.dense_search(embedder.embed([question]), 10) + index.lexical_search([question], 10)
            assert {c.author_id for hit in hits for c in hit} == {author}
    # the shared collection holds both; a snapshot of both together is refused
    with pytest.raises(SnapshotError, match="several authors"):
        build_snapshot([*indexes_points(indexes)], {}, embedder.model_name)


def indexes_points(indexes: dict[str, AuthorIndex]) -> list[VectorPoint]:
    out = []
    for index in indexes.values():
        for row in range(index.size):
            c = index.scored(row, 0.0)
            out.append(
                VectorPoint(
                    id=c.chunk_id, payload=c.model_dump(mode="json"), vector=index.vectors[row].tolist()
                )
            )
    return out


def test_an_index_refuses_another_authors_payload(indexes):
    ada = indexes["ada"]
    payloads = [ada.scored(r, 0.0).model_dump(mode="json") for r in range(ada.size)]
    payloads[0]["author_id"] = "bob"
    with pytest.raises(IndexDataError, match="one author"):
        AuthorIndex(author_id="ada", version="x", embedding_model="m", payloads=payloads, vectors=ada.vectors)


# -- filters -----------------------------------------------------------------------------------


def _docs(hits) -> set[str]:
    return {c.document_id for c in hits}


def test_filters_by_platform_category_date_and_repository(indexes, embedder):
    ada = indexes["ada"]
    q = embedder.embed(["what did you write?"])
    every = ada.size
    assert _docs(ada.dense_search(q, every, SearchFilters(platforms=[Platform.LINKEDIN]))[0]) == {
        "ada-marathon"
    }
    assert _docs(ada.dense_search(q, every, SearchFilters(categories=[Category.ARTICLES]))[0]) == {
        "ada-vectors",
        "ada-sourdough",
    }
    in_2024 = SearchFilters(published_after=date(2024, 1, 1), published_before=date(2024, 12, 31))
    assert _docs(ada.dense_search(q, every, in_2024)[0]) == {"ada-sourdough"}
    # a date bound excludes the chunk whose date is unknown; without one it is kept
    assert "ada-llm-twin" not in _docs(
        ada.dense_search(q, every, SearchFilters(published_before=date(2030, 1, 1)))[0]
    )
    assert "ada-llm-twin" in _docs(ada.dense_search(q, every)[0])
    assert ada.repositories() == ["kvstore", "llm-twin"]
    for name in ("llm-twin", "LLM_Twin", "llm twin"):
        assert _docs(ada.dense_search(q, every, SearchFilters(repositories=[name]))[0]) == {"ada-llm-twin"}
    assert ada.dense_search(q, every, SearchFilters(repositories=["no-such-repo"]))[0] == []
    both = SearchFilters(categories=[Category.REPOSITORIES], published_after=date(2022, 1, 1))
    assert _docs(ada.lexical_search(["value key"], every, both)[0]) == {"ada-kvstore"}
    assert ada.count(SearchFilters(platforms=[Platform.MEDIUM])) == 2


def test_dense_search_is_exact_cosine_best_first(indexes, embedder):
    ada = indexes["ada"]
    q = embedder.embed(["marathon long run on Sunday"])
    hits = ada.dense_search(q, 3)[0]
    expected = ada.vectors @ (q[0] / np.linalg.norm(q[0]))
    assert hits[0].document_id == "ada-marathon"
    assert [round(h.score, 5) for h in hits] == [round(float(s), 5) for s in np.sort(expected)[::-1][:3]]
    with pytest.raises(ValueError, match="dimension"):
        ada.dense_search(np.ones((1, 5), dtype=np.float32), 3)


# -- BM25 --------------------------------------------------------------------------------------


def test_tokenizer_splits_code_identifiers_and_folds_styled_text():
    assert tokenize("split_by_tokens in QdrantIndex") == [
        "split_by_tokens",
        "split",
        "token",
        "qdrantindex",
        "qdrant",
        "index",
    ]
    assert "marathon" in tokenize("𝗜 𝗿𝗮𝗻 𝗺𝘆 𝗳𝗶𝗿𝘀𝘁 𝗺𝗮𝗿𝗮𝘁𝗵𝗼𝗻")
    assert tokenize("What is the and of you") == []


def test_bm25_ranks_exact_terms_and_identifiers():
    index = BM25Index(
        [
            "def split_by_tokens(text): return chunks",
            "Splitting text is an art; tokens are the unit.",
            "I ran my first marathon",
            "",
        ]
    )
    scores = index.scores("split_by_tokens")
    assert scores[0] > scores[1] > 0 and scores[2] == 0 and scores[3] == 0
    assert index.scores("nothing matches here").sum() == 0
    assert index.scores("marathon")[2] > 0
    with pytest.raises(ValueError):
        BM25Index(["x"], b=2.0)


# -- snapshot ----------------------------------------------------------------------------------


def _artifacts(tmp_path: Path) -> ArtifactStoreResource:
    return ArtifactStoreResource(root_dir=str(tmp_path / "artifacts"))


def test_snapshot_round_trip_and_identical_republish_is_a_no_op(shared_collection, embedder, tmp_path):
    points, dates = shared_collection
    artifacts = _artifacts(tmp_path)
    with pytest.raises(IndexNotFoundError, match="embedded_chunks"):
        load_index(artifacts, "ada")
    assert latest_index_version(artifacts, "ada") is None
    snapshot = build_snapshot(points["ada"], dates, embedder.model_name)
    version = publish_snapshot(artifacts, "ada", snapshot)
    assert latest_index_version(artifacts, "ada") == version == snapshot.version
    folder = tmp_path / "artifacts" / "indexes" / "ada" / version
    assert sorted(p.name for p in folder.iterdir()) == ["chunks.jsonl", "index_card.json", "vectors.npy"]
    card = json.loads((folder / "index_card.json").read_text())
    assert card["count"] == 7 and card["dimension"] == 384 and card["embedding_model"] == embedder.model_name
    assert np.load(folder / "vectors.npy").dtype == np.float32

    loaded = load_index(artifacts, "ada")
    assert (loaded.version, loaded.size, loaded.author_id) == (version, 7, "ada")
    kv = loaded.chunk(next(c.chunk_id for c in loaded.lexical_search(["KVStore"], 1)[0]))
    assert kv is not None and kv.published_at == datetime(2022, 11, 1, tzinfo=UTC)
    assert np.allclose(np.linalg.norm(loaded.vectors, axis=1), 1.0, atol=1e-5)

    # the same points again (scrolled in another order): same version, nothing rewritten
    mtime = (folder / "index_card.json").stat().st_mtime_ns
    again = build_snapshot(list(reversed(points["ada"])), dates, embedder.model_name)
    assert publish_snapshot(artifacts, "ada", again) == version
    assert (folder / "index_card.json").stat().st_mtime_ns == mtime
    assert len(list((tmp_path / "artifacts" / "indexes" / "ada").iterdir())) == 2  # version + aliases
    with pytest.raises(SnapshotError, match="published as"):
        publish_snapshot(artifacts, "bob", snapshot)
    with pytest.raises(ValueError, match="slug"):
        load_index(artifacts, "../etc")
    with pytest.raises(IndexNotFoundError):
        load_index(artifacts, "ada", "0123456789abcdef")


def test_a_new_version_is_hot_loaded_while_the_old_object_keeps_serving(
    shared_collection, embedder, tmp_path
):
    points, dates = shared_collection
    artifacts = _artifacts(tmp_path)
    publish_snapshot(artifacts, "ada", build_snapshot(points["ada"], dates, embedder.model_name))
    current = load_index(artifacts, "ada")
    assert refresh_index(artifacts, "ada", current) is None  # nothing new: only the alias was read

    fewer = [p for p in points["ada"] if p.payload["document_id"] != "ada-marathon"]
    new_dates = dict(dates) | {"ada-sourdough": datetime(2024, 2, 2, tzinfo=UTC)}
    new_version = publish_snapshot(artifacts, "ada", build_snapshot(fewer, new_dates, embedder.model_name))
    assert new_version != current.version
    fresh = refresh_index(artifacts, "ada", current)
    assert fresh is not None and fresh.version == new_version and fresh.size == 6
    # the object a request already holds is untouched
    assert current.size == 7 and current.count(SearchFilters(platforms=[Platform.LINKEDIN])) == 1
    assert fresh.count(SearchFilters(platforms=[Platform.LINKEDIN])) == 0
    with pytest.raises(ValueError):
        current.vectors[0, 0] = 1.0  # read-only
    # an older version stays loadable by name
    assert load_index(artifacts, "ada", current.version).size == 7


def test_a_corrupted_version_is_refused(shared_collection, embedder, tmp_path):
    points, dates = shared_collection
    artifacts = _artifacts(tmp_path)
    version = publish_snapshot(artifacts, "ada", build_snapshot(points["ada"], dates, embedder.model_name))
    path = tmp_path / "artifacts" / "indexes" / "ada" / version / "chunks.jsonl"
    path.write_text(path.read_text().replace("marathon", "MARATHON"))
    with pytest.raises(SnapshotError, match="hash"):
        load_index(artifacts, "ada")


def test_an_empty_author_publishes_an_empty_index(tmp_path, embedder):
    artifacts = _artifacts(tmp_path)
    version = publish_snapshot(artifacts, "ada", build_snapshot([], {}, embedder.model_name))
    index = load_index(artifacts, "ada", version)
    assert index.size == 0
    result = RagPipeline(embedder).retrieve(index, "anything about sourdough?")
    assert result.chunks == []


# -- self-query --------------------------------------------------------------------------------

REPOS = ["kvstore", "llm-twin", "tools"]


@pytest.mark.parametrize(
    ("question", "expected"),
    [
        ("What did you say on LinkedIn about evaluation?", {"platforms": ["linkedin"]}),
        ("Summarise your LinkedIn posts about running", {"platforms": ["linkedin"]}),
        ("In your Medium articles, how do you pick chunk sizes?", {"platforms": ["medium"]}),
        ("How do I call LinkedIn's API to fetch posts?", {}),
        ("Is the LinkedIn API rate limited?", {}),
        ("What do you think about posting on LinkedIn?", {}),
        ("What do your articles say about idempotency?", {"categories": ["articles"]}),
        ("How does your code split text into tokens?", {"categories": ["repositories"]}),
        ("In your posts, what is your training plan?", {"categories": ["posts"]}),
        ("Which blog posts you wrote mention BM25?", {"categories": ["articles"]}),
        ("How can I improve my posts?", {}),
        ("How should I write code for chunking?", {}),
        ("What did you write in 2024?", {"published_after": "2024-01-01", "published_before": "2024-12-31"}),
        ("What have you written since March 2023 about RAG?", {"published_after": "2023-03-01"}),
        ("Anything you wrote before 2022?", {"published_before": "2021-12-31"}),
        ("What did you write after March 2023?", {"published_after": "2023-04-01"}),
        (
            "What did you write last year?",
            {"published_after": "2025-01-01", "published_before": "2025-12-31"},
        ),
        ("What have you posted this year?", {"published_after": "2026-01-01"}),
        ("What did you write in the last 6 months?", {"published_after": "2025-09-15"}),
        ("What did you write in the past two weeks?", {"published_after": "2026-03-01"}),
        ("How does kvstore persist values?", {"repositories": ["kvstore"]}),
        ("How is the LLM_Twin code organised?", {"repositories": ["llm-twin"]}),
        ("Which tools do you use for testing?", {}),  # a common word is not a repository...
        ("What is in the tools repo?", {"repositories": ["tools"]}),  # ...unless called one
        ("How does HNSW work?", {}),
    ],
)
def test_self_query_rules(question, expected):
    got = rule_filters(question, REPOS, TODAY).model_dump(mode="json", exclude_none=True)
    assert got == expected


def test_llm_self_query_is_validated_and_falls_back_to_rules(indexes, embedder):
    good = json.dumps(
        {
            "reason": "asks for LinkedIn posts from 2025",
            "platforms": ["LinkedIn"],
            "categories": None,
            "published_after": "2025-01-01",
            "published_before": "2025-12-31",
            "repositories": ["kvstore", "invented-repo"],
        }
    )
    llm = FakeLLM([good])
    filters = llm_filters("What did you post on LinkedIn in 2025?", llm, REPOS, TODAY)
    assert filters == SearchFilters(
        platforms=[Platform.LINKEDIN],
        published_after=date(2025, 1, 1),
        published_before=date(2025, 12, 31),
        repositories=["kvstore"],  # the invented name is dropped
    )
    assert (
        "kvstore, llm-twin, tools" in llm.calls[0][0]["content"]
        and TODAY.isoformat() in llm.calls[0][0]["content"]
    )
    bad = [
        "not json",
        json.dumps({"reason": "x", "platforms": ["myspace"]}),  # not a platform
        json.dumps({"reason": "x", "published_after": "2025-05-01", "published_before": "2025-01-01"}),
        json.dumps({"reason": "x", "published_after": "2027-01-01"}),  # after today
        json.dumps({"platforms": ["linkedin"]}),  # no reason: the generator rejects it
        None,
    ]
    for reply in bad:
        assert llm_filters("q on LinkedIn?", FakeLLM([reply]), REPOS, TODAY) is None
    assert llm_filters("q", FakeLLM([good], uses_llm=False), REPOS, TODAY) is None

    # in the pipeline: an unusable LLM answer falls back to the rules
    broken = FakeLLM(["garbage"] * 4)
    result = RagPipeline(embedder, RagConfig(expansion=False), broken, today=lambda: TODAY).retrieve(
        indexes["ada"], "What did you say on LinkedIn about running?"
    )
    assert result.filters.platforms == [Platform.LINKEDIN] and result.stages["self_query_llm"] is False
    assert {c.document_id for c in result.chunks} == {"ada-marathon"}


# -- expansion ---------------------------------------------------------------------------------


def test_offline_expansion_adds_the_authors_own_terms(indexes):
    ada = indexes["ada"]
    question = "How do you feed your sourdough starter?"
    out = expand_offline(question, ada, 2)
    assert 1 <= len(out) <= 2 and len({o.lower() for o in out}) == len(out)
    assert question not in out and keyword_query(question) in out
    added = set(tokenize(out[0])) - set(tokenize(question))
    # feedback terms: new words, taken from the author's own sourdough document (title + text)
    sourdough = next(d for d in DOCS if d[1] == "ada-sourdough")
    assert added and added <= set(tokenize(" ".join([str(sourdough[5]), *sourdough[7]])))
    assert expand_offline("", ada, 2) == [] and expand_offline(question, ada, 0) == []


def test_llm_expansion_is_validated_deduplicated_and_filled_offline(indexes):
    ada = indexes["ada"]
    question = "How do you feed your sourdough starter?"
    llm = FakeLLM(
        [
            json.dumps(
                {
                    "q1": "sourdough starter feeding routine",
                    "q2": "  How do you feed your sourdough starter? ",
                }
            )
        ]
    )
    out = expand_llm(question, llm, 2, index=ada)
    assert out[0] == "sourdough starter feeding routine" and len(out) == 2
    assert question.lower() not in [o.lower() for o in out]  # the duplicate of the question is dropped
    assert expand_llm(question, FakeLLM([None]), 2, index=ada) == expand_offline(question, ada, 2)
    assert expand_llm(question, FakeLLM([None]), 2) == []


# -- fusion and rerank -------------------------------------------------------------------------


def test_fusion_deduplicates_and_hybrid_rerank_prefers_the_exact_identifier(indexes, embedder):
    ada = indexes["ada"]
    queries = ["split_by_tokens function", "how to split text into token windows"]
    vectors = embedder.embed(queries)
    dense = ada.dense_rows(vectors, 7)
    lexical = ada.lexical_rows(queries, 7)
    pool = fuse(ada, dense, lexical, 20)
    ids = [c.chunk_id for c in pool]
    assert len(ids) == len(set(ids)) == 7  # every chunk once, though found by four lists
    assert all(a.score >= b.score for a, b in itertools.pairwise(pool))
    top = HybridReranker().rerank(ada, queries[0], vectors[0], pool, 3)
    assert top[0].document_id == "ada-llm-twin" and top[0].lexical_score and top[0].lexical_score > 0
    assert len(top) == 3 and top[0].dense_score is not None
    diverse = HybridReranker(mmr_lambda=0.5).rerank(ada, queries[0], vectors[0], pool, 3)
    assert diverse[0].chunk_id == top[0].chunk_id and len({c.chunk_id for c in diverse}) == 3


def test_cross_encoder_loads_local_files_only_or_says_why(indexes, embedder):
    with pytest.raises(RerankerUnavailableError, match="cannot be loaded from local files"):
        CrossEncoderReranker("cross-encoder/no-such-model-here")
    with pytest.raises(RerankerUnavailableError, match="no cross-encoder"):
        RagPipeline(embedder, RagConfig(rerank="cross-encoder"))
    # a local model directory loads (MiniLM with a fresh scoring head: the mechanics, not quality)
    reranker = CrossEncoderReranker(default_model_path())
    ada = indexes["ada"]
    q = "sourdough"
    pool = fuse(ada, ada.dense_rows(embedder.embed([q]), 7), [], 7)
    out = reranker.rerank(ada, q, embedder.embed([q])[0], pool, 3)
    assert len(out) == 3 and out[0].score >= out[1].score >= out[2].score


# -- the pipeline ------------------------------------------------------------------------------


def test_pipeline_stages_timings_and_filter_fallback(indexes, embedder):
    ada = indexes["ada"]
    pipeline = RagPipeline(embedder, RagConfig(k=3, expansion=True), today=lambda: TODAY)
    result = pipeline.retrieve(ada, "  How do you feed   your sourdough starter? ")
    assert result.question == "How do you feed your sourdough starter?"
    assert set(result.timings_ms) == {"self_query", "expansion", "search", "rerank"}
    assert result.stages == {
        "self_query": True,
        "filter_fallback": False,
        "expansion": True,
        "hybrid": True,
        "rerank": True,
    }
    assert len(result.queries) == 3 and result.index_version == ada.version
    assert result.chunks[0].document_id == "ada-sourdough" and len(result.chunks) == 3

    # ada published nothing on Substack in 2022: the filters match nothing, search runs unfiltered
    fallback = pipeline.retrieve(ada, "What did you write on Substack in 2022 about sourdough?")
    assert fallback.filters.platforms == [Platform.SUBSTACK] and fallback.stages["filter_fallback"]
    assert fallback.chunks and fallback.chunks[0].document_id == "ada-sourdough"

    # filters given by the caller: no self-query, no fallback (an explicit filter is obeyed)
    given = SearchFilters(platforms=[Platform.GITHUB])
    explicit = pipeline.retrieve(ada, "What did you post on LinkedIn about marathons?", filters=given)
    assert explicit.stages["self_query"] is False and explicit.filters == given
    assert {c.platform for c in explicit.chunks} == {Platform.GITHUB}
    nothing = pipeline.retrieve(ada, "sourdough", filters=SearchFilters(platforms=[Platform.WEB]))
    assert nothing.chunks == [] and nothing.stages["filter_fallback"] is False

    plain = RagPipeline(
        embedder, RagConfig(self_query=False, expansion=False, hybrid=False, rerank="none", k=2)
    )
    dense_only = plain.retrieve(ada, "marathon training")
    assert dense_only.queries == ["marathon training"] and dense_only.stages["rerank"] is False
    assert dense_only.chunks[0].document_id == "ada-marathon"
    with pytest.raises(ValueError, match="empty"):
        pipeline.retrieve(ada, "   ")
    with pytest.raises(ValueError, match="k must"):
        pipeline.retrieve(ada, "q", k=0)


def test_pipeline_refuses_an_index_of_another_embedding_model(indexes, embedder):
    ada = indexes["ada"]
    other = AuthorIndex(
        author_id="ada",
        version="v",
        embedding_model="another-model",
        payloads=[ada.scored(r, 0.0).model_dump(mode="json") for r in range(ada.size)],
        vectors=ada.vectors,
    )
    with pytest.raises(ValueError, match="embedded with 'another-model'"):
        RagPipeline(embedder).retrieve(other, "sourdough")


def test_the_pipeline_is_scored_by_the_evaluation(indexes, embedder, shared_collection):
    ada = indexes["ada"]
    chunks = [c for c in make_chunks()[0] if c.author_id == "ada"]
    questions = [
        RagQuestion(question="How do you feed your starter?", source_document_id="ada-sourdough"),
        RagQuestion(question="How many days a week do you run easy?", source_document_id="ada-marathon"),
        RagQuestion(question="Which graph makes approximate search fast?", source_document_id="ada-vectors"),
    ]
    retriever = RagPipeline(embedder, RagConfig(k=3)).as_retriever(ada)
    got = retriever("How do you feed your starter?", 2)
    assert len(got) == 2 and got[0].document_id == "ada-sourdough"
    result = evaluate_retrieval(questions, chunks, retriever, k=3)
    assert result.questions == 3 and result.hit_rate == 1.0 and result.mrr is not None and result.mrr > 0.8
