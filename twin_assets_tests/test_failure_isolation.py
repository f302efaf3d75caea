"""One bad document never sinks an author: no recursion on input size, and every stage (cleaning,
chunking, embedding, instruction and preference datasets) skips a failing document, records it
(metadata + the non-blocking `no_failed_documents` check), keeps what earlier runs stored for it,
does not mark it processed, and processes it on the next run once the fault is gone."""

from __future__ import annotations

import ast
from pathlib import Path

import dagster as dg
import numpy as np
import pytest

from resources.artifacts import ArtifactStoreResource
from resources.embedder import EmbedderResource
from resources.llm import TextGeneratorResource
from resources.vector_store import QdrantResource
from twin_assets.datasets import instruction as ins_mod
from twin_assets.datasets import preference as pref_mod
from twin_assets.datasets import storage
from twin_assets.datasets.extracts import ExtractParams, extract_all, pack_units
from twin_assets.datasets.instruction import build_instruction_rows
from twin_assets.datasets.isolation import EveryDocumentFailed
from twin_assets.datasets.preference import build_preference_rows
from twin_assets.defs.datasets.assets import instruction_dataset, preference_dataset
from twin_assets.defs.features import assets as fa
from twin_assets.defs.partitions import authors_partitions
from twin_assets.domain.documents import Category, Platform
from twin_assets.domain.features import DocumentFailure, describe_error, failure_table
from twin_assets.domain.stores import point_id
from twin_assets.features import incremental, validation
from twin_assets_tests import test_features_pipeline as fp
from twin_assets_tests.test_datasets_fixtures import AUTHOR, cleaned, corpus

ROOT = Path(__file__).resolve().parents[1]

# A psql session pasted into a blog post: one paragraph far over 2,000 characters, no sentence
# punctuation anywhere (the shape that sent `pack_units` into a RecursionError on a real blog).
PSQL_TABLE = "\n".join(
    [
        "twin=# SELECT id, author_id, platform, category, length(content) FROM documents LIMIT 60;",
        "   id   |   author_id    | platform  |   category   | length",
        "--------+----------------+-----------+--------------+--------",
        *(
            f" {i:6d} | jan-data       | {'medium' if i % 3 else 'substack':9s} | "
            f"{'articles' if i % 2 else 'posts':12s} | {i * 37 % 9000:6d}"
            for i in range(60)
        ),
        "(60 rows)",
    ]
)
PSQL_ARTICLE = f"""# Reading the warehouse with psql

Before building any dataset I look at what the crawler actually stored. A quick query over the
documents table tells me which platforms dominate, how long the posts are, and whether a
category is missing entirely. It takes a minute and it has saved me from training on an empty
category more than once, so it is the first thing I run after every collection.

{PSQL_TABLE}

The lengths are the useful column here. Anything under a few hundred characters is usually a
listing page that slipped through, and anything huge is a page whose navigation was not removed.
Both are worth a second look before the funnel runs, because the funnel will only filter them.
"""


def psql_doc():
    return cleaned("https://jan.example.com/psql", Category.ARTICLES, Platform.WEB, "psql", PSQL_ARTICLE)


# -- 1. no recursion on input size -------------------------------------------------------------


def test_pack_units_minimal_case_from_the_real_blog():
    pieces = pack_units(["word " * 450], 200, 2000, "\n\n")
    assert pieces and all(len(p) <= 2000 for p in pieces)
    assert " ".join(pieces).split() == ["word"] * 450


