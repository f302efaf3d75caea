"""Every curation stage on its own, plus extracts, offline generators, storage and checks."""

from __future__ import annotations

import pytest

from resources.artifacts import ArtifactStoreResource
from resources.llm import TextGeneratorResource
from twin_assets.datasets import curation as cur
from twin_assets.datasets import storage
from twin_assets.datasets.checks import check_leakage, check_min_size, check_no_empty_fields
from twin_assets.datasets.extracts import ExtractParams, extract_all, pack_units
from twin_assets.datasets.instruction import build_instruction_rows
from twin_assets.datasets.offline import key_phrases, offline_generic_answer, offline_instruction
from twin_assets.datasets.preference import (
    PreferenceParams,
    build_preference_rows,
    document_texts,
    is_clean_extract,
    preference_filter,
    resolve_rejected_source,
)
from twin_assets.domain.datasets import DatasetCard, InstructionRow, PreferenceRow, dataset_key
from twin_assets.domain.documents import Category
from twin_assets.domain.generation import Generation, GenerationUsage
from twin_assets_tests.test_datasets_fixtures import (
    ARTICLE_1,
    BOILERPLATE_POST,
    POLISH_POST,
    POSTS,
    corpus,
)


def text(x) -> str:
    return x.text


def _row(
    i: int, output: str, category=Category.POSTS, instruction="Write a post about data."
) -> InstructionRow:
    return InstructionRow(
        id=f"r{i}",
        instruction=instruction,
        output=output,
        category=category,
        source_document_id=f"d{i}",
        source_content_hash="h",
    )


def test_extracts_are_verbatim_and_cut_on_boundaries():
    docs = corpus()
    extracts = extract_all(docs, ExtractParams(min_chars=200, max_chars=700))
    by_doc = {d.id: d for d in docs}
    assert {e.category for e in extracts} == set(Category)
    for e in extracts:
        assert len(e.text) <= 700 * 2
        flat = " ".join(e.text.split())
        assert any(flat in " ".join(t.split()) for t in document_texts(by_doc[e.document_id]))
        if e.category == Category.ARTICLES and e.kind == "section" and e.code_language is None:
            assert e.text.rstrip()[-1] in ".!?`"  # never cut mid-sentence
    kinds = {e.kind for e in extracts}
    assert {"section", "post", "function", "class", "readme"} <= kinds
    assert any(
        e.heading == "pipeline_kit/retry.py:retry" and "exponential backoff" in e.docstring for e in extracts
    )
    # the H1 equal to the title is treated as the introduction, other headings are kept
    assert {e.heading for e in extracts if e.title.startswith("Why your")} >= {
        "",
        "Feature, training, inference",
        "Where teams get it wrong",
    }


def test_pack_units_splits_long_paragraphs_on_sentences():
    para = " ".join(f"Sentence number {i} talks about pipelines." for i in range(40))
    pieces = pack_units([para], 100, 300, "\n\n")
    assert len(pieces) > 3 and all(len(p) <= 300 for p in pieces)
    assert all(p.endswith(".") for p in pieces) and " ".join(pieces) == para


def test_rule_filter_drops_short_boilerplate_code_and_foreign_language():
    rows = [
        _row(0, POSTS[0]),
        _row(1, BOILERPLATE_POST),
        _row(2, POLISH_POST),
        _row(3, "Too short to teach anything."),
        _row(4, "\n".join(["import os", "x = 1", "def f():", "    return x", "y = f()"] * 10)),
        _row(5, "  "),
        _row(6, POSTS[1] * 20),
    ]
    r = cur.rule_filter(rows, lambda x: x.output, cur.FilterParams(max_chars=4000))
    assert [x.id for x in r.kept] == ["r0"]
    assert r.dropped == {
        "boilerplate": 1,
        "language": 1,
        "too_short": 1,
        "code_only": 1,
        "empty": 1,
        "too_long": 1,
    }
    # code is the point of a repository extract: not dropped as code-only
    code = _row(
        7, "\n".join(["import os", "x = 1", "def f():", "    return x"] * 20), category=Category.REPOSITORIES
    )
    assert cur.rule_filter([code], lambda x: x.output).kept == [code]


