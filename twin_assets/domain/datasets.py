"""Rows of the fine-tuning datasets, shared by dataset generation (producer) and training
(consumer). Storage: a Hugging Face `datasets` dataset saved as parquet per split under
`datasets/<author>/<kind>/<version>/{train,test}.parquet` in the artifact store, with
`card.json` (a `DatasetCard`) beside it; `<kind>` is `instruction` or `preference`.
"""

from __future__ import annotations

from pydantic import BaseModel, Field

from twin_assets.domain.documents import Category


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


class SplitSummary(BaseModel):
    """The stored split seen by source document: train/test are split by document, so a
    document id is on one side only. Derived from the stored rows when a version is written."""

    unit: str = "document"
    # category -> {"train_rows", "test_rows", "train_documents", "test_documents"}
    categories: dict[str, dict[str, int]] = Field(default_factory=dict)
    # category -> why it has no test rows (e.g. a single document, kept whole in train)
    categories_without_test: dict[str, str] = Field(default_factory=dict)
    shared_documents: int = 0  # document ids on both sides; 0 unless the split is broken


class DatasetCard(BaseModel):
    """What a dataset version is, where it came from and how it was made."""

    author_id: str
    kind: str  # "instruction" | "preference"
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