def test_pack_units_pathological_inputs():
    blob = "x" * 50_000  # no whitespace at all: hard cuts
    pieces = pack_units([blob], 200, 2000, "\n\n")
    assert "".join(pieces) == blob and all(len(p) <= 2000 for p in pieces)

    table = "\n".join(f" {i:6d} | name_{i} | {i * 3.5:10.2f} | active" for i in range(10_000))
    pieces = pack_units([table], 200, 2000, "\n\n")
    assert all(len(p) <= 2000 for p in pieces)
    assert all(p.endswith("active") for p in pieces)  # cut between table rows, not inside
    assert "\n".join(pieces) == table.strip()  # rows whole, indentation kept (but the first)

    mixed = "A sentence. " + " ".join("y" * n for n in (10, 2500, 30, 4100, 5)) + " End."
    pieces = pack_units([mixed], 200, 2000, "\n\n")
    assert all(len(p) <= 2000 for p in pieces)
    assert "".join(pieces).replace(" ", "") == mixed.replace(" ", "")


def test_pack_units_keeps_sentence_packing_of_normal_text():
    text = " ".join(f"Sentence number {i} says something plain." for i in range(120))
    pieces = pack_units([text], 200, 2000, "\n\n")
    assert all(p.endswith(".") for p in pieces)  # still cut at sentence ends
    assert " ".join(pieces) == text


def _self_recursive(path: Path) -> list[str]:
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            calls = {
                c.func.id for c in ast.walk(node) if isinstance(c, ast.Call) and isinstance(c.func, ast.Name)
            }
            if node.name in calls:
                out.append(f"{path.relative_to(ROOT)}:{node.name}")
    return out


def test_no_recursive_splitting_in_datasets_and_text():
    files = [*(ROOT / "twin_assets/datasets").rglob("*.py"), *(ROOT / "twin_assets/text").rglob("*.py")]
    assert [f for p in files for f in _self_recursive(p)] == []


def test_extracts_of_pathological_documents():
    docs = [
        psql_doc(),
        cleaned("https://jan.example.com/blob", Category.POSTS, Platform.LINKEDIN, None, "z" * 50_000),
        cleaned(
            "https://jan.example.com/table",
            Category.ARTICLES,
            Platform.WEB,
            "t",
            "\n".join(f"| {i} | {i * i} |" for i in range(10_000)),
        ),
    ]
    extracts = extract_all(docs, ExtractParams())
    assert {e.document_id for e in extracts} == {d.id for d in docs}
    assert all(len(e.text) <= 2000 for e in extracts)


def test_psql_table_article_builds_offline():
    docs = [*corpus(), psql_doc()]
    built = build_instruction_rows(docs, TextGeneratorResource().get_generator())
    assert built.failures == []
    assert psql_doc().id in {r.source_document_id for r in built.train + built.test}


# -- 2. datasets: a failing document or extract is skipped and recorded ------------------------


def _raise_for(doc_id: str, real):
    def fake(docs, *args, **kwargs):
        if any(getattr(d, "id", None) == doc_id for d in docs):
            raise RuntimeError(f"injected failure in {doc_id}")
        return real(docs, *args, **kwargs)

    return fake


def test_extraction_failure_skips_only_that_document(monkeypatch):
    docs = corpus()
    bad = docs[0]
    monkeypatch.setattr(ins_mod, "extract_all", _raise_for(bad.id, extract_all))
    built = build_instruction_rows(docs, TextGeneratorResource().get_generator())
    [failure] = built.failures
    assert (failure.document_id, failure.link, failure.stage) == (bad.id, bad.link, "extraction")
    assert failure.reason == f"RuntimeError: injected failure in {bad.id}"
    rows = built.train + built.test
    assert rows and bad.id not in {r.source_document_id for r in rows}
    assert built.funnel.dropped["extracts"] == {"failed_documents": 1}


