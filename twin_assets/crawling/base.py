"""The crawler contract: `expand` a registered link into items, `crawl` one item into a document.

A registered link may stand for many documents (a Medium profile, a Substack archive, a GitHub
user, a LinkedIn export): `expand` lists them, staying inside the author's own registered space;
`crawl` turns one of them into a `RawDocument` or raises a typed `CrawlError`.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar

from twin_assets.crawling.fetch import PageFetcher
from twin_assets.crawling.page import FetchedPage
from twin_assets.crawling.settings import CrawlSettings
from twin_assets.domain.documents import (
    PLATFORM_CATEGORY,
    Author,
    AuthorLink,
    Block,
    Category,
    Platform,
    RawDocument,
    RepoFile,
    SourceKind,
)


@dataclass
class CrawlContext:
    """What every crawler may use during one author's crawl."""

    author: Author
    settings: CrawlSettings
    fetcher: PageFetcher
    log: logging.Logger


@dataclass
class CrawlTarget:
    """One item to crawl: a URL plus whatever expansion already learned about it."""

    url: str
    link: AuthorLink
    page: FetchedPage | None = None  # fetched during expansion; not fetched twice
    payload: Any = None  # an export row, an exported file's HTML, ...
    meta: dict[str, Any] = field(default_factory=dict)


class BaseCrawler(ABC):
    platform: ClassVar[Platform]
    domains: ClassVar[tuple[str, ...]] = ()  # registered domains; subdomains match too
    source: ClassVar[SourceKind] = SourceKind.WEB

    def expand(self, link: AuthorLink, ctx: CrawlContext) -> list[CrawlTarget]:
        """Items behind a registered link; by default the link is the item."""
        return [CrawlTarget(url=link.url, link=link)]

    @abstractmethod
    def crawl(self, target: CrawlTarget, ctx: CrawlContext) -> RawDocument: ...

    def make_document(
        self,
        ctx: CrawlContext,
        target: CrawlTarget,
        *,
        content: str,
        title: str | None = None,
        blocks: list[Block] | None = None,
        files: list[RepoFile] | None = None,
        published_at=None,
        link: str | None = None,
        category: Category | None = None,
    ) -> RawDocument:
        """The document of one crawled item; `category` overrides the platform's usual one
        (a LinkedIn Pulse article is an article, not a post)."""
        return RawDocument(
            author_id=ctx.author.id,
            platform=self.platform,
            category=category or PLATFORM_CATEGORY[self.platform],
            link=link or target.url,
            source=self.source,
            title=title,
            content=content,
            blocks=blocks or [],
            files=files or [],
            published_at=published_at,
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"
