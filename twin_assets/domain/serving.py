"""What the inference service keeps in the warehouse: API key records and prompt logs.

Both live here (not in `twin_assets.serving`) because the warehouse implements their stores and
a resource never imports the service's logic: the records are shared vocabulary, like the
documents and chunks in the other domain modules.

A key record never holds the key itself, only its hash and a short prefix that is safe to show
in listings; a prompt log holds the key's id, never the key.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated

from pydantic import AfterValidator, BaseModel, Field

from twin_assets.domain.documents import utcnow


def _utc(value: datetime) -> datetime:
    """Datetimes come back from a warehouse naive (some servers drop the zone): they are UTC."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


UtcDatetime = Annotated[datetime, AfterValidator(_utc)]

STAGES: tuple[str, ...] = ("self_query", "expansion", "search", "rerank", "generation", "total")
"""The stages a request's latency is broken into (`PromptLog.timings_ms` keys); `total` is the
whole request as the service saw it."""


def new_id() -> str:
    return uuid.uuid4().hex


class ApiKeyRecord(BaseModel):
    """One API key as stored: its SHA-256 hash, never the key."""

    id: str
    name: str
    prefix: str = Field(description="the key's first characters: tells keys apart in listings")
    hash: str = Field(description="hex SHA-256 of the key")
    authors: list[str] | None = Field(default=None, description="authors it may ask; None: every author")
    created_at: UtcDatetime = Field(default_factory=utcnow)
    revoked_at: UtcDatetime | None = None

    @property
    def active(self) -> bool:
        return self.revoked_at is None


class RetrievedRef(BaseModel):
    """A retrieved chunk as a prompt log remembers it: which chunk, from which document, how
    well it scored (the text itself is in the warehouse already)."""

    chunk_id: str
    document_id: str
    score: float


class PromptLog(BaseModel):
    """One request to the service, as prompt monitoring records it."""

    id: str = Field(default_factory=new_id)
    at: UtcDatetime = Field(default_factory=utcnow)
    author_id: str = ""
    model: str = Field(default="", description="the model as requested: `<author>` or `<author>@<version>`")
    model_version: str | None = None
    index_version: str | None = None
    route: str = ""
    question: str = ""
    retrieved: list[RetrievedRef] = Field(default_factory=list)
    answer: str = ""
    timings_ms: dict[str, float] = Field(default_factory=dict, description=f"per stage: {', '.join(STAGES)}")
    prompt_tokens: int = 0
    completion_tokens: int = 0
    key_id: str | None = Field(default=None, description="the API key's id, never the key")
    status: int = 200
    error: str | None = None
    finish_reason: str | None = None