def test_generation_failure_skips_only_that_documents_extracts(monkeypatch):
    docs = corpus()
    bad = docs[1]
    real = ins_mod.offline_instructions

    def fake(extracts, seed=0):
        if any(e.document_id == bad.id for e in extracts):
            raise RecursionError("maximum recursion depth exceeded")
        return real(extracts, seed)

    monkeypatch.setattr(ins_mod, "offline_instructions", fake)
    built = build_instruction_rows(docs, TextGeneratorResource().get_generator())
    assert built.failures and {f.document_id for f in built.failures} == {bad.id}
    assert {f.stage for f in built.failures} == {"generation"}
    assert all(f.extract_id and f.reason.startswith("RecursionError") for f in built.failures)
    assert all(f.link == bad.link for f in built.failures)
    assert bad.id not in {r.source_document_id for r in built.train + built.test}
    assert built.train

    # rows of the other documents are exactly those of a build without the fault
    monkeypatch.setattr(ins_mod, "offline_instructions", real)
    clean = build_instruction_rows(docs, TextGeneratorResource().get_generator())
    assert not clean.failures
    others = [r for r in clean.train + clean.test if r.source_document_id != bad.id]
    assert sorted(r.id for r in built.train + built.test) == sorted(r.id for r in others)


def test_preference_rejected_failure_is_isolated(monkeypatch):
    docs = corpus()
    real = pref_mod.offline_generic_answer
    prompts: dict[str, str] = {}
    bad: dict[str, str] = {}

    def fake(prompt, category, seed=0):
        if prompts.get(prompt) == bad["id"]:
            raise ValueError("cannot answer")
        return real(prompt, category, seed)

    real_generate = pref_mod.generate_rejected

    def spy(pairs, *args, **kwargs):
        prompts.update({p: e.document_id for e, p in pairs})
        bad.setdefault("id", pairs[0][0].document_id)
        return real_generate(pairs, *args, **kwargs)

    monkeypatch.setattr(pref_mod, "offline_generic_answer", fake)
    monkeypatch.setattr(pref_mod, "generate_rejected", spy)
    built = build_preference_rows(docs, TextGeneratorResource().get_generator(), "offline-generic", None)
    assert {f.document_id for f in built.failures} == {bad["id"]}
    assert {f.stage for f in built.failures} == {"rejected"}
    assert all(f.reason == "ValueError: cannot answer" for f in built.failures)
    assert built.train and bad["id"] not in {r.source_document_id for r in built.train + built.test}


def test_every_document_failing_is_an_error(monkeypatch):
    def always(docs, *args, **kwargs):
        raise RuntimeError("broken extractor")

    monkeypatch.setattr(ins_mod, "extract_all", always)
    with pytest.raises(EveryDocumentFailed, match="every document failed"):
        build_instruction_rows(corpus(), TextGeneratorResource().get_generator())


@pytest.fixture
def instance():
    with dg.instance_for_test() as inst:
        inst.add_dynamic_partitions("authors", [AUTHOR])
        yield inst


def _run_datasets(assets, resources, instance, raise_on_error=True):
    cleaned_spec = dg.AssetSpec("cleaned_documents", partitions_def=authors_partitions)
    return dg.materialize(
        [cleaned_spec, *assets],
        selection=assets,
        resources=resources,
        instance=instance,
        partition_key=AUTHOR,
        run_config={"ops": {a.op.name: {"config": {"min_train_rows": 10}} for a in assets}},
        raise_on_error=raise_on_error,
    )


def _evaluations(result, name="no_failed_documents"):
    return {
        e.asset_key.to_user_string(): e for e in result.get_asset_check_evaluations() if e.check_name == name
    }


