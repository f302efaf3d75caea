"""Data collection for one author: crawl the registered links, store what came back, record
what did not. The `raw_documents` asset is a thin wrapper over `collect_author`.

Every document and failure is written to the store the moment its link finishes, so a crawl
that is killed, crashes or hangs keeps everything done before it. The run's metadata carries a
bounded summary of the failures (counts by kind, the first rows with short reasons); the full
list with full reasons is in the warehouse (`DocumentStore.list_failures`).
"""

from __future__ import annotations

import logging
from collections import Counter

from pydantic import BaseModel, Field

from twin_assets.crawling import crawl_author
from twin_assets.crawling.settings import CrawlSettings
from twin_assets.domain.documents import Author, CrawlFailure, RawDocument, WriteStats, sha256_text
from twin_assets.domain.stores import DocumentStore


class CollectionResult(BaseModel):
    author_id: str
    stats: WriteStats
    documents: list[RawDocument] = Field(default_factory=list)
    failures: list[CrawlFailure] = Field(default_factory=list)
    stored_hashes: dict[str, str] = Field(default_factory=dict)
    removed_ids: list[str] = Field(default_factory=list)

    @property
    def removed(self) -> int:
        return len(self.removed_ids)

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
    a transient outage must never delete what we already have.

    What does get deleted is what the author took out of the registry: documents whose
    `source_link` is no longer one of the author's links (cleaning, chunks and vectors follow
    downstream). A registered link whose crawl failed keeps its documents, and documents stored
    before `source_link` was recorded (None) are kept, since nothing says where they came from.

    The failure table mirrors the latest crawl: a link that did not fail this time (it
    succeeded, or its listing no longer yields it, or it left the registry) loses its old row.

    Documents and failures are upserted one by one as the crawl produces them; pruning and
    clearing stale failure rows happen once the crawl is over (a crawl cut short prunes
    nothing, since it did not see every link).
    """
    store.upsert_author(author)
    outcome: dict[str, str] = {}  # document id -> new / updated / unchanged in this run

    def store_document(document: RawDocument) -> None:
        written = store.upsert_documents([document])
        for status, ids in (("new", written.new_ids), ("updated", written.updated_ids)):
            for doc_id in ids:  # a document written twice in one run stays "new" if it was
                outcome[doc_id] = "new" if outcome.get(doc_id) == "new" else status
        outcome.setdefault(document.id, "unchanged")

    def store_failure(failure: CrawlFailure) -> None:
        store.record_failures(author.id, [failure])

    report = crawl_author(author, settings, log=log, on_document=store_document, on_failure=store_failure)
    stats = WriteStats(
        new_ids=[i for i, v in outcome.items() if v == "new"],
        updated_ids=[i for i, v in outcome.items() if v == "updated"],
    )
    stats.new, stats.updated = len(stats.new_ids), len(stats.updated_ids)
    stats.unchanged = len(outcome) - stats.new - stats.updated
    registered = {link.url for link in author.links}
    removed = sorted(
        doc_id
        for doc_id, source in store.document_sources(author.id).items()
        if source is not None and source not in registered
    )
    store.delete_documents(author.id, removed)
    if removed and log:
        log.info("removed %d documents of links no longer registered for %s", len(removed), author.id)
    failed_now = {f.link for f in report.failures}
    store.clear_failures(author.id, {f.link for f in store.list_failures(author.id)} - failed_now)
    return CollectionResult(
        author_id=author.id,
        stats=stats,
        documents=report.documents,
        failures=report.failures,
        stored_hashes=store.document_hashes(author.id),
        removed_ids=removed,
    )


def _md_table(headers: list[str], rows: list[list[object]]) -> str:
    def cell(value: object) -> str:
        return str(value).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


FAILURE_ROWS = 20  # failures listed in the run's metadata; all of them are in the warehouse
REASON_CHARS = 300


def _short(text: str, limit: int = REASON_CHARS) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def failure_summary(failures: list[CrawlFailure], rows: int = FAILURE_ROWS) -> dict:
    """Failures as the run's metadata shows them: bounded whatever their number (counts by
    kind, the first `rows` as a table with reasons cut to ~300 characters)."""
    if not failures:
        return {"failures_by_kind": {}, "failures": "none"}
    table = _md_table(
        ["link", "kind", "reason"], [[_short(f.link, 200), f.kind, _short(f.reason)] for f in failures[:rows]]
    )
    if len(failures) > rows:
        table += (
            f"\n\n… and {len(failures) - rows} more; every failure, with its full reason, "
            "is in the warehouse's crawl failures."
        )
    return {"failures_by_kind": dict(sorted(Counter(f.kind for f in failures).items())), "failures": table}


def collection_metadata(result: CollectionResult, preview_rows: int = 10) -> dict:
    """What the UI shows for a crawl: counts, outcome, a bounded failure summary, a preview."""
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
        "removed": result.removed,
        "failed": len(result.failures),
        "by_platform": dict(sorted(by_platform.items())),
        "by_category": dict(sorted(by_category.items())),
        **failure_summary(result.failures),
        "preview": _md_table(["category", "platform", "title", "link", "words", "status"], preview),
    }