def test_exact_dedup_ignores_formatting():
    a = _row(0, POSTS[0])
    b = _row(1, POSTS[0].upper().replace(".", " .").replace("\n\n", "\n"))
    c = _row(2, POSTS[1])
    r = cur.exact_dedup([a, b, c], lambda x: x.output)
    assert r.kept == [a, c] and r.dropped == {"exact_duplicate": 1}


def test_near_dedup_threshold_is_configurable():
    from twin_assets_tests.test_datasets_fixtures import NEAR_DUP_POST

    a, b, c = _row(0, POSTS[0]), _row(1, NEAR_DUP_POST), _row(2, POSTS[2])
    r = cur.near_dedup([a, b, c], lambda x: x.output, threshold=0.5)
    assert r.kept == [a, c] and r.dropped == {"near_duplicate": 1}
    # a strict threshold keeps the edited repost (similar, not near-identical)
    assert len(cur.near_dedup([a, b, c], lambda x: x.output, threshold=0.99).kept) == 3


def test_quality_heuristic_prefers_real_prose_and_filter_applies_threshold():
    good = _row(0, POSTS[0], instruction="Write a post about dataset versions and lineage.")
    junk = _row(1, "data " * 80, instruction="Write about kittens.")
    assert cur.heuristic_quality(good.instruction, good.output, good.category) > 0.8
    assert cur.heuristic_quality(junk.instruction, junk.output, junk.category) < 0.6
    r = cur.quality_filter(
        [good, junk], lambda x: cur.heuristic_quality(x.instruction, x.output, x.category), 0.7
    )
    assert r.kept == [good] and r.dropped == {"low_quality": 1}
    assert cur.parse_judge_score({"score": 5}) == 1.0 and cur.parse_judge_score({"score": 9}) is None
    assert cur.parse_judge_score({"score": "x"}) is None and cur.parse_judge_score(None) is None


def _docs(rows) -> set[str]:
    return {r.source_document_id for r in rows}


def test_decontamination_drops_train_rows_sharing_ngrams_with_test():
    test = [_row(0, POSTS[0])]
    leaked = _row(1, "As I said before: " + POSTS[0].split("\n\n")[1] + " Anyway.")
    clean = _row(2, POSTS[3])
    r = cur.decontaminate([leaked, clean], test, lambda x: [x.output], n=8)
    assert r.kept == [clean] and r.dropped == {"overlaps_test": 1}
    assert len(cur.decontaminate([leaked, clean], test, lambda x: [x.output], n=8, max_shared=1000).kept) == 2


def test_offline_generators_are_deterministic_and_varied():
    extracts = extract_all(corpus())
    instructions = [offline_instruction(e, seed=0) for e in extracts]
    assert instructions == [offline_instruction(e, seed=0) for e in extracts]
    assert len({i.split(" ")[0] for i in instructions}) >= 4  # several templates in use
    fn = next(e for e in extracts if e.heading.endswith(":content_hash"))
    assert offline_instruction(fn).count("content_hash") == 1 and "Python" in offline_instruction(fn)
    assert "data pipeline" in " ".join(key_phrases(ARTICLE_1, 5)) or "feature" in " ".join(
        key_phrases(ARTICLE_1, 5)
    )
    generic = offline_generic_answer("Write a LinkedIn post about dataset versions.", Category.POSTS)
    assert generic == offline_generic_answer("Write a LinkedIn post about dataset versions.", Category.POSTS)
    assert "dataset versions" in generic and len(generic) > 80


