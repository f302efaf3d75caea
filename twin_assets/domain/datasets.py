"""Rows of the fine-tuning datasets, shared by dataset generation (producer) and training
(consumer). Storage: a Hugging Face `datasets` dataset saved as parquet per split under
`datasets/<author>/<kind>/<version>/{train,test}.parquet` in the artifact store, with
`card.json` (a `DatasetCard`) beside it; `<kind>` is `instruction` or `preference`.
"""

from __future__ import annotations

from typing import Literal, get_args

from pydantic import BaseModel, Field

from twin_assets.domain.documents import Category

DatasetKind = Literal["instruction", "preference"]
"""`instruction`: (instruction, the author's text) pairs for SFT; `preference`: (prompt, chosen =
the author's text, rejected = a generic answer) pairs for DPO."""

DATASET_KINDS: tuple[DatasetKind, ...] = get_args(DatasetKind)

SplitName = Literal["train", "test"]
SPLITS: tuple[SplitName, ...] = get_args(SplitName)


def dataset_key(author_id: str, kind: DatasetKind, version: str | None = None) -> str:
    """`datasets/<author>/<kind>[/<version>]` in the artifact store: the one definition of the
    layout, shared by the dataset stage (writer) and training (reader)."""
    base = f"datasets/{author_id}/{kind}"
    return f"{base}/{version}" if version else base


class InstructionRow(BaseModel):
    """Instruction back-translation: `output` is the author's own text, verbatim."""

    id: str
    instruction: str
    output: str
    category: Category
    source_document_id: str
    source_content_hash: str
    quality: float = 0.0


class PreferenceRow(BaseModel):
    """`chosen` is the author's verbatim text; `rejected` a generic answer to the same prompt."""

    id: str
    prompt: str
    chosen: str
    rejected: str
    category: Category
    source_document_id: str
    source_content_hash: str


class CategoryAssignment(BaseModel):
    """How one category's documents were assigned, and why its test part is empty when it is.
    Sizes are in the assignment's weight unit (words of the cleaned documents)."""

    documents: int
    weight: int
    holdable_documents: int = 0  # documents that may be held out (see `min_document_weight`)
    holdable_weight: int = 0  # their weight: what the quota and the cap are shares of
    target_test_weight: int
    test_documents: int = 0
    test_weight: int = 0
    note: str = ""  # set when the category has no test document: the reason


class DocumentSplit(BaseModel):
    """Which of an author's cleaned documents are held out for test, decided from the cleaned
    documents alone (before any dataset's funnel), so that the instruction and preference
    datasets of one author put every document on the same side. Recorded in each card; the
    fingerprint is equal across the two datasets exactly when their assignments are."""

    unit: str = "document"
    weight: str = "words"  # what the test quota counts
    test_fraction: float
    seed: int
    min_per_category: int  # category weight needed before any of it is held out
    min_document_weight: int  # a lighter document is never held out, nor is a copy of
    # another document or one outside the author's main language (it could not be evaluated)
    max_test_share: float
    documents: dict[str, int] = Field(default_factory=dict)  # per split, as assigned
    test_document_ids: list[str] = Field(default_factory=list)
    train_document_ids: list[str] = Field(default_factory=list)
    categories: dict[str, CategoryAssignment] = Field(default_factory=dict)
    fingerprint: str = ""  # hash of the parameters and both id lists

    @property
    def categories_without_test(self) -> dict[str, str]:
        return {c: s.note for c, s in self.categories.items() if not s.test_documents}


class SplitSummary(BaseModel):
    """The stored split seen by source document: train/test are split by document, so a
    document id is on one side only. Derived from the stored rows when a version is written,
    with the document assignment they were split by (None on cards written before it)."""

    unit: str = "document"
    # category -> {"train_rows", "test_rows", "train_documents", "test_documents"}
    categories: dict[str, dict[str, int]] = Field(default_factory=dict)
    # category -> why it has no test rows (e.g. a single document, kept whole in train)
    categories_without_test: dict[str, str] = Field(default_factory=dict)
    shared_documents: int = 0  # document ids on both sides; 0 unless the split is broken
    assignment: DocumentSplit | None = None  # shared by both datasets of the author


class DatasetCard(BaseModel):
    """What a dataset version is, where it came from and how it was made."""

    author_id: str
    kind: DatasetKind
    version: str  # content hash of the rows: identical content -> identical version
    uri: str = ""
    counts: dict[str, int] = Field(default_factory=dict)  # per split
    documents: dict[str, int] = Field(default_factory=dict)  # source documents per split
    split: SplitSummary | None = None  # None on cards written before document-level splits
    funnel: dict[str, int] = Field(default_factory=dict)  # curation stage -> rows left
    generator: str = ""
    parameters: dict = Field(default_factory=dict)
    source_hashes: list[str] = Field(default_factory=list)  # cleaned-document hashes used
    created_at: str = ""
