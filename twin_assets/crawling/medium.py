"""Medium: a profile (medium.com/@user or user.medium.com) expands to its stories.

Medium renders with React and hides text behind client-side state, so pages are rendered in
Chromium; a profile lists more stories as it is scrolled, so it is scrolled to its end
(`fetch_listing`). The story body is the whole `<article>`, every `<section>` of it: newer
markup starts the article with an empty section (and puts the title block in another), so no
single section is the story. The title block, byline, clap/listen/share bar, member banner,
sign-up box and "More from" rail are clutter.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from twin_assets.crawling.base import CrawlContext, CrawlTarget
from twin_assets.crawling.urls import path_segments
from twin_assets.crawling.web import WebArticleCrawler
from twin_assets.domain.documents import AuthorLink, Platform

# Sections of a profile that are not stories.
_PROFILE_TABS = frozenset(
    {
        "about",
        "lists",
        "followers",
        "following",
        "has-recommended",
        "highlights",
        "likes",
        "subscribe",
        "responses",
    }
)


class MediumCrawler(WebArticleCrawler):
    platform = Platform.MEDIUM
    domains = ("medium.com",)
    prefer_browser = True
    wait_for = "article"
    content_selectors = ("article",)
    title_selectors = ("h1[data-testid=storyTitle]", "h1.pw-post-title", "article h1")
    clutter_selectors = (
        ".speechify-ignore",
        "[data-testid=authorName]",
        "[data-testid=storyReadTime]",
        "[data-testid=storyPublishDate]",
        "[data-testid=headerClapButton]",
        "[data-testid=audioPlayButton]",
        "[data-testid=headerSocialShareButton]",
        ".pw-multi-vote-count",
        "[data-testid=memberOnlyBanner]",
    )

    @staticmethod
    def profile_path(url: str) -> str | None:
        """The profile's path prefix if `url` is a profile page, else None."""
        parts = urlsplit(url)
        segments = path_segments(url)
        host = (parts.hostname or "").lower()
        for i, seg in enumerate(segments):
            if seg.startswith("@"):
                return "/" + "/".join(segments[: i + 1]) + "/" if i == len(segments) - 1 else None
        is_user_subdomain = host.endswith(".medium.com") and host not in ("www.medium.com",)
        if is_user_subdomain and not segments:
            return "/"
        return None

    def expand(self, link: AuthorLink, ctx: CrawlContext) -> list[CrawlTarget]:
        prefix = self.profile_path(link.url)
        if prefix is None:
            return [CrawlTarget(url=link.url, link=link)]
        page = self.fetch_listing(link.url, ctx)

        def is_story(url: str) -> bool:
            path = urlsplit(url).path
            if not path.startswith(prefix):
                return False
            rest = [s for s in path[len(prefix) :].split("/") if s]
            return len(rest) == 1 and rest[0].lower() not in _PROFILE_TABS

        return self.listing_items(page, link, is_story, ctx)