def test_dataset_assets_skip_record_and_retry(warehouse, instance, tmp_path, monkeypatch):
    """End to end: the psql-table article goes through; a document whose extraction raises is
    skipped in both datasets, named in metadata and in a WARN check; the next run, once fixed,
    is not a reuse of the faulty version and includes the document."""
    docs = [*corpus(), psql_doc()]
    generator = TextGeneratorResource().get_generator()
    bad_id = build_instruction_rows(corpus(), generator).train[0].source_document_id
    bad = next(d for d in docs if d.id == bad_id)  # a document that does give rows
    warehouse.get_store().upsert_cleaned(docs)
    resources = {
        "warehouse": warehouse,
        "artifacts": ArtifactStoreResource(root_dir=str(tmp_path / "artifacts")),
        "llm": TextGeneratorResource(),
    }
    assets = [instruction_dataset, preference_dataset]
    monkeypatch.setattr(ins_mod, "extract_all", _raise_for(bad.id, extract_all))
    result = _run_datasets(assets, resources, instance)
    assert result.success
    checks = _evaluations(result)
    assert set(checks) == {"instruction_dataset", "preference_dataset"}
    for e in checks.values():
        assert not e.passed and e.severity == dg.AssetCheckSeverity.WARN
        assert e.metadata["document_ids"].value == [bad.id]
        assert bad.link in e.metadata["failures"].value and "extraction" in e.metadata["failures"].value
    # the blocking checks still pass: the others were written
    others = [e for e in result.get_asset_check_evaluations() if e.check_name != "no_failed_documents"]
    assert others and all(e.passed for e in others)
    mat = next(iter(result.asset_materializations_for_node("instruction_dataset")))
    assert mat.metadata["failed"].value == 1 and bad.link in mat.metadata["failed_documents"].value
    first_version = mat.metadata["version"].value

    monkeypatch.setattr(ins_mod, "extract_all", extract_all)
    again = _run_datasets([instruction_dataset], resources, instance)
    mat2 = next(iter(again.asset_materializations_for_node("instruction_dataset")))
    assert not mat2.metadata["reused_inputs_unchanged"].value
    assert mat2.metadata["failed"].value == 0 and _evaluations(again)["instruction_dataset"].passed
    assert mat2.metadata["version"].value != first_version
    card = storage.load_card(resources["artifacts"], AUTHOR, "instruction")
    rows = [
        r
        for split in ("train", "test")
        for r in storage.load_split(resources["artifacts"], AUTHOR, "instruction", card.version, split)
    ]
    assert {bad.id, psql_doc().id} <= {r.source_document_id for r in rows}
    # and now an unchanged re-run is a reuse again
    third = _run_datasets([instruction_dataset], resources, instance)
    mat3 = next(iter(third.asset_materializations_for_node("instruction_dataset")))
    assert mat3.metadata["reused_inputs_unchanged"].value
    assert mat3.metadata["version"].value == mat2.metadata["version"].value


def test_dataset_asset_fails_when_every_document_fails(warehouse, instance, tmp_path, monkeypatch):
    warehouse.get_store().upsert_cleaned(corpus())
    resources = {
        "warehouse": warehouse,
        "artifacts": ArtifactStoreResource(root_dir=str(tmp_path / "artifacts")),
        "llm": TextGeneratorResource(),
    }

    def always(docs, *args, **kwargs):
        raise RuntimeError("broken extractor")

    monkeypatch.setattr(ins_mod, "extract_all", always)
    result = _run_datasets([instruction_dataset], resources, instance, raise_on_error=False)
    assert not result.success
    [failure] = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    assert "every document failed" in failure.event_specific_data.error.message


# -- 3. features: cleaning, chunking, embedding --------------------------------------------------


BAD_LINK = "https://ada.substack.com/p/sourdough?utm_source=twitter"


def _failing_for(link: str, real, exc=RuntimeError("injected")):
    def fake(doc, *args, **kwargs):
        if doc.link == link:
            raise exc
        return real(doc, *args, **kwargs)

    return fake


def _edited_corpus():
    """The pipeline corpus with the sourdough article and the Qdrant article edited."""
    docs = fp.corpus()
    blocks = list(docs[0].blocks)
    blocks[1] = blocks[1].model_copy(
        update={"text": blocks[1].text + " Rye flour makes the starter livelier."}
    )
    docs[0] = docs[0].model_copy(update={"blocks": blocks, "content_hash": ""})
    docs[1] = docs[1].model_copy(
        update={"content": docs[1].content + "\n\nFiltered queries stay quick.", "content_hash": ""}
    )
    return docs


