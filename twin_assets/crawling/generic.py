"""Any other article URL: a blog post, or a blog index that expands to its posts.

A registered page is crawled as the article it is unless it is shaped like a listing (see
`listing.read_listing`: repeated items of one shape, each one link to a post-like page and
little text, with little prose of its own or an index path). Links inside sentences and link
groups of site chrome (menus, headers, footers, related/trending rails, tag and share lists)
never count, and a page with an article's running text of its own, or whose main content holds
none of the items, is an article whatever surrounds it. Either way the page
fetched to decide is reused, not fetched again. A listing that also has real prose of its own
(a home page with an about text) is kept as a document too, without its items, so expanding a
page never loses its own words. A page whose HTML shows only a placeholder ("Loading…") is
rendered before it is judged. An index that runs scripts may load older posts as it is
scrolled, so it is then rendered and scrolled too (`fetch_listing`). A registered RSS/Atom
feed is a listing of its entries on the author's site.
"""

from __future__ import annotations

from dataclasses import replace

from twin_assets.crawling.base import CrawlContext, CrawlTarget
from twin_assets.crawling.errors import NoContent
from twin_assets.crawling.http_fetch import HTML_TYPES
from twin_assets.crawling.listing import (
    FEED_TYPES,
    feed_entries,
    is_feed,
    looks_like_feed_url,
    read_listing,
    without_items,
)
from twin_assets.crawling.page import FetchedPage
from twin_assets.crawling.urls import normalize_url
from twin_assets.crawling.web import WebArticleCrawler
from twin_assets.domain.documents import AuthorLink, Platform


class GenericArticleCrawler(WebArticleCrawler):
    platform = Platform.WEB
    prefer_browser = False
    content_selectors = (
        "article .post-content",
        "article .entry-content",
        "article",
        "[itemprop=articleBody]",
        ".post-content",
        ".entry-content",
        "main",
        "[role=main]",
    )
    clutter_selectors = (
        ".post-meta",
        ".post-footer",
        ".tags",
        ".author-bio",
        ".toc",
        ".table-of-contents",
        ".reading-time",
    )
    title_selectors = ("article h1", "h1.post-title", "h1.entry-title", "main h1")
    locate_main = True  # readability-lxml finds the content; the selectors above are the fallback

    def expand(self, link: AuthorLink, ctx: CrawlContext) -> list[CrawlTarget]:
        if looks_like_feed_url(link.url):
            # Served as XML, which a page fetch refuses; a browser would show it as a tree.
            first = ctx.fetcher.get(link.url, accept=(*HTML_TYPES, *FEED_TYPES))
            self.check_page(first)
        else:
            first = self.fetch(link.url, ctx)
        if is_feed(first.html):
            return self.feed_targets(first, link, ctx)
        page = self.rendered_if_needed(first, ctx)
        verdict = read_listing(page.html, page.final_url, link.url)
        if not verdict.is_listing:
            ctx.log.debug("%s is an article (%s)", page.final_url, verdict.reason)
            return [CrawlTarget(url=link.url, link=link, page=page)]
        items = verdict.items
        # An index: it may load older posts on scroll (the article check above fetched it
        # unscrolled, as articles must be), so it is fetched again as a listing if need be.
        listing = self.fetch_listing(link.url, ctx, first=page)
        if listing is not page:
            more = read_listing(listing.html, listing.final_url, link.url).items
            items = more + [u for u in items if u not in more]
        ctx.log.info(
            "%s is an index of %d posts (%s; %d scroll rounds)",
            page.final_url,
            len(items),
            verdict.reason,
            listing.scroll_rounds,
        )
        targets: list[CrawlTarget] = []
        if verdict.has_own_prose:
            # Both a listing and a page with words of its own: those words are kept too.
            own = replace(page, html=without_items(page.html, verdict))
            targets.append(CrawlTarget(url=link.url, link=link, page=own))
        own_key = normalize_url(link.url)
        targets += [
            CrawlTarget(url=u, link=link)
            for u in items[: ctx.settings.max_listing_items]
            if normalize_url(u) != own_key
        ]
        return targets

    def feed_targets(self, feed: FetchedPage, link: AuthorLink, ctx: CrawlContext) -> list[CrawlTarget]:
        """A registered RSS/Atom feed: its entries on the author's site, in feed order."""
        urls = feed_entries(feed.html, feed.final_url, link.url)
        if not urls:
            raise NoContent(f"feed {feed.final_url} has no entries on {link.url}'s site")
        ctx.log.info("%s is a feed of %d entries", feed.final_url, len(urls))
        return [CrawlTarget(url=u, link=link) for u in urls[: ctx.settings.max_listing_items]]