def test_instruction_funnel_offline_counts_every_stage():
    built = build_instruction_rows(corpus(), TextGeneratorResource().get_generator())
    s = built.funnel.stages
    assert list(s) == [
        "extracts",
        "rule_filter",
        "exact_dedup",
        "near_dedup",
        "instructions",
        "quality",
        "split",
        "decontamination",
        "train",
        "test",
    ]
    assert s["extracts"] > s["rule_filter"] > s["exact_dedup"] > s["near_dedup"]
    d = built.funnel.dropped
    assert d["rule_filter"]["boilerplate"] >= 1 and d["rule_filter"]["language"] == 1
    assert d["exact_dedup"]["exact_duplicate"] >= 4  # the mirrored article
    assert d["near_dedup"]["near_duplicate"] == 1  # the repost
    assert s["train"] == len(built.train) and s["test"] == len(built.test) >= 1
    assert built.generator == "offline" and built.scorer == "heuristic"
    assert all(0 < r.quality <= 1 for r in built.train)
    assert check_leakage("instruction", built.train, built.test).passed
    # several sections of one article: all on one side (the corpus's articles have 3-4 each)
    assert not _docs(built.train) & _docs(built.test)
    # the rows follow the document assignment made before the funnel
    assert built.split and _docs(built.test) <= set(built.split.test_document_ids)
    assert _docs(built.train) <= set(built.split.train_document_ids)
    assert len(_docs(built.test)) >= 2
    assert set(built.split.categories_without_test) == {"repositories"}  # one repository


def test_preference_pairs_and_degenerate_filters():
    docs = corpus()
    gen = TextGeneratorResource().get_generator()
    built = build_preference_rows(docs, gen, "offline-generic", None)
    assert built.train and "rejected=offline-generic" in built.generator
    row = built.train[0]
    sources = {d.id: document_texts(d) for d in docs}
    assert row.chosen != row.rejected
    assert all(
        is_clean_extract(r.chosen, r.category, sources[r.source_document_id])
        for r in built.train + built.test
    )
    assert built.test and not _docs(built.train) & _docs(built.test)
    assert check_leakage("preference", built.train, built.test).passed
    base = dict(category=row.category, source_document_id=row.source_document_id, source_content_hash="h")
    bad = [
        PreferenceRow(id="a", prompt="p", chosen=row.chosen, rejected=row.chosen, **base),
        PreferenceRow(id="b", prompt="p", chosen=row.chosen, rejected="", **base),
        PreferenceRow(id="c", prompt="p", chosen=row.chosen, rejected="Sure.", **base),
        PreferenceRow(
            id="d",
            prompt="p",
            chosen="Words the author never wrote anywhere at all. " * 6,
            rejected=row.rejected,
            **base,
        ),
        PreferenceRow(
            id="e",
            prompt="p",
            chosen=row.chosen,
            rejected="Here you go: " + row.chosen + " Hope it helps!",
            **base,
        ),
        PreferenceRow(id="f", prompt="p", chosen=row.chosen, rejected=row.rejected, **base),
    ]
    r = preference_filter(bad, sources, PreferenceParams())
    assert [x.id for x in r.kept] == ["f"]
    assert r.dropped == {
        "identical": 1,
        "empty": 1,
        "too_short": 1,
        "chosen_not_clean_extract": 1,
        "rejected_overlaps_chosen": 1,
    }


class _FakeGenerator:
    """Satisfies `twin_assets.domain.generation.TextGenerator` with no resource behind it: the
    dataset code needs nothing more."""

    def __init__(self, name: str, uses_llm: bool = True):
        self.name, self.uses_llm, self.usage = name, uses_llm, GenerationUsage()

    def generate(self, messages, **kwargs) -> Generation | None:
        return Generation(
            text=f"{self.name} answers: " + "A generic assistant explains the topic "
            "in broad, careful and neutral terms, with no voice of its own. " * 2
        )

    def generate_many(self, batch, **kwargs) -> list[Generation | None]:
        return [self.generate(m, **kwargs) for m in batch]


def test_rejected_source_resolution_takes_generators_not_the_resource():
    llm, offline, base = _FakeGenerator("llm"), _FakeGenerator("offline", False), _FakeGenerator("base")
    assert resolve_rejected_source("auto", llm, base) == ("llm", llm)
    assert resolve_rejected_source("auto", offline, base) == ("base_model", base)
    assert resolve_rejected_source("auto", offline, None) == ("offline-generic", None)
    assert resolve_rejected_source("base_model", llm, base) == ("base_model", base)
    assert resolve_rejected_source("offline-generic", llm, base) == ("offline-generic", None)
    with pytest.raises(ValueError, match="no LLM is configured"):
        resolve_rejected_source("llm", offline, base)
    with pytest.raises(ValueError, match="no base model at '/models/base'"):
        resolve_rejected_source("base_model", llm, None, "/models/base")


