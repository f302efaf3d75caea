"""The document train/test assignment shared by both datasets: the assignment on its own, rows
following it, the card's summary, and both dataset builders agreeing on it."""

from __future__ import annotations

import random

import pytest

from resources.llm import TextGeneratorResource
from twin_assets.datasets.curation import FilterParams
from twin_assets.datasets.extracts import ExtractParams, extract_all
from twin_assets.datasets.instruction import CurationParams, build_instruction_rows
from twin_assets.datasets.preference import PreferenceParams, build_preference_rows
from twin_assets.datasets.splitting import (
    SplitParams,
    assign_documents,
    assign_test_documents,
    document_words,
    split_rows,
    summarise_split,
)
from twin_assets.domain.datasets import InstructionRow
from twin_assets.domain.documents import Category, Platform
from twin_assets_tests.test_datasets_fixtures import cleaned, corpus


def _assign(sizes: dict[str, int], category: str = "articles", **kw):
    return assign_test_documents([(d, category, n) for d, n in sizes.items()], **kw)


def _rows(doc: str, n: int, category=Category.ARTICLES) -> list[InstructionRow]:
    return [
        InstructionRow(
            id=f"{doc}-{k}",
            instruction="Write a section.",
            output=f"{doc} {k}",
            category=category,
            source_document_id=doc,
            source_content_hash="h",
        )
        for k in range(n)
    ]


def test_assignment_is_deterministic_and_meets_the_word_quota():
    rnd = random.Random(7)
    sizes = {
        "articles": {f"a{i}": rnd.randint(200, 1500) for i in range(60)},
        "posts": {f"p{i}": rnd.randint(50, 150) for i in range(40)},
        "repositories": {f"r{i}": rnd.randint(500, 3000) for i in range(8)},
    }
    docs = [(d, cat, n) for cat, s in sizes.items() for d, n in s.items()]
    kw = dict(test_fraction=0.2, min_per_category=300, max_test_share=0.5, min_document_weight=50)
    a = assign_test_documents(docs, seed=3, **kw)
    # no RNG: input order does not matter, the seed does
    assert assign_test_documents(list(reversed(docs)), seed=3, **kw) == a
    assert assign_test_documents(docs, seed=4, **kw).test_document_ids != a.test_document_ids
    test, train = set(a.test_document_ids), set(a.train_document_ids)
    assert not test & train and test | train == {d for d, _, _ in docs}
    assert a.documents == {"train": len(train), "test": len(test)} and a.fingerprint
    for cat, s in sizes.items():
        c = a.categories[cat]
        assert c.weight == c.holdable_weight == sum(s.values()) and c.documents == len(s)
        assert c.target_test_weight == round(0.2 * c.weight)
        # met with whole documents: within the largest document's weight of the target
        assert abs(c.test_weight - c.target_test_weight) < max(s.values()), (cat, c)
        assert c.test_weight == sum(n for d, n in s.items() if d in test)
        assert 0 < c.test_documents < c.documents and not c.note
    assert a.categories_without_test == {}


def test_one_large_document_never_swallows_the_test_set():
    # whatever the hash order, a 4000-word document never goes to test for a 500-word target
    sizes = {"repo": 4000, **{f"small{i}": 100 for i in range(10)}}
    for seed in range(10):
        a = _assign(sizes, test_fraction=0.1, seed=seed)
        assert "repo" not in a.test_document_ids and a.categories["articles"].test_weight == 500
    # a new document moves the boundary around its own place only: most test documents stay
    base = {f"d{i}": 200 for i in range(50)}
    before = set(_assign(base, test_fraction=0.2).test_document_ids)
    after = set(_assign({**base, "new": 200}, test_fraction=0.2).test_document_ids)
    assert len(before & after) >= len(before) - 1


