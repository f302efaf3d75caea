"""LinkedIn: an activity feed (/in/<user>/recent-activity/...) expands to the author's posts.

LinkedIn is script-rendered and aggressively gated, so pages are rendered in Chromium and any
redirect to, or rendering of, a sign-in page is reported as a `login_wall` failure (never as an
empty document). An activity feed loads older posts as it is scrolled, so it is scrolled to
its end (`fetch_listing`). A post's text is `p.attributed-text-segment-list__content`; its
`<br>` line breaks are kept (they are part of the author's style), as are emoji, hashtags and
unicode bold.

A Pulse article (/pulse/<slug>) is long-form writing, not a post: it is an ARTICLES document
(chunked as an article), its title is its headline, and its body is the article's own content
container, so the author card (headline, "+ Follow"), "Report this post", "Published on/By"
and the reaction bar around it are left out.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from twin_assets.crawling.base import CrawlContext, CrawlTarget
from twin_assets.crawling.errors import LoginWall
from twin_assets.crawling.extract import Extracted, extract_article
from twin_assets.crawling.page import FetchedPage
from twin_assets.crawling.soup import soup_of
from twin_assets.crawling.web import WebArticleCrawler
from twin_assets.domain.documents import AuthorLink, Category, Platform

_WALL_PATHS = re.compile(r"/(?:authwall|login|uas/login|checkpoint|signup|signin)(?:/|$|\?)")
_WALL_SELECTORS = "form.login__form, input[name=session_key], .authwall-join-form, #join-form"
_POST_SELECTORS = (
    "p.attributed-text-segment-list__content",
    ".attributed-text-segment-list__container",
    "[data-test-id='main-feed-activity-card__commentary']",
    ".feed-shared-update-v2__description",
    ".update-components-text",
)
_TITLE_CHARS = 90
# Pulse articles: the article body, most specific first.
_ARTICLE_SELECTORS = (
    "[data-test-id=article-content-blocks]",
    ".reader-article-content",
    ".article-content__body",
    "[data-test-id=article-content]",
    "[data-test-id=publishing-text-block]",
    ".article-main__content",
    "article .article-content",
)
_ARTICLE_TITLES = (
    "h1.pulse-title",
    "[data-test-id=article-title]",
    "h1.reader-article-header__title",
    "article h1",
    "main h1",
)
# Chrome around (and, in some layouts, inside) the article body.
_ARTICLE_CLUTTER = (
    ".publisher-author-card",
    ".publisher-author-card__name",
    ".author-headline",
    ".published-by",
    ".ellipsis-menu",
    ".social-actions",
    ".reader-actions",
    ".article-main__actions",
    "[data-test-id=publishing-author-card]",
    ".reader-author-info",
    ".reader-article-header__author-info",
    ".article-comments",
    ".more-articles",
    ".follow-button",
)


class LinkedInCrawler(WebArticleCrawler):
    platform = Platform.LINKEDIN
    domains = ("linkedin.com",)
    prefer_browser = True
    # whichever comes first: a post, a sign-in wall, or a feed's post links
    wait_for = ", ".join(
        [
            *_POST_SELECTORS[:2],
            *_ARTICLE_SELECTORS[:3],
            _WALL_SELECTORS,
            "a[href*='/posts/']",
            "a[href*='/feed/update/']",
        ]
    )
    content_selectors = _POST_SELECTORS

    @staticmethod
    def is_article(url: str) -> bool:
        """A Pulse article (long-form), as opposed to a post."""
        return "/pulse/" in urlsplit(url).path

    def category_for(self, url: str) -> Category | None:
        return Category.ARTICLES if self.is_article(url) else None

    def check_page(self, page: FetchedPage) -> None:
        if _WALL_PATHS.search(urlsplit(page.final_url).path):
            raise LoginWall(f"{page.url} ended on a LinkedIn sign-in page ({page.final_url})")
        soup = soup_of(page.html)
        if soup.select_one(_WALL_SELECTORS) and not any(
            soup.select_one(s) for s in (*_POST_SELECTORS, *_ARTICLE_SELECTORS)
        ):
            raise LoginWall(f"{page.final_url} shows a LinkedIn sign-in wall instead of content")

    def extract(self, page: FetchedPage) -> Extracted:
        if self.is_article(page.url) or self.is_article(page.final_url):
            return extract_article(
                page.html,
                content_selectors=_ARTICLE_SELECTORS,
                clutter_selectors=_ARTICLE_CLUTTER,
                title_selectors=_ARTICLE_TITLES,
            )
        extracted = extract_article(
            page.html, content_selectors=self.content_selectors, title_selectors=("__none__",)
        )
        # Posts have no title: the <title> is a truncated copy of the text. Use the first line.
        body = [b for b in extracted.blocks if not (b.kind == "title" and b.level == 1)]
        first = next((b.text for b in body if b.text.strip()), "")
        first_line = first.split("\n", 1)[0].strip()
        title = first_line if len(first_line) <= _TITLE_CHARS else first_line[: _TITLE_CHARS - 1] + "…"
        return Extracted(title=title or None, blocks=body, published_at=extracted.published_at)

    @staticmethod
    def is_feed(url: str) -> bool:
        path = urlsplit(url).path.rstrip("/")
        return "/recent-activity" in path or bool(re.search(r"/in/[^/]+$", path))

    def expand(self, link: AuthorLink, ctx: CrawlContext) -> list[CrawlTarget]:
        if not self.is_feed(link.url):
            return [CrawlTarget(url=link.url, link=link)]
        page = self.fetch_listing(link.url, ctx)
        # The articles tab lists the author's Pulse articles; other feeds link others' too.
        articles_tab = "/recent-activity/articles" in urlsplit(link.url).path

        def is_post(url: str) -> bool:
            path = urlsplit(url).path
            return "/posts/" in path or "/feed/update/" in path or (articles_tab and "/pulse/" in path)

        return self.listing_items(page, link, is_post, ctx)
