"""Any other article URL: a blog post, or a blog index that expands to its posts.

A registered page is treated as an index when its main content links to at least two deeper
pages under its own path (`/blog/` -> `/blog/<slug>/`); otherwise it is the article itself and
the page fetched to decide is reused, not fetched again. An index that runs scripts may load
older posts as it is scrolled, so it is then rendered and scrolled too (`fetch_listing`).
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from twin_assets.crawling.base import CrawlContext, CrawlTarget
from twin_assets.crawling.clutter import remove_clutter
from twin_assets.crawling.page import FetchedPage
from twin_assets.crawling.soup import soup_of
from twin_assets.crawling.urls import page_links, same_site
from twin_assets.crawling.web import WebArticleCrawler
from twin_assets.domain.documents import AuthorLink, Platform

_NOT_POSTS = frozenset({"tag", "tags", "category", "categories", "archive", "archives", "about",
                        "feed", "page", "author", "authors", "search", "privacy", "rss", "assets",
                        "static", "subscribe", "contact"})
_NOT_PAGE_EXT = re.compile(r"\.(?:xml|css|js|json|png|jpe?g|gif|svg|webp|ico|pdf|zip|mp[34]|woff2?)$",
                           re.IGNORECASE)


class GenericArticleCrawler(WebArticleCrawler):
    platform = Platform.WEB
    prefer_browser = False
    content_selectors = ("article .post-content", "article .entry-content", "article",
                         "[itemprop=articleBody]", ".post-content", ".entry-content", "main",
                         "[role=main]")
    clutter_selectors = (".post-meta", ".post-footer", ".tags", ".author-bio", ".toc",
                         ".table-of-contents", ".reading-time")
    title_selectors = ("article h1", "h1.post-title", "h1.entry-title", "main h1")

    def expand(self, link: AuthorLink, ctx: CrawlContext) -> list[CrawlTarget]:
        page = self.fetch(link.url, ctx)
        candidates = self.index_candidates(page, link)
        if len(candidates) < 2:
            return [CrawlTarget(url=link.url, link=link, page=page)]
        # An index: it may load older posts on scroll (the article check above fetched it
        # unscrolled, as articles must be), so it is fetched again as a listing if need be.
        listing = self.fetch_listing(link.url, ctx, first=page)
        if listing is not page:
            more = self.index_candidates(listing, link)
            candidates = more + [u for u in candidates if u not in more]
        ctx.log.info("%s is an index of %d posts (%d scroll rounds)", page.final_url,
                     len(candidates), listing.scroll_rounds)
        return [CrawlTarget(url=u, link=link) for u in candidates[: ctx.settings.max_listing_items]]

    @staticmethod
    def index_candidates(page: FetchedPage, link: AuthorLink) -> list[str]:
        """Links in the page's main content to deeper pages under its own directory."""
        base_path = urlsplit(page.final_url).path
        base_dir = base_path if base_path.endswith("/") else base_path.rsplit("/", 1)[0] + "/"

        soup = soup_of(page.html)
        scope = soup.select_one("main") or soup.select_one("[role=main]") or soup.body or soup
        remove_clutter(scope, ["header"])
        candidates: list[str] = []
        for url in page_links(str(scope), page.final_url):
            path = urlsplit(url).path
            rest = [s for s in path[len(base_dir):].split("/") if s] if path.startswith(base_dir) else []
            if (same_site(url, link.url) and rest and rest[0].lower() not in _NOT_POSTS
                    and not _NOT_PAGE_EXT.search(path) and url not in candidates):
                candidates.append(url)
        return candidates