def test_tiny_authors_and_unholdable_documents():
    # one article: nothing to test on without emptying train
    a = _assign({"only": 3000}, test_fraction=0.25)
    assert a.test_document_ids == [] and "single document" in a.categories["articles"].note
    assert a.categories_without_test == {"articles": a.categories["articles"].note}
    # two documents: the smaller one is held out, up to half of the words (the default cap)...
    assert _assign({"x": 600, "y": 500}, test_fraction=0.1).test_document_ids == ["y"]
    # ...but with a lower cap each document is too large to hold out
    a = _assign({"x": 600, "y": 500}, test_fraction=0.1, max_test_share=0.3)
    assert a.test_document_ids == [] and "each larger than 30%" in a.categories["articles"].note
    # every document taken by the quota but one: train always keeps a whole document
    a = _assign({"u": 300, "v": 300}, test_fraction=0.9, max_test_share=1.0)
    assert a.documents == {"train": 1, "test": 1}
    # too little text in the category, or no held-out share at all
    a = _assign({f"d{i}": 60 for i in range(4)}, test_fraction=0.25, min_per_category=300)
    assert a.test_document_ids == [] and "fewer than the 300" in a.categories["articles"].note
    assert _assign({"a": 500, "b": 500}, test_fraction=0.0).test_document_ids == []
    assert assign_test_documents([], 0.1).documents == {"train": 0, "test": 0}
    # documents too short to yield an answer, or marked not holdable, are never held out
    docs = [
        ("short", "posts", 30),
        ("empty", "posts", 0),
        ("copy", "posts", 400, False),
        *[(f"p{i}", "posts", 100) for i in range(6)],
    ]
    for seed in range(10):
        a = assign_test_documents(docs, 0.2, seed, min_per_category=300, min_document_weight=50)
        assert a.test_document_ids and not {"short", "empty", "copy"} & set(a.test_document_ids)
        assert a.categories["posts"].holdable_documents == 6
        assert a.categories["posts"].holdable_weight == 600
    a = assign_test_documents(
        [("a", "posts", 30), ("b", "posts", 40)], 0.5, min_per_category=0, min_document_weight=50
    )
    assert a.test_document_ids == [] and "none that can be held out" in a.categories["posts"].note
    a = assign_test_documents([("a", "posts", 900), ("b", "posts", 900, False)], 0.5)
    assert a.test_document_ids == [] and "only one that can be held out" in a.categories["posts"].note
    # categories are independent: a one-document category does not stop the others
    docs = [("repo", "repositories", 5000), *[(f"p{i}", "posts", 100) for i in range(10)]]
    a = assign_test_documents(docs, 0.1)
    assert a.test_document_ids and set(a.test_document_ids) <= {f"p{i}" for i in range(10)}
    assert set(a.categories_without_test) == {"repositories"}


def test_assignment_rejects_bad_input():
    with pytest.raises(ValueError, match="test_fraction"):
        _assign({"a": 1}, test_fraction=1.0)
    with pytest.raises(ValueError, match="max_test_share"):
        _assign({"a": 1}, max_test_share=0)
    with pytest.raises(ValueError, match="listed twice"):
        assign_test_documents([("a", "posts", 1), ("a", "posts", 2)])
    with pytest.raises(ValueError, match="negative weight"):
        assign_test_documents([("a", "posts", -1)])
    with pytest.raises(ValueError, match="without an id"):
        assign_test_documents([("", "posts", 1)])


def test_assignment_of_cleaned_documents_skips_copies_and_other_languages():
    docs = corpus()
    by_link = {d.link.rsplit("/", 1)[-1]: d for d in docs}
    repo = by_link["pipeline-kit"]
    assert document_words(repo) == sum(
        len(t.split()) for t in [repo.content, *(f.content for f in repo.files)]
    )
    mirror = next(d for d in docs if "/mirror/" in d.link)
    original = next(d for d in docs if d.link.endswith("@jan/feature-pipelines"))
    copy = max(mirror.id, original.id)  # exact de-duplication keeps the smaller id's rows
    never = {copy, by_link["jan_pl"].id, by_link["snippets"].id}  # a copy, Polish, 31 words
    seen_test: set[str] = set()
    for seed in range(15):
        a = assign_documents(docs, SplitParams(seed=seed, test_fraction=0.3))
        assert not never & set(a.test_document_ids), seed
        assert "single document" in a.categories["repositories"].note
        assert a.categories["articles"].holdable_documents == 3
        seen_test |= set(a.test_document_ids)
    assert min(mirror.id, original.id) in seen_test  # the first copy can be held out
    # the input order does not matter, and the parameters reach the assignment
    assert assign_documents(list(reversed(docs))) == assign_documents(docs)
    assert assign_documents(docs, SplitParams(test_fraction=0.4)) != assign_documents(docs)


def test_rows_follow_their_documents_side():
    docs = corpus()
    a = assign_documents(docs)
    extracts = extract_all(docs)
    r = split_rows(extracts, a)
    assert {e.document_id for e in r.test} <= set(a.test_document_ids) and r.test
    assert {e.document_id for e in r.train} <= set(a.train_document_ids)
    assert [e.id for e in r.train + r.test] and len(r.train) + len(r.test) == len(extracts)
    assert [e.id for e in r.train] == [e.id for e in extracts if e in r.train]  # input order
    with pytest.raises(ValueError, match="not among the documents"):
        split_rows(_rows("elsewhere", 1), a)
    with pytest.raises(ValueError, match="no source document id"):
        split_rows([_rows("d", 1)[0].model_copy(update={"source_document_id": ""})], a)


