"""Data collection for one author: crawl the registered links, store what came back, record
what did not. The `raw_documents` asset is a thin wrapper over `collect_author`."""

from __future__ import annotations

import logging
from collections import Counter

from pydantic import BaseModel, Field

from resources.warehouse import DocumentStore
from twin_assets.crawling import crawl_author
from twin_assets.domain.documents import Author, CrawlFailure, RawDocument, WriteStats, sha256_text
from twin_assets.crawling.settings import CrawlSettings


class CollectionResult(BaseModel):
    author_id: str
    stats: WriteStats
    documents: list[RawDocument] = Field(default_factory=list)
    failures: list[CrawlFailure] = Field(default_factory=list)
    stored_hashes: dict[str, str] = Field(default_factory=dict)

    @property
    def data_version(self) -> str:
        """Changes exactly when the author's stored documents change (new, edited, removed)."""
        return sha256_text(*(f"{k}={v}" for k, v in sorted(self.stored_hashes.items())))[:32]


def collect_author(
    author: Author,
    settings: CrawlSettings,
    store: DocumentStore,
    log: logging.Logger | None = None,
) -> CollectionResult:
    """Crawl and upsert idempotently. A link that fails keeps its previously stored document:
    a transient outage must never delete what we already have."""
    store.upsert_author(author)
    report = crawl_author(author, settings, log=log)
    stats = store.upsert_documents(report.documents)
    store.record_failures(author.id, report.failures)
    store.clear_failures(author.id, [d.link for d in report.documents])
    return CollectionResult(
        author_id=author.id,
        stats=stats,
        documents=report.documents,
        failures=report.failures,
        stored_hashes=store.document_hashes(author.id),
    )


def _md_table(headers: list[str], rows: list[list[object]]) -> str:
    def cell(value: object) -> str:
        return str(value).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def collection_metadata(result: CollectionResult, preview_rows: int = 10) -> dict:
    """What the UI shows for a crawl: counts, outcome, failures with reasons, a preview."""
    by_platform = Counter(str(d.platform) for d in result.documents)
    by_category = Counter(str(d.category) for d in result.documents)
    preview = [
        [
            d.category,
            d.platform,
            (d.title or "")[:60],
            d.link,
            len(d.content.split()),
            "new"
            if d.id in result.stats.new_ids
            else "updated"
            if d.id in result.stats.updated_ids
            else "unchanged",
        ]
        for d in result.documents[:preview_rows]
    ]
    return {
        "documents_crawled": len(result.documents),
        "documents_stored_total": len(result.stored_hashes),
        "new": result.stats.new,
        "updated": result.stats.updated,
        "unchanged": result.stats.unchanged,
        "failed": len(result.failures),
        "by_platform": dict(sorted(by_platform.items())),
        "by_category": dict(sorted(by_category.items())),
        "failures": _md_table(
            ["link", "kind", "reason"],
            [[f.link, f.kind, f.reason[:200]] for f in result.failures],
        )
        if result.failures
        else "none",
        "preview": _md_table(["category", "platform", "title", "link", "words", "status"], preview),
    }
