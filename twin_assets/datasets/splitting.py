"""The train/test split of an author's datasets: which cleaned documents are held out.

Why the unit is the source document: the extracts of one article are sections of the same
argument in the same words; with a row-level split, test would measure how well the model
recalls the rest of an article it was trained on. Every row of a document lands on one side.

Why the assignment is made from the cleaned documents, before any funnel: the instruction and
the preference dataset are cut from the same documents but filtered differently (the preference
funnel drops pairs the instruction funnel keeps, configs may differ). A split computed from each
dataset's surviving rows would put a document in instruction *test* (what evaluation scores) and
in preference *train* (what DPO learns), so evaluation would call text the model was trained on
"unseen". Here the assignment is a function of the cleaned documents and `SplitParams` only;
both builders call `assign_documents` with them, so they agree by construction, whatever each
funnel later keeps. The rows then follow their document (`split_rows`); decontamination still
runs after the split, on each dataset's rows.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, NamedTuple, Protocol, TypeVar, cast

from pydantic import BaseModel

from twin_assets.domain.datasets import CategoryAssignment, DocumentSplit, SplitSummary
from twin_assets.domain.documents import Category
from twin_assets.domain.features import CleanedDocument

T = TypeVar("T")


class SplitParams(BaseModel):
    """The split's knobs, one model for both datasets: their assignment agrees only when these
    are equal, so both assets take them from the same defaults (and the same config fields).

    Sizes are words of the cleaned documents (see `document_words`)."""

    test_fraction: float = 0.1  # of each category's words, met with whole documents
    seed: int = 0
    min_category_words: int = 300  # fewer holdable words (about five posts): all train
    # a shorter document is never held out: the default funnel keeps no answer under 30 words /
    # 200 characters, so it would take a test slot and give nothing to evaluate
    min_document_words: int = 50
    max_test_share: float = 0.5  # a category's test part never takes more of its words


def split_key(item_id: str, seed: int) -> str:
    return hashlib.sha256(f"{seed}:{item_id}".encode()).hexdigest()


def document_words(doc: CleanedDocument) -> int:
    """The weight of a document in the test quota: whitespace-separated words of its cleaned
    text (body and repository files).

    Why words and not the rows or extracts it yields: rows depend on each dataset's funnel, and
    even the extract count depends on `ExtractParams` (min/max characters), which each asset's
    config sets on its own; a weight that changes with them would give the two datasets two
    different assignments. Word count depends on the cleaned document only, and still tracks
    rows: extracts are cut by length, so the answers a document yields grow with its words."""
    return sum(len(t.split()) for t in (doc.content, *(f.content for f in doc.files)))


def source_document(item: object) -> str:
    """The id of the document an item was cut from: `source_document_id` on dataset rows,
    `document_id` on extracts. An item without one is an error, not a document of its own: a
    silent fallback to the row id would bring back exactly the leak the document split prevents."""
    for name in ("source_document_id", "document_id"):
        value = getattr(item, name, None)
        if value:
            return str(value)
    raise ValueError(
        f"{type(item).__name__} {getattr(item, 'id', '?')!r} has no source document id: "
        "the train/test split groups rows by the document they come from"
    )


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


class WeightedDocument(NamedTuple):
    """A document as the assignment sees it. `holdable` False keeps it in train whatever its
    place in the hash order (a copy of another document, a post in another language: held out,
    it would take a test slot and leave nothing to evaluate)."""

    id: str
    category: str
    weight: int
    holdable: bool = True


def no_test_reason(
    n_documents: int,
    n_holdable: int,
    holdable_weight: int,
    test_fraction: float,
    min_per_category: int,
    min_document_weight: int,
    unit: str = "words",
) -> str:
    """Why a category gets no test document before any is tried ('' when it should get some);
    `documents_too_large_reason` covers the case found while choosing."""
    if test_fraction == 0:
        return "test_fraction is 0"
    if n_documents == 1:
        return "a single document: held whole in train, nothing to test on"
    cannot = (
        f"under {min_document_weight} {unit}, a copy of another document or not in the author's main language"
    )
    if n_holdable == 0:
        return f"{n_documents} documents, none that can be held out ({cannot}): all in train"
    if holdable_weight < min_per_category:
        return (
            f"{holdable_weight} {unit} that could be held out, fewer than the "
            f"{min_per_category} a category needs before any of it is: all in train"
        )
    if n_holdable == 1:
        return (
            f"{n_documents} documents, only one that can be held out (the others are "
            f"{cannot}): kept in train, which keeps at least one whole document"
        )
    return ""


def documents_too_large_reason(
    n_holdable: int, holdable_weight: int, max_test_share: float, unit: str = "words"
) -> str:
    return (
        f"{n_holdable} documents that can be held out, each larger than "
        f"{max_test_share:.0%} of their {holdable_weight} {unit}: all in train"
    )


def _choose_test_documents(docs: list[tuple[str, int]], target: int, cap: int) -> list[str]:
    """Documents (holdable ones, in hash order, with their weights) that make up the test part.

    Walk the hash order and take a document when it brings the test weight strictly closer to
    `target` (its weight is below twice what is still missing), skipping those that would
    overshoot by more than they help: plain "take documents until the quota is reached" lets one
    large document first in hash order (a repository of thousands of lines) turn a 10 % target
    into a 60 % test set. When no document is small enough, the smallest one (hash order breaks
    ties) is taken so that the category still gets a test part, but never beyond `cap` and
    never the last document: train keeps at least one whole document."""
    chosen: list[str] = []
    taken = 0
    for doc, n in docs:
        if taken >= target or len(chosen) == len(docs) - 1:
            break
        if abs(taken + n - target) < abs(taken - target) and taken + n <= cap:
            chosen.append(doc)
            taken += n
    if not chosen and target > 0 and len(docs) > 1:
        doc, n = min(docs, key=lambda d: d[1])  # min() keeps the first (hash order) of ties
        if n <= cap:
            chosen.append(doc)
    return chosen


def assign_test_documents(
    docs: Sequence[tuple],
    test_fraction: float = 0.1,
    seed: int = 0,
    min_per_category: int = 300,
    max_test_share: float = 0.5,
    min_document_weight: int = 1,
    unit: str = "words",
) -> DocumentSplit:
    """Assign each document - (id, category, weight[, holdable]), see `WeightedDocument` - to
    train or test, stratified by category.

    Within each category, documents are ordered by sha256(seed, document id) - no RNG, so
    re-runs assign identically whatever the input order, and a new document only shifts the
    boundary around its own place in that order. Only holdable documents of at least
    `min_document_weight` may be held out; the test target is round(test_fraction * their
    weight), at least 1 once it reaches `min_per_category`, and they are taken by
    `_choose_test_documents` until it is met as closely as whole documents allow. The test part
    never exceeds `max_test_share` of that weight and train always keeps at least one such
    document.

    Small authors: a category with a single document (one repository, one article) goes
    entirely to train - its test part would otherwise be *all* of it - and the category's
    `note` says so, as it does for a category too light to hold anything out of, one without
    two documents that can be held out, and one whose documents are all too large to hold out.
    """
    if not 0 <= test_fraction < 1:
        raise ValueError(f"test_fraction must be in [0, 1), got {test_fraction}")
    if not 0 < max_test_share <= 1:
        raise ValueError(f"max_test_share must be in (0, 1], got {max_test_share}")
    if min_per_category < 0 or min_document_weight < 0:
        raise ValueError("min_per_category and min_document_weight must be >= 0")
    by_cat: dict[str, list[WeightedDocument]] = {}
    seen: set[str] = set()
    for entry in docs:
        d = WeightedDocument(*entry)
        if not d.id:
            raise ValueError("a document without an id cannot be assigned to a split")
        if d.id in seen:
            raise ValueError(f"document {d.id!r} listed twice: one document, one side")
        if d.weight < 0:
            raise ValueError(f"document {d.id!r} has a negative weight ({d.weight})")
        seen.add(d.id)
        by_cat.setdefault(str(d.category), []).append(d)

    split = DocumentSplit(
        weight=unit,
        test_fraction=test_fraction,
        seed=seed,
        min_per_category=min_per_category,
        min_document_weight=min_document_weight,
        max_test_share=max_test_share,
    )
    test: set[str] = set()
    for cat in sorted(by_cat):
        ordered = sorted(by_cat[cat], key=lambda d: (split_key(d.id, seed), d.id))
        holdable = [
            (d.id, int(d.weight)) for d in ordered if d.holdable and d.weight >= max(1, min_document_weight)
        ]
        held_weight = sum(n for _, n in holdable)
        note = no_test_reason(
            len(ordered),
            len(holdable),
            held_weight,
            test_fraction,
            min_per_category,
            min_document_weight,
            unit,
        )
        target = 0 if note else max(1, round(test_fraction * held_weight))
        chosen = _choose_test_documents(holdable, target, int(max_test_share * held_weight))
        if target and not chosen:
            note = documents_too_large_reason(len(holdable), held_weight, max_test_share, unit)
        test.update(chosen)
        sizes = dict(holdable)
        split.categories[cat] = CategoryAssignment(
            documents=len(ordered),
            weight=sum(int(d.weight) for d in ordered),
            holdable_documents=len(holdable),
            holdable_weight=held_weight,
            target_test_weight=target,
            test_documents=len(chosen),
            test_weight=sum(sizes[d] for d in chosen),
            note=note,
        )
    split.test_document_ids = sorted(test)
    split.train_document_ids = sorted(seen - test)
    split.documents = {"train": len(split.train_document_ids), "test": len(test)}
    payload = split.model_dump(
        mode="json",
        include={
            "unit",
            "weight",
            "test_fraction",
            "seed",
            "min_per_category",
            "min_document_weight",
            "max_test_share",
            "test_document_ids",
            "train_document_ids",
        },
    )
    split.fingerprint = hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]
    return split


def main_language(docs: Sequence[CleanedDocument]) -> str | None:
    """The language most of the author's prose is in (by words), from the cleaning stage's
    detection; None when none is known. Repositories do not vote: code has no language."""
    words: Counter[str] = Counter()
    for d in docs:
        if d.category != Category.REPOSITORIES and d.language not in ("", "unknown"):
            words[d.language] += document_words(d)
    if not words:
        return None
    return min(words, key=lambda lang: (-words[lang], lang))


def weighted_documents(docs: Sequence[CleanedDocument]) -> list[WeightedDocument]:
    """The author's cleaned documents as the assignment weighs them, with the ones that could
    not be evaluated if held out marked as not holdable. All of it comes from the cleaned
    documents, nothing from a dataset's parameters: a document whose cleaned text is identical
    to one with a smaller id (a mirror - the funnel's exact de-duplication keeps the first by
    id), and prose outside the author's main language."""
    main = main_language(docs)
    first_of_content: dict[str, str] = {}
    for d in sorted(docs, key=lambda d: d.id):
        first_of_content.setdefault(d.content_hash, d.id)
    out = []
    for d in docs:
        copy = first_of_content[d.content_hash] != d.id
        foreign = (
            main is not None
            and d.category != Category.REPOSITORIES
            and d.language not in ("", "unknown", main)
        )
        out.append(
            WeightedDocument(d.id, str(d.category), document_words(d), holdable=not copy and not foreign)
        )
    return out


