"""Checks run on the *stored* dataset version (read back from the artifact store), so they verify
what training will actually load, not an in-memory copy."""

from __future__ import annotations

from pydantic import BaseModel

from twin_assets.datasets import curation as cur
from twin_assets.datasets.splitting import documents_by_split
from twin_assets.domain.datasets import DatasetKind

ANSWER_FIELD: dict[DatasetKind, str] = {"instruction": "output", "preference": "chosen"}
PROMPT_FIELD: dict[DatasetKind, str] = {"instruction": "instruction", "preference": "prompt"}


class CheckOutcome(BaseModel):
    passed: bool
    description: str
    metadata: dict = {}


def check_leakage(kind: DatasetKind, train: list, test: list, ngram: int = 8) -> CheckOutcome:
    """No test row may appear in train: same id, same source document (the split's unit: rows
    of one document belong to one side), same normalised answer, or a shared answer n-gram (the
    decontamination criterion)."""
    answer = ANSWER_FIELD[kind]
    shared_ids = {r.id for r in train} & {r.id for r in test}
    docs = documents_by_split({"train": train, "test": test})
    shared_docs = sorted(docs["train"] & docs["test"])
    test_hashes = {cur.content_hash(getattr(r, answer)) for r in test}
    same_answer = sum(1 for r in train if cur.content_hash(getattr(r, answer)) in test_hashes)
    index = cur.contamination_index((getattr(r, answer) for r in test), ngram)
    overlapping = sum(1 for r in train if cur.shared_ngrams(getattr(r, answer), index, ngram))
    passed = not shared_ids and not shared_docs and not same_answer and not overlapping
    return CheckOutcome(
        passed=passed,
        description=f"train ({len(docs['train'])} documents) and test ({len(docs['test'])} "
        "documents) are disjoint"
        if passed
        else f"leakage: {len(shared_ids)} shared ids, {len(shared_docs)} source documents in "
        f"both splits, {same_answer} identical answers, {overlapping} train rows sharing "
        f"{ngram}-grams with test",
        metadata={
            "shared_ids": len(shared_ids),
            "shared_documents": len(shared_docs),
            "shared_document_ids": shared_docs[:10],
            "train_documents": len(docs["train"]),
            "test_documents": len(docs["test"]),
            "identical_answers": same_answer,
            "ngram_overlaps": overlapping,
            "ngram": ngram,
        },
    )


def check_no_empty_fields(rows: list) -> CheckOutcome:
    empty: dict[str, int] = {}
    for row in rows:
        for name, value in row.model_dump(mode="json").items():
            if isinstance(value, str) and not value.strip():
                empty[name] = empty.get(name, 0) + 1
    return CheckOutcome(
        passed=not empty,
        description="no empty fields" if not empty else f"empty fields: {empty}",
        metadata={"empty_fields": empty, "rows": len(rows)},
    )


def check_min_size(
    author_id: str, kind: DatasetKind, n_train: int, min_rows: int, funnel: dict
) -> CheckOutcome:
    if n_train >= min_rows:
        return CheckOutcome(
            passed=True,
            description=f"{n_train} training rows (minimum {min_rows})",
            metadata={"train_rows": n_train, "min_train_rows": min_rows},
        )
    stages = ", ".join(f"{k}={v}" for k, v in funnel.items())
    return CheckOutcome(
        passed=False,
        description=(
            f"Too little data to fine-tune on: author '{author_id}' has {n_train} {kind} training "
            f"rows, fewer than the minimum of {min_rows}. Register more of the author's writing "
            f"(links) and re-collect, or lower `min_train_rows` in the asset config. "
            f"Funnel: {stages}."
        ),
        metadata={"train_rows": n_train, "min_train_rows": min_rows},
    )