def test_summary_says_why_a_category_has_no_test_rows():
    a = assign_test_documents(
        [
            ("art1", "articles", 900),
            ("art2", "articles", 400),
            ("art3", "articles", 800),
            ("repo", "repositories", 900),
        ],
        0.2,
    )
    held = a.test_document_ids
    assert held and a.categories["articles"].test_documents == 1
    train_articles = [d for d in ("art1", "art2", "art3") if d not in held]
    train = [r for d in train_articles for r in _rows(d, 2)] + _rows("repo", 3, Category.REPOSITORIES)
    # the held-out article lost all its rows in the funnel: the summary says so
    s = summarise_split(train, [], a)
    assert "1 held-out document kept no rows after curation" in s.categories_without_test["articles"]
    assert "single document" in s.categories_without_test["repositories"]
    assert s.assignment == a and s.shared_documents == 0
    s = summarise_split(train, _rows(held[0], 2), a)
    assert set(s.categories_without_test) == {"repositories"}
    assert s.categories["articles"] == {
        "train_rows": 4,
        "test_rows": 2,
        "train_documents": 2,
        "test_documents": 1,
    }
    assert "no split assignment" in summarise_split(train, []).categories_without_test["articles"]


EXTRA_POSTS = [
    """Most data quality problems I see are not exotic. A column changes meaning, a join starts duplicating rows, or a source stops sending one field and nobody notices for a week.

Simple checks catch almost all of them: row counts, null rates and a few value ranges, run on every load and loud when they fail.""",
    """Every new pipeline I build starts with the question of how it will be re-run. If a job cannot be run twice on the same input and give the same output, it will eventually corrupt something on a bad day.

Idempotent writes, deterministic ids and versioned inputs cost very little up front and save a lot of late nights.""",
    """I review a lot of machine learning code, and the part that is most often missing is the evaluation split. People tune on the same data they report, and then wonder why production numbers are lower.

Hold out the test set first, keep it out of every decision, and look at it as rarely as you can.""",
    """Logging every prompt and answer of an assistant sounds expensive until the first time a user reports a bad answer and you cannot reproduce it.

Store the prompt, the retrieved context, the model version and the answer together. Debugging becomes reading instead of guessing, and the logs turn into the next evaluation set.""",
]


def test_instruction_and_preference_hold_out_the_same_documents():
    """The two datasets filter the same cleaned documents differently (other extract sizes, a
    stricter word minimum, a quality threshold), yet every document present in both lands on
    the same side: no held-out (evaluated) document is a DPO training document."""
    docs = corpus() + [
        cleaned(f"https://www.linkedin.com/posts/jan_extra{i}", Category.POSTS, Platform.LINKEDIN, None, p)
        for i, p in enumerate(EXTRA_POSTS)
    ]
    gen = TextGeneratorResource().get_generator()
    agreed_tests = 0
    for seed in range(3):
        split = SplitParams(test_fraction=0.2, seed=seed)
        ins = build_instruction_rows(docs, gen, CurationParams(split=split, seed=seed, quality_threshold=0.6))
        pref = build_preference_rows(
            docs,
            gen,
            "offline-generic",
            None,
            PreferenceParams(
                split=split,
                seed=seed,
                extract=ExtractParams(min_chars=200, max_chars=900),
                filters=FilterParams(min_words=60, max_chars=4000),
            ),
        )
        sides = {}
        for name, built in (("instruction", ins), ("preference", pref)):
            sides[name] = {
                "train": {r.source_document_id for r in built.train},
                "test": {r.source_document_id for r in built.test},
            }
        present_ins = sides["instruction"]["train"] | sides["instruction"]["test"]
        present_pref = sides["preference"]["train"] | sides["preference"]["test"]
        # the funnels really did keep different documents and rows
        assert present_ins != present_pref and len(ins.train) != len(pref.train)
        both = present_ins & present_pref
        ins_test = sides["instruction"]["test"] & both
        assert ins_test == sides["preference"]["test"] & both, seed
        # the leak this prevents, in both directions
        assert not sides["instruction"]["test"] & sides["preference"]["train"]
        assert not sides["preference"]["test"] & sides["instruction"]["train"]
        # both were split by one assignment, made from the documents alone
        assert ins.split == pref.split == assign_documents(docs, split)
        agreed_tests += len(ins_test)
    assert agreed_tests >= 3  # the agreement covers real held-out documents, not empty sets