def test_cleaning_failure_is_skipped_recorded_and_retried(warehouse, monkeypatch):
    store = warehouse.get_store()
    store.upsert_documents(fp.corpus())
    monkeypatch.setattr(incremental, "clean_document", _failing_for(BAD_LINK, incremental.clean_document))
    stats = incremental.clean_author(store, fp.AUTHOR)
    assert stats.failed == 1 and stats.new == 3 and not stats.all_failed
    [f] = stats.failed_documents
    assert (f.link, f.stage, f.reason) == (BAD_LINK, "cleaning", "RuntimeError: injected")
    assert len(store.get_cleaned(fp.AUTHOR)) == 3  # the others are written, the bad one is not
    monkeypatch.undo()
    again = incremental.clean_author(store, fp.AUTHOR)
    assert again.failed == 0 and again.new == 1 and again.unchanged == 3


def test_chunking_failure_keeps_previous_chunks_and_is_retried(warehouse, embedder, monkeypatch):
    store = warehouse.get_store()
    store.upsert_documents(fp.corpus())
    budget = embedder.token_budget()
    incremental.clean_author(store, fp.AUTHOR)
    incremental.chunk_author(store, fp.AUTHOR, budget, embedder.model_name)
    bad_id = next(d.id for d in store.get_cleaned(fp.AUTHOR) if d.link == BAD_LINK)
    before = {c.id for c in incremental.get_chunks(store, fp.AUTHOR) if c.document_id == bad_id}
    manifest = store.chunk_manifests(fp.AUTHOR)[bad_id]

    store.upsert_documents(_edited_corpus())
    incremental.clean_author(store, fp.AUTHOR)
    monkeypatch.setattr(
        incremental,
        "chunk_document",
        _failing_for(BAD_LINK, incremental.chunk_document, RecursionError("deep")),
    )
    stats = incremental.chunk_author(store, fp.AUTHOR, budget, embedder.model_name)
    assert stats.failed == 1 and stats.updated >= 1
    assert stats.failed_documents[0].reason == "RecursionError: deep"
    after = {c.id for c in incremental.get_chunks(store, fp.AUTHOR) if c.document_id == bad_id}
    assert after == before  # previous chunks kept
    assert store.chunk_manifests(fp.AUTHOR)[bad_id] == manifest  # not marked processed
    monkeypatch.undo()
    retry = incremental.chunk_author(store, fp.AUTHOR, budget, embedder.model_name)
    assert retry.failed == 0 and retry.changed_ids == [bad_id]


class FlakyEmbedder:
    """The real model, except that it raises on any batch holding a marked text."""

    def __init__(self, real: EmbedderResource, marker: str | None):
        self.real, self.marker = real, marker

    @property
    def model_name(self) -> str:
        return self.real.model_name

    @property
    def dimension(self) -> int:
        return self.real.dimension

    def embed(self, texts) -> np.ndarray:
        if self.marker and any(self.marker in t for t in texts):
            raise ValueError("cannot encode this text")
        return self.real.embed(texts)

    def embed_query(self, text: str) -> np.ndarray:
        return self.real.embed_query(text)


def test_embedding_failure_keeps_previous_points_and_checks_pass(warehouse, qdrant, embedder):
    store = warehouse.get_store()
    store.upsert_documents(fp.corpus())
    fp.run_all(store, qdrant, embedder)
    bad_id = next(d.id for d in store.get_cleaned(fp.AUTHOR) if d.link == BAD_LINK)
    old_manifest = store.embedding_manifests(fp.AUTHOR)[bad_id]

    store.upsert_documents(_edited_corpus())
    incremental.clean_author(store, fp.AUTHOR)
    incremental.chunk_author(store, fp.AUTHOR, embedder.token_budget(), embedder.model_name)
    with qdrant.open() as index:
        stats = incremental.embed_author(store, index, FlakyEmbedder(embedder, "Rye flour"), fp.AUTHOR)
        assert stats.failed == 1 and stats.updated == 1 and not stats.all_failed
        assert stats.failed_documents[0].document_id == bad_id
        assert stats.failed_documents[0].stage == "embedding"
        points = {point_id(p.id) for p in index.scroll(fp.AUTHOR) if p.payload["document_id"] == bad_id}
        assert points == {
            point_id(p) for p in old_manifest.point_ids
        }  # previous vectors kept, nothing partial
        assert store.embedding_manifests(fp.AUTHOR)[bad_id] == old_manifest  # not marked processed
        excused = {bad_id}
        assert validation.check_embedded_once(store, index, fp.AUTHOR, excused)[0]
        assert validation.check_no_orphans(store, index, fp.AUTHOR, excused)[0]
        retry = incremental.embed_author(store, index, FlakyEmbedder(embedder, None), fp.AUTHOR)
        assert retry.failed == 0 and retry.changed_ids == [bad_id] and not retry.reconciled
    assert all(fp.all_checks(store, qdrant, embedder).values())


