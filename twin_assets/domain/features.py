"""Cleaned documents: the author's first snapshot, the one fine-tuning datasets are built from.

Stored in the warehouse (collection `cleaned_documents`) rather than in a vector-less Qdrant
collection: datasets need whole documents with their structure and lineage, queried by author
and hash, which is what a document store is for; Qdrant holds the second snapshot (chunks +
vectors) for RAG.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field, PrivateAttr

from twin_assets.domain.documents import Category, Platform, RepoFile, sha256_text, utcnow


class CleanedDocument(BaseModel):
    id: str  # same id as the raw document it came from (lineage)
    author_id: str
    platform: Platform
    category: Category
    link: str
    title: str | None = None
    content: str  # articles keep "#"-headings and paragraphs; posts keep line breaks
    files: list[RepoFile] = Field(default_factory=list)  # repositories: cleaned files, intact
    language: str = "unknown"
    raw_content_hash: str  # hash of the raw document this was cleaned from
    content_hash: str  # hash of the cleaned content
    cleaner_version: str = ""
    cleaned_at: datetime = Field(default_factory=utcnow)

    def to_mongo(self) -> dict:
        data = self.model_dump(mode="python")
        data["_id"] = self.id
        return data

    @classmethod
    def from_mongo(cls, data: dict) -> CleanedDocument:
        data = dict(data)
        data.pop("_id", None)
        return cls.model_validate(data)


class Chunk(BaseModel):
    """A piece of a cleaned document small enough for the embedding model (the second snapshot).

    `id` is a UUID5 of (document id, position, content hash): the same chunk of the same document
    always maps to the same Qdrant point, so re-running upserts in place instead of duplicating.
    """

    id: str
    author_id: str
    document_id: str
    category: Category
    platform: Platform
    link: str
    title: str | None = None
    position: int  # 0-based order of the chunk inside its document
    content: str  # exactly what is embedded; code chunks are verbatim source lines
    token_count: int  # measured with the embedding model's tokenizer, special tokens included
    section: str | None = None  # nearest article heading
    file_path: str | None = None  # repositories: file the chunk comes from
    symbol: str | None = None  # repositories: "class Foo", "def bar", "module" or "lines 10-40"
    language: str | None = None  # natural language of the document, or the code's language
    source_hash: str  # content hash of the cleaned document it was cut from (lineage)
    # the model a vector of this chunk is being written with (payload only; never stored or
    # compared as chunk data, so chunk ids, warehouse rows and dataset versions are unchanged)
    _embedding_model: str | None = PrivateAttr(default=None)

    @property
    def content_hash(self) -> str:
        """sha256 of exactly what is embedded (the chunk id is derived from it too)."""
        return sha256_text(self.content)

    def for_model(self, model: str) -> Chunk:
        """A copy whose `payload()` records the embedding model its vector comes from."""
        chunk = self.model_copy()
        chunk._embedding_model = model
        return chunk

    def payload(self) -> dict:
        """What a Qdrant point carries so that RAG can cite the source without a second lookup,
        plus what makes the point verifiable on its own: the chunk's content hash and (when
        known) the embedding model. A point written by a run that crashed before recording it
        is recognised as correct by these, not re-embedded."""
        data = self.model_dump(mode="json")
        data["chunk_id"] = data.pop("id")
        data["content_hash"] = self.content_hash
        if self._embedding_model is not None:
            data["embedding_model"] = self._embedding_model
        return data

    def to_mongo(self) -> dict:
        data = self.model_dump(mode="python")
        data["_id"] = self.id
        return data

    @classmethod
    def from_mongo(cls, data: dict) -> Chunk:
        data = dict(data)
        data.pop("_id", None)
        return cls.model_validate(data)


class RetrievedChunk(BaseModel):
    """One retrieval hit: the chunk's text, its similarity score and where to cite it from."""

    chunk_id: str
    score: float
    author_id: str
    document_id: str
    category: Category
    platform: Platform
    link: str
    title: str | None = None
    position: int
    content: str
    section: str | None = None
    file_path: str | None = None
    symbol: str | None = None

    @classmethod
    def from_payload(cls, point_id: str, score: float, payload: dict) -> RetrievedChunk:
        data = {k: v for k, v in payload.items() if k in cls.model_fields}
        data["chunk_id"] = str(payload.get("chunk_id") or point_id)
        data["score"] = float(score)
        return cls.model_validate(data)

    def citation(self) -> str:
        """Human-readable source: title (or link), plus file path for code."""
        where = self.title or self.link
        if self.file_path:
            where = f"{where} — {self.file_path}"
        return f"[{self.platform}] {where} <{self.link}>"


REASON_LIMIT = 300


def describe_error(exc: BaseException, limit: int = REASON_LIMIT) -> str:
    """`Type: message` on one line, at most `limit` characters: readable in a metadata table
    whatever the exception carries (a RecursionError's message, a pasted 50 kB payload)."""
    message = " ".join(str(exc).split())
    text = f"{type(exc).__name__}: {message}" if message else type(exc).__name__
    return text if len(text) <= limit else text[: limit - 1] + "…"


class DocumentFailure(BaseModel):
    """One document (or one extract of it) a stage could not process, and why.

    A failing document never sinks the author's run: it is skipped, recorded here (shown in the
    run's metadata and failing the stage's non-blocking `no_failed_documents` check), keeps what
    an earlier successful run stored for it, and is not marked processed, so the next run tries
    it again."""

    document_id: str
    link: str = ""
    stage: str  # cleaning | chunking | embedding | loading | extraction | generation | curation | ...
    reason: str  # exception type + message, bounded (see `describe_error`)
    extract_id: str = ""  # datasets: the extract that failed; '' when the whole document did

    @classmethod
    def of(
        cls, stage: str, exc: BaseException, document_id: str, link: str = "", extract_id: str = ""
    ) -> DocumentFailure:
        return cls(
            document_id=document_id,
            link=link,
            stage=stage,
            reason=describe_error(exc),
            extract_id=extract_id,
        )


def failure_table(failures: list[DocumentFailure], limit: int = 20) -> str:
    """A small markdown table of failures (document, stage, reason) for the Dagster UI."""
    if not failures:
        return "_no failed documents_"

    def cell(text: str) -> str:
        return " ".join(text.split()).replace("|", "\\|")

    rows = ["| document | stage | reason |", "|---|---|---|"]
    for f in failures[:limit]:
        where = f.link or f.document_id
        if f.extract_id:
            where += f" (extract {f.extract_id})"
        rows.append(f"| {cell(where)} | {f.stage} | {cell(f.reason)} |")
    if len(failures) > limit:
        rows.append(f"| … {len(failures) - limit} more | | |")
    return "\n".join(rows)