def assign_documents(docs: Sequence[CleanedDocument], params: SplitParams | None = None) -> DocumentSplit:
    """The assignment both dataset builders use: the author's cleaned documents weighed by
    `document_words` (see `weighted_documents`), with the shared `SplitParams`."""
    params = params or SplitParams()
    return assign_test_documents(
        weighted_documents(docs),
        test_fraction=params.test_fraction,
        seed=params.seed,
        min_per_category=params.min_category_words,
        max_test_share=params.max_test_share,
        min_document_weight=params.min_document_words,
        unit="words",
    )


@dataclass
class SplitResult(Generic[T]):
    train: list[T]
    test: list[T]


def split_rows(
    items: Sequence[T],
    assignment: DocumentSplit,
    document: Callable[[T], str] = source_document,
) -> SplitResult[T]:
    """Rows on their document's side, in the input order. A row whose document the assignment
    does not know is an error: it was not cut from the documents the split was decided on."""
    test_ids = set(assignment.test_document_ids)
    known = test_ids | set(assignment.train_document_ids)
    train: list[T] = []
    test: list[T] = []
    for item in items:
        doc = document(item)
        if doc not in known:
            raise ValueError(
                f"row {getattr(item, 'id', '?')!r} comes from document {doc!r}, which is not "
                "among the documents the train/test split was assigned from"
            )
        (test if doc in test_ids else train).append(item)
    return SplitResult(train, test)


