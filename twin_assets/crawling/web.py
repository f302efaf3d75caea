"""Shared machinery of the web crawlers: fetch (plain HTTP or Chromium), extract, list items.

Listing pages (profiles, archives, feeds, blog indexes) are fetched with `fetch_listing`, which
renders and scrolls them in Chromium whenever they could load more items on scroll, so that
items beyond the first batch are found too; article pages are never scrolled.

A page whose served HTML shows nothing, or only a placeholder ("Loading…"), is built by
JavaScript: it is rendered in Chromium (which waits for the content, see `settle`) before it is
judged, and if it still shows only the placeholder it is reported as having no content, never
stored as "Loading…".
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import ClassVar

from twin_assets.crawling.base import BaseCrawler, CrawlContext, CrawlTarget
from twin_assets.crawling.errors import CrawlError, NoContent
from twin_assets.crawling.extract import Extracted, extract_article
from twin_assets.crawling.page import FetchedPage
from twin_assets.crawling.settle import is_placeholder
from twin_assets.crawling.soup import soup_of
from twin_assets.crawling.urls import normalize_url, page_links, same_site
from twin_assets.domain.documents import AuthorLink, Category, RawDocument

# <script> types a browser runs (no type, JavaScript MIME types, modules); JSON-LD and other
# data blocks never run, so they cannot load anything.
_RUNNABLE_SCRIPT_TYPES = re.compile(r"^$|javascript|ecmascript|^module$", re.IGNORECASE)


def runs_scripts(html: str) -> bool:
    """Whether the page has any script a browser would run: without one, scrolling it
    cannot load more items, so it is not worth rendering for that."""
    return any(
        _RUNNABLE_SCRIPT_TYPES.search(str(tag.get("type") or "").strip())
        for tag in soup_of(html).find_all("script")
    )


_INVISIBLE = ("script", "style", "noscript", "template", "head")


def visible_text(html: str) -> str:
    """The text a reader sees on the page (scripts, styles, templates left out), on one line."""
    soup = soup_of(html)
    body = soup.body or soup
    for node in body.find_all(_INVISIBLE):
        node.decompose()
    return " ".join(body.get_text(" ", strip=True).split())


def shows_placeholder(html: str) -> bool:
    """Whether a page as served shows no text, or only a placeholder ("Loading…"): its content
    is then built by JavaScript and the page must be rendered before it is judged."""
    return is_placeholder(visible_text(html))


def body_text(extracted: Extracted) -> str:
    return " ".join(b.text for b in extracted.blocks if b.kind != "title")


class WebArticleCrawler(BaseCrawler):
    """A crawler for pages whose main content sits in a known container."""

    prefer_browser: ClassVar[bool] = False  # JS-heavy platforms render in Chromium
    wait_for: ClassVar[str | None] = None
    content_selectors: ClassVar[tuple[str, ...]] = ()
    clutter_selectors: ClassVar[tuple[str, ...]] = ()
    title_selectors: ClassVar[tuple[str, ...]] = ()
    subtitle_selectors: ClassVar[tuple[str, ...]] = ()
    listing_scope: ClassVar[str | None] = None  # CSS scope for item links on a listing page
    # readability-lxml locates the content (pages of no known platform); the selectors above
    # are then the fallback (see `extract_article`)
    locate_main: ClassVar[bool] = False

    # -- fetching -----------------------------------------------------------------------------
    def fetch(
        self, url: str, ctx: CrawlContext, *, browser: bool | None = None, scroll: bool = False
    ) -> FetchedPage:
        prefer = self.prefer_browser if browser is None else browser
        page = ctx.fetcher.fetch(url, prefer_browser=prefer, wait_for=self.wait_for, scroll=scroll)
        self.check_page(page)
        return page

    def fetch_listing(self, url: str, ctx: CrawlContext, *, first: FetchedPage | None = None) -> FetchedPage:
        """A listing page with every batch of items it loads on scroll.

        The page is rendered and scrolled in Chromium unless the browser is off
        (`browser_mode` "never"), scrolling is off (`max_scroll_rounds` 0), or the page as
        first fetched (`first`, or a plain fetch for crawlers that do not prefer the browser)
        runs no script, which rules out loading more. If that render fails, the page as
        first fetched is kept: its items are better than none.
        """
        s = ctx.settings
        if s.browser_mode == "never" or s.max_scroll_rounds == 0:
            return first or self.fetch(url, ctx)
        if first is None:
            if s.browser_mode == "always" or self.prefer_browser:
                return self.fetch(url, ctx, browser=True, scroll=True)
            first = self.fetch(url, ctx)
        if first.scroll_rounds or not runs_scripts(first.html):
            return first
        try:
            return self.fetch(url, ctx, browser=True, scroll=True)
        except CrawlError as exc:
            ctx.log.warning(
                "could not scroll listing %s (%s: %s); keeping its first batch", url, exc.kind, exc.reason
            )
            return first

    def check_page(self, page: FetchedPage) -> None:
        """Hook: raise a typed error for pages that are not the author's content (login walls)."""

    def category_for(self, url: str) -> Category | None:
        """Hook: the category of the item at `url` when it is not the platform's usual one."""
        return None

    def rendered_if_needed(self, page: FetchedPage, ctx: CrawlContext) -> FetchedPage:
        """`page` itself, or, when its served HTML shows only a placeholder and the browser
        may be used, the page rendered in Chromium (which waits for its content)."""
        if page.via != "http" or ctx.settings.browser_mode == "never" or not shows_placeholder(page.html):
            return page
        ctx.log.info("%s shows no content in its HTML; rendering it in Chromium", page.final_url)
        return self.fetch(page.url, ctx, browser=True)

    # -- extraction ---------------------------------------------------------------------------
    def extract(self, page: FetchedPage) -> Extracted:
        return extract_article(
            page.html,
            content_selectors=self.content_selectors,
            clutter_selectors=self.clutter_selectors,
            title_selectors=self.title_selectors,
            subtitle_selectors=self.subtitle_selectors,
            locate_main=self.locate_main,
        )

    def crawl(self, target: CrawlTarget, ctx: CrawlContext) -> RawDocument:
        page = target.page or self.fetch(target.url, ctx)
        extracted = self.extract(page)
        if (
            is_placeholder(body_text(extracted))
            and page.via == "http"
            and ctx.settings.browser_mode != "never"
        ):
            # Nothing, or only "Loading…", in the served HTML: the page builds its content
            # with JavaScript.
            ctx.log.info("no content in plain HTML of %s; rendering it in Chromium", target.url)
            page = self.fetch(target.url, ctx, browser=True)
            extracted = self.extract(page)
        if is_placeholder(body_text(extracted)):
            soup = soup_of(page.html)
            title = soup.title.get_text() if soup.title else ""
            if "<" in title and len(title) > 200:
                raise CrawlError(
                    f"{page.final_url} is malformed: an unclosed <title> swallows the "
                    "page, so a browser shows no text either",
                    kind="malformed",
                )
            shown = visible_text(page.html)
            if shown and is_placeholder(shown):
                raise NoContent(
                    f"{page.final_url} shows only a placeholder ({shown[:60]!r}) "
                    f"after {ctx.settings.page_timeout_s:g}s: its content is built by "
                    "JavaScript that did not finish"
                    + ("" if page.via == "browser" else " (the browser is off)")
                )
            raise NoContent(f"no extractable text on {page.final_url}")
        return self.make_document(
            ctx,
            target,
            title=extracted.title,
            content=extracted.markdown,
            blocks=extracted.blocks,
            published_at=extracted.published_at,
            category=self.category_for(target.url),
        )

    # -- listings -----------------------------------------------------------------------------
    def listing_items(
        self, page: FetchedPage, link: AuthorLink, is_item: Callable[[str], bool], ctx: CrawlContext
    ) -> list[CrawlTarget]:
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
        ctx.log.info(
            "%s: %d items listed on %s (%d scroll rounds)",
            type(self).__name__,
            len(items),
            page.final_url,
            page.scroll_rounds,
        )
        return items