def test_rejected_answers_come_from_the_generator_handed_in():
    docs = corpus()
    built = build_preference_rows(
        docs, TextGeneratorResource().get_generator(), "base_model", _FakeGenerator("base")
    )
    assert built.generator == "prompts=offline; rejected=base_model:base"
    assert built.train and all(r.rejected.startswith("base answers:") for r in built.train)


def test_dataset_key_is_the_layout_training_reads():
    assert dataset_key("a", "instruction") == "datasets/a/instruction"
    assert dataset_key("a", "preference", "v1") == "datasets/a/preference/v1"


def test_storage_versions_by_content_and_never_rewrites(tmp_path):
    artifacts = ArtifactStoreResource(root_dir=str(tmp_path))
    rows = [_row(i, POSTS[i % 5] + f" {i}") for i in range(6)]
    splits = {"train": rows[:5], "test": rows[5:]}
    v = storage.dataset_version("instruction", splits)
    assert v == storage.dataset_version("instruction", {"train": list(reversed(rows[:5])), "test": rows[5:]})
    assert v != storage.dataset_version("instruction", {"train": rows[:4], "test": rows[4:]})
    card = DatasetCard(author_id="a", kind="instruction", version=v, generator="offline")
    first = storage.save_dataset(artifacts, card, splits)
    assert first.written and first.card.counts == {"train": 5, "test": 1}
    assert first.card.documents == {"train": 5, "test": 1}
    assert first.card.split.categories == {
        "posts": {"train_rows": 5, "test_rows": 1, "train_documents": 5, "test_documents": 1}
    }
    assert first.card.split.shared_documents == 0 and not first.card.split.categories_without_test
    card_path = tmp_path / "datasets/a/instruction" / v / "card.json"
    mtime = card_path.stat().st_mtime_ns
    second = storage.save_dataset(artifacts, card.model_copy(update={"generator": "x"}), splits)
    assert not second.written and card_path.stat().st_mtime_ns == mtime
    assert artifacts.read_alias("datasets/a/instruction", "latest") == v
    assert storage.load_split(artifacts, "a", "instruction", v, "train") == rows[:5]
    empty_v = storage.dataset_version("instruction", {"train": [], "test": []})
    storage.save_dataset(artifacts, card.model_copy(update={"version": empty_v}), {})
    assert storage.load_split(artifacts, "a", "instruction", empty_v, "test") == []


def test_checks_detect_leakage_empty_fields_and_small_datasets():
    a, b = _row(0, POSTS[0]), _row(1, POSTS[1])
    assert check_leakage("instruction", [a], [b]).passed
    leak = check_leakage("instruction", [a, b], [_row(9, POSTS[1])])
    assert not leak.passed and leak.metadata["identical_answers"] == 1
    assert not check_no_empty_fields([a, _row(2, POSTS[2], instruction=" ")]).passed
    small = check_min_size("jan-data", "instruction", 3, 20, {"extracts": 10, "train": 3})
    assert not small.passed and "Too little data" in small.description and "jan-data" in small.description
    assert check_min_size("jan-data", "instruction", 30, 20, {}).passed
    # two sections of one document on both sides: leakage even with disjoint texts
    c, d = _row(3, POSTS[3]), _row(4, POSTS[4]).model_copy(update={"source_document_id": "d3"})
    doc_leak = check_leakage("instruction", [c], [d])
    assert not doc_leak.passed and doc_leak.metadata["shared_documents"] == 1
    assert doc_leak.metadata["shared_document_ids"] == ["d3"]
    assert "1 source documents in both splits" in doc_leak.description
    assert check_leakage("instruction", [a, c], [b]).metadata["train_documents"] == 2


def test_cards_written_before_document_splits_still_load():
    old = {"author_id": "a", "kind": "instruction", "version": "v", "counts": {"train": 3}}
    card = DatasetCard.model_validate(old)
    assert card.documents == {} and card.split is None
