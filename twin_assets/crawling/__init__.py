"""Data collection: crawl everything an author registered into `RawDocument`s.

`crawl_author` is the one entry point (the `raw_documents` asset calls it). It expands every
registered link (profiles, archives, feeds, GitHub users, exports) into items, crawls each with
the crawler the dispatcher picks, and records every failure as a `CrawlFailure` with a kind
(http_error, timeout, refused_address, login_wall, ...) while carrying on with the other links.
It never raises for a bad link. One Chromium is started per call, lazily, only if some page
needs rendering.

Results are handed out as each item finishes (`on_document`, `on_failure`), not only in the
report returned at the end: the collection stores them at once, so a crash, a kill or a page
that outlives every limit loses at most the item in flight, never the work already done.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from twin_assets.crawling.base import BaseCrawler, CrawlContext, CrawlTarget
from twin_assets.crawling.dispatcher import CrawlerRegistry, default_registry
from twin_assets.crawling.errors import CrawlError
from twin_assets.crawling.fetch import PageFetcher
from twin_assets.crawling.settings import CrawlSettings
from twin_assets.crawling.urls import normalize_url
from twin_assets.domain.documents import (
    Author,
    AuthorLink,
    CrawlFailure,
    CrawlReport,
    Platform,
    RawDocument,
    SourceKind,
)

__all__ = ["CrawlSettings", "CrawlerRegistry", "crawl_author", "default_registry"]


def _link_key(link: AuthorLink) -> str:
    if link.kind == SourceKind.WEB and link.url.lower().startswith(("http://", "https://")):
        return normalize_url(link.url)
    return f"{link.kind}:{link.url}"


def crawl_author(
    author: Author,
    settings: CrawlSettings,
    log: logging.Logger | None = None,
    *,
    registry: CrawlerRegistry | None = None,
    browser=None,
    on_document: Callable[[RawDocument], None] | None = None,
    on_failure: Callable[[CrawlFailure], None] | None = None,
) -> CrawlReport:
    """Crawl all of one author's registered links. `browser` lets a caller share a running
    Chromium (tests); otherwise one is started on demand and closed before returning.

    `on_document` and `on_failure` are called with each document and failure as soon as it
    is known (they also end up in the returned report). An exception they raise (the store is
    down) is not a crawl failure: it ends the crawl, since nothing more could be kept."""
    log = log or logging.getLogger(__name__)
    registry = registry or default_registry()
    report = CrawlReport(author_id=author.id)
    started = time.monotonic()

    def fail(link: str, exc: BaseException, platform: Platform | None) -> None:
        if isinstance(exc, CrawlError):
            kind, reason = exc.kind, exc.reason
        else:  # a bug or an unexpected library error: recorded, never fatal for the others
            kind, reason = "error", f"{type(exc).__name__}: {exc}"
            log.exception("unexpected error crawling %s", link)
        log.warning("crawl failed for %s [%s]: %s", link, kind, reason)
        failure = CrawlFailure(
            author_id=author.id, link=link, kind=kind, reason=reason[:2000], platform=platform
        )
        report.failures.append(failure)
        if on_failure is not None:
            on_failure(failure)

    seen_links: set[str] = set()
    seen_items: set[str] = set()
    with PageFetcher(settings, log, browser=browser) as fetcher:
        ctx = CrawlContext(author=author, settings=settings, fetcher=fetcher, log=log)
        for link in author.links:
            key = _link_key(link)
            if key in seen_links:
                continue
            seen_links.add(key)
            platform = link.platform
            try:
                crawler: BaseCrawler = registry.for_link(link)
                platform = crawler.platform
                targets: list[CrawlTarget] = crawler.expand(link, ctx)
            except Exception as exc:
                fail(link.url, exc, platform)
                continue
            for target in targets:
                item_key = normalize_url(target.url) if "://" in target.url else target.url
                if item_key in seen_items:
                    continue
                seen_items.add(item_key)
                try:
                    document = crawler.crawl(target, ctx)
                except Exception as exc:
                    fail(target.url, exc, crawler.platform)
                    continue
                document.source_link = link.url  # lets collection prune removed links
                report.documents.append(document)
                if on_document is not None:  # outside the try: a store error is no crawl failure
                    on_document(document)
        log.info(
            "crawled %s: %d documents, %d failures in %.1fs (%d pages rendered)",
            author.id,
            len(report.documents),
            len(report.failures),
            time.monotonic() - started,
            fetcher.pages_rendered,
        )
    return report
