"""Shared machinery of the web crawlers: fetch (plain HTTP or Chromium), extract, list items."""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar
from urllib.parse import urlsplit

from twin_assets.crawling.base import BaseCrawler, CrawlContext, CrawlTarget
from twin_assets.crawling.errors import CrawlError, NoContent
from twin_assets.crawling.extract import (
    Extracted,
    extract_article,
    normalize_url,
    page_links,
    same_site,
    soup_of,
)
from twin_assets.crawling.fetch import FetchedPage
from twin_assets.domain.documents import AuthorLink, RawDocument


class WebArticleCrawler(BaseCrawler):
    """A crawler for pages whose main content sits in a known container."""

    prefer_browser: ClassVar[bool] = False  # JS-heavy platforms render in Chromium
    wait_for: ClassVar[str | None] = None
    content_selectors: ClassVar[tuple[str, ...]] = ()
    clutter_selectors: ClassVar[tuple[str, ...]] = ()
    title_selectors: ClassVar[tuple[str, ...]] = ()
    subtitle_selectors: ClassVar[tuple[str, ...]] = ()
    listing_scope: ClassVar[str | None] = None  # CSS scope for item links on a listing page

    # -- fetching -----------------------------------------------------------------------------
    def fetch(self, url: str, ctx: CrawlContext, *, browser: bool | None = None) -> FetchedPage:
        prefer = self.prefer_browser if browser is None else browser
        page = ctx.fetcher.fetch(url, prefer_browser=prefer, wait_for=self.wait_for)
        self.check_page(page)
        return page

    def check_page(self, page: FetchedPage) -> None:
        """Hook: raise a typed error for pages that are not the author's content (login walls)."""

    # -- extraction ---------------------------------------------------------------------------
    def extract(self, page: FetchedPage) -> Extracted:
        return extract_article(
            page.html,
            content_selectors=self.content_selectors,
            clutter_selectors=self.clutter_selectors,
            title_selectors=self.title_selectors,
            subtitle_selectors=self.subtitle_selectors,
        )

    def crawl(self, target: CrawlTarget, ctx: CrawlContext) -> RawDocument:
        page = target.page or self.fetch(target.url, ctx)
        extracted = self.extract(page)
        if extracted.word_count == 0 and page.via == "http" and ctx.settings.browser_mode == "auto":
            # Nothing in the served HTML: the page may build its content with JavaScript.
            ctx.log.info("no content in plain HTML of %s; rendering it in Chromium", target.url)
            page = self.fetch(target.url, ctx, browser=True)
            extracted = self.extract(page)
        if extracted.word_count == 0:
            soup = soup_of(page.html)
            title = soup.title.get_text() if soup.title else ""
            if "<" in title and len(title) > 200:
                raise CrawlError(f"{page.final_url} is malformed: an unclosed <title> swallows the "
                                 "page, so a browser shows no text either", kind="malformed")
            raise NoContent(f"no extractable text on {page.final_url}")
        return self.make_document(
            ctx,
            target,
            title=extracted.title,
            content=extracted.markdown,
            blocks=extracted.blocks,
            published_at=extracted.published_at,
        )

    # -- listings -----------------------------------------------------------------------------
    def listing_items(self, page: FetchedPage, link: AuthorLink,
                      is_item: Callable[[str], bool], ctx: CrawlContext) -> list[CrawlTarget]:
        """Item links of a listing page, on the registered link's own host only."""
        items: list[CrawlTarget] = []
        for url in page_links(page.html, page.final_url, self.listing_scope):
            if not (same_site(url, link.url) and same_site(url, page.final_url)):
                continue  # never leave the author's registered space
            if normalize_url(url) == normalize_url(page.final_url) or not is_item(url):
                continue
            items.append(CrawlTarget(url=url, link=link))
            if len(items) >= ctx.settings.max_listing_items:
                break
        if not items:
            raise NoContent(f"listing {page.final_url} has no items to crawl")
        ctx.log.info("%s: %d items listed on %s", type(self).__name__, len(items), page.final_url)
        return items


def path_segments(url: str) -> list[str]:
    return [s for s in urlsplit(url).path.split("/") if s]
