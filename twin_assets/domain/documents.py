"""Raw documents as the crawlers produce them and the warehouse stores them.

Documents are grouped by *category* (what kind of writing it is), not by platform (where it was
found): fine-tuning and chunking treat a Medium article and a blog post alike, while a LinkedIn
post and a repository need their own handling. The platform is kept as metadata.
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import UTC, datetime
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, Field, field_validator, model_validator


class Category(StrEnum):
    ARTICLES = "articles"
    POSTS = "posts"
    REPOSITORIES = "repositories"


class Platform(StrEnum):
    LINKEDIN = "linkedin"
    MEDIUM = "medium"
    SUBSTACK = "substack"
    GITHUB = "github"
    WEB = "web"  # any other article URL, handled by the generic crawler


PLATFORM_CATEGORY: dict[Platform, Category] = {
    Platform.LINKEDIN: Category.POSTS,
    Platform.MEDIUM: Category.ARTICLES,
    Platform.SUBSTACK: Category.ARTICLES,
    Platform.WEB: Category.ARTICLES,
    Platform.GITHUB: Category.REPOSITORIES,
}

_SLUG = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")


def utcnow() -> datetime:
    return datetime.now(UTC)


def sha256_text(*parts: str) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(part.encode("utf-8"))
        h.update(b"\x00")
    return h.hexdigest()


def document_id(author_id: str, link: str) -> str:
    """Stable id of a document: the same author and link always map to the same id."""
    return sha256_text(author_id, link)[:24]


class SourceKind(StrEnum):
    WEB = "web"  # fetched over http(s), rendered with Playwright where needed
    GIT = "git"  # cloned with git
    EXPORT = "export"  # read from the author's own data export (LinkedIn zip, Medium/Substack dir)


class AuthorLink(BaseModel):
    """One registered source of an author's own writing.

    `platform` is only needed where the domain does not say it: a Substack or Medium
    publication on a custom domain, a local copy of a page, a data-export path.
    """

    url: str
    platform: Platform | None = None
    kind: SourceKind = SourceKind.WEB

    @field_validator("url")
    @classmethod
    def _strip(cls, v: str) -> str:
        v = v.strip()
        if not v:
            raise ValueError("empty link")
        return v


class Author(BaseModel):
    """An author owns a twin. `id` is the Dagster partition key and must be a slug."""

    id: str
    full_name: str
    links: list[AuthorLink] = Field(default_factory=list)
    registered_at: datetime = Field(default_factory=utcnow)

    @field_validator("id")
    @classmethod
    def _slug(cls, v: str) -> str:
        if not _SLUG.match(v):
            raise ValueError(
                f"author id {v!r} must be a lowercase slug (letters, digits, '-' or '_', max 64)"
            )
        return v


BlockKind = Literal["title", "paragraph", "list_item", "code", "table", "quote"]


class Block(BaseModel):
    """A structural element kept by extraction (a heading, a paragraph, a code block, ...)."""

    kind: BlockKind
    text: str
    level: int | None = None  # heading level for titles
    language: str | None = None  # for code blocks, when known


class RepoFile(BaseModel):
    """A text file of a repository, kept byte-for-byte (whitespace matters in code)."""

    path: str
    content: str
    language: str | None = None
    size: int = 0


class RawDocument(BaseModel):
    """A crawled document. One per (author, link); the warehouse keys on exactly that."""

    id: str = ""
    author_id: str
    platform: Platform
    category: Category
    link: str
    source: SourceKind = SourceKind.WEB
    title: str | None = None
    content: str
    blocks: list[Block] = Field(default_factory=list)
    files: list[RepoFile] = Field(default_factory=list)
    published_at: datetime | None = None
    fetched_at: datetime = Field(default_factory=utcnow)
    content_hash: str = ""
    # The registered AuthorLink.url that produced this document (a listing, a profile, an
    # export): when that link leaves the registry its documents are pruned. Not part of the
    # hash, which is about what the author wrote. None for documents stored before it existed.
    source_link: str | None = None

    @model_validator(mode="after")
    def _derive_ids(self) -> RawDocument:
        if not self.id:
            self.id = document_id(self.author_id, self.link)
        if not self.content_hash:
            self.content_hash = self.compute_hash()
        return self

    def compute_hash(self) -> str:
        """Hash of what the author wrote, not of when we fetched it: an unchanged page hashes the same."""
        payload = json.dumps(
            {
                "title": self.title or "",
                "content": self.content,
                "files": [(f.path, f.content) for f in self.files],
                "platform": str(self.platform),
                "category": str(self.category),
            },
            ensure_ascii=False,
            sort_keys=True,
        )
        return sha256_text(payload)

    def to_mongo(self) -> dict:
        data = self.model_dump(mode="python")
        data["_id"] = self.id
        return data

    @classmethod
    def from_mongo(cls, data: dict) -> RawDocument:
        data = dict(data)
        data.pop("_id", None)
        return cls.model_validate(data)


FailureKind = Literal[
    "http_error",
    "timeout",
    "refused_address",
    "unsupported_scheme",
    "no_content",
    "login_wall",
    "too_large",
    "not_html",  # served as a page, but the bytes are a binary file (PDF, ZIP, image, ...)
    "malformed",
    "network_error",
    "git_error",
    "export_error",
    "error",
]


class CrawlFailure(BaseModel):
    """Why one link could not be stored. Recorded; never stops the other links."""

    author_id: str
    link: str
    kind: FailureKind
    reason: str
    platform: Platform | None = None
    failed_at: datetime = Field(default_factory=utcnow)

    def to_mongo(self) -> dict:
        data = self.model_dump(mode="python")
        data["_id"] = document_id(self.author_id, self.link)
        return data


class CrawlReport(BaseModel):
    """What crawling one author produced: documents to store and failures to record."""

    author_id: str
    documents: list[RawDocument] = Field(default_factory=list)
    failures: list[CrawlFailure] = Field(default_factory=list)


class WriteStats(BaseModel):
    """Outcome of an idempotent upsert batch."""

    new: int = 0
    updated: int = 0
    unchanged: int = 0
    new_ids: list[str] = Field(default_factory=list)
    updated_ids: list[str] = Field(default_factory=list)