@pytest.fixture(scope="module")
def embedder() -> EmbedderResource:
    return EmbedderResource(batch_size=16)


@pytest.fixture
def qdrant(tmp_path) -> QdrantResource:
    return QdrantResource(path=str(tmp_path / "qdrant"), collection="test_chunks")


def test_feature_assets_warn_and_fail_only_when_nothing_is_usable(
    warehouse, qdrant, embedder, monkeypatch, tmp_path
):
    warehouse.get_store().upsert_documents(fp.corpus())
    raw = dg.AssetSpec("raw_documents", partitions_def=authors_partitions)
    resources = {
        "warehouse": warehouse,
        "embedder": embedder,
        "qdrant": qdrant,
        "artifacts": ArtifactStoreResource(root_dir=str(tmp_path / "artifacts")),
    }
    assets = [raw, fa.cleaned_documents, fa.chunks, fa.embedded_chunks]
    selection = ["cleaned_documents", "chunks", "embedded_chunks"]
    monkeypatch.setattr(incremental, "clean_document", _failing_for(BAD_LINK, incremental.clean_document))
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("authors", [fp.AUTHOR])
        result = dg.materialize(
            assets, resources=resources, instance=instance, partition_key=fp.AUTHOR, selection=selection
        )
        assert result.success
        checks = _evaluations(result)
        assert set(checks) == set(selection)
        warn = checks["cleaned_documents"]
        assert not warn.passed and warn.severity == dg.AssetCheckSeverity.WARN
        assert BAD_LINK in warn.metadata["failures"].value
        assert checks["chunks"].passed and checks["embedded_chunks"].passed
        blocking = [e for e in result.get_asset_check_evaluations() if e.check_name != "no_failed_documents"]
        assert all(e.passed for e in blocking)
        mats = {m.asset_key.path[-1]: m for m in result.get_asset_materialization_events()}
        meta = mats["cleaned_documents"].materialization.metadata
        assert meta["failed"].value == 1 and BAD_LINK in meta["failed_documents"].value

    def always(doc, *args, **kwargs):
        raise RuntimeError("cleaner broken")

    monkeypatch.setattr(incremental, "clean_document", always)
    docs = [  # every raw document changed: every one is cleaned again, and fails
        d.model_copy(update={"content": d.content + " (edited)", "content_hash": ""}) for d in fp.corpus()
    ]
    warehouse.get_store().upsert_documents(docs)
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("authors", [fp.AUTHOR])
        failed = dg.materialize(
            [raw, fa.cleaned_documents],
            resources={"warehouse": warehouse},
            instance=instance,
            partition_key=fp.AUTHOR,
            selection=["cleaned_documents"],
            raise_on_error=False,
        )
        assert not failed.success


def test_failure_reason_is_bounded_and_tabulated():
    reason = describe_error(ValueError("x" * 10_000 + " | pipe"))
    assert len(reason) <= 300 and reason.startswith("ValueError: xxx")
    table = failure_table(
        [DocumentFailure(document_id="d1", link="https://a/b", stage="chunking", reason="A | B")]
    )
    assert "https://a/b" in table and "A \\| B" in table
