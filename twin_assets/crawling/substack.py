"""Substack: a publication's /archive (or its home page) expands to its /p/<slug> posts.

Substack serves posts fully rendered, so plain HTTP is enough (Chromium is the fallback when a
page comes back empty). The archive shows only its latest posts and loads older ones as the
reader scrolls, so it is rendered and scrolled (`fetch_listing`) whenever the browser may be used. The body is `div.available-content div.body.markup`; subscribe widgets,
share/like bars and comments are clutter.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from twin_assets.crawling.base import CrawlContext, CrawlTarget
from twin_assets.crawling.urls import path_segments
from twin_assets.crawling.web import WebArticleCrawler
from twin_assets.domain.documents import AuthorLink, Platform


class SubstackCrawler(WebArticleCrawler):
    platform = Platform.SUBSTACK
    domains = ("substack.com",)
    prefer_browser = False
    content_selectors = (
        "div.available-content div.body.markup",
        "div.body.markup",
        "div.available-content",
        "article",
    )
    title_selectors = ("h1.post-title", "article h1")
    subtitle_selectors = ("h3.subtitle",)
    clutter_selectors = (
        ".subscription-widget-wrap",
        ".subscription-widget",
        ".subscribe-widget",
        ".button-wrapper",
        ".post-ufi",
        ".header-anchor-parent",
        ".paywall",
        ".captioned-button-wrap",
        ".share-dialog",
        ".comments-section",
    )

    @staticmethod
    def listing_prefix(url: str) -> str | None:
        """Path prefix of the publication if `url` is its archive or home page."""
        segments = path_segments(url)
        if "p" in segments:
            return None
        if segments and segments[-1] == "archive":
            segments = segments[:-1]
        elif segments:
            return None  # some other page of the publication: crawl it as it is
        return "/" + "".join(s + "/" for s in segments)

    def expand(self, link: AuthorLink, ctx: CrawlContext) -> list[CrawlTarget]:
        prefix = self.listing_prefix(link.url)
        if prefix is None:
            return [CrawlTarget(url=link.url, link=link)]
        page = self.fetch_listing(link.url, ctx)

        def is_post(url: str) -> bool:
            path = urlsplit(url).path
            if not path.startswith(prefix + "p/"):
                return False
            rest = [s for s in path[len(prefix) + 2 :].split("/") if s]
            return len(rest) == 1

        return self.listing_items(page, link, is_post, ctx)