def documents_by_split(splits: dict[str, Sequence[object]]) -> dict[str, set[str]]:
    return {name: {source_document(r) for r in rows} for name, rows in splits.items()}


class _HasCategory(Protocol):
    """A dataset row (InstructionRow, PreferenceRow), as the split summary reads it."""

    @property
    def category(self) -> object: ...


def summarise_split(
    train: Sequence[object],
    test: Sequence[object],
    assignment: DocumentSplit | None = None,
) -> SplitSummary:
    """The split as stored (after the funnel and decontamination), by category and document:
    what the card reports. A category without test rows gets the assignment's reason, or, when
    the assignment did hold documents of it out, the fact that the funnel kept none of their
    rows (a held-out post in another language, a duplicate of a train document)."""
    cats: dict[str, dict[str, int]] = {}
    docs: dict[str, dict[str, set[str]]] = {}
    for name, rows in (("train", train), ("test", test)):
        for r in rows:
            cat = str(cast(_HasCategory, r).category)
            c = cats.setdefault(
                cat, {"train_rows": 0, "test_rows": 0, "train_documents": 0, "test_documents": 0}
            )
            c[f"{name}_rows"] += 1
            docs.setdefault(cat, {"train": set(), "test": set()})[name].add(source_document(r))
    for cat, c in cats.items():
        c["train_documents"] = len(docs[cat]["train"])
        c["test_documents"] = len(docs[cat]["test"])
    without_test = {}
    for cat, c in sorted(cats.items()):
        if c["test_rows"]:
            continue
        assigned = assignment.categories.get(cat) if assignment else None
        if assigned is None:
            without_test[cat] = "no test rows (no split assignment recorded for this category)"
        elif assigned.note:
            without_test[cat] = assigned.note
        else:
            without_test[cat] = (
                f"its {_plural(assigned.test_documents, 'held-out document')} kept no rows "
                "after curation (filters, de-duplication, quality)"
            )
    by_split = documents_by_split({"train": train, "test": test})
    return SplitSummary(
        categories=dict(sorted(cats.items())),
        categories_without_test=without_test,
        shared_documents=len(by_split["train"] & by_split["test"]),
        assignment=assignment,
    )
