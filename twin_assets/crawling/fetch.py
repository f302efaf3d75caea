"""Getting a page's HTML for one crawl: plain HTTP (`http_fetch`) or rendered by Chromium
(`browser`), with the same rules either way.

Both paths check the URL and every redirect hop (`redirects`), rate limit each host, refuse
pages over `max_page_bytes` (Content-Length first, then the bytes actually received), and
connect through one guarded httpx client, which checks the address it actually dials (see
`safety`). Chromium never touches the network itself: its requests are relayed through that
client (`relay`). Here transient failures (timeouts, 5xx, 429, dropped connections) are
retried with exponential backoff while 4xx fail at once, and the crawler's preference and
`browser_mode` choose between the two paths.

One `PageFetcher` is opened per crawl of an author: it starts Chromium lazily, the first time a
page needs rendering, and closes it on exit. Listing pages that load more items as the reader
scrolls are rendered with `scroll=True` (see `scroll`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from types import TracebackType
from typing import Any

from twin_assets.crawling.browser import BrowserRenderer, close_browser, launch_browser
from twin_assets.crawling.errors import CrawlError
from twin_assets.crawling.http_fetch import HTML_TYPES, JSON_TYPES, GuardedHttp
from twin_assets.crawling.page import FetchedPage
from twin_assets.crawling.safety import AllowList, DomainRateLimiter, with_retries
from twin_assets.crawling.settings import CrawlSettings

# Where callers have always found them.
__all__ = ["FetchedPage", "PageFetcher", "close_browser", "launch_browser"]


class PageFetcher:
    """Fetches pages for one crawl; use as a context manager (closes the browser)."""

    def __init__(self, settings: CrawlSettings, log: logging.Logger | None = None, browser: Any = None):
        self.settings = settings
        self.log = log or logging.getLogger(__name__)
        self.allow = AllowList(settings.allow_hosts)
        self.limiter = DomainRateLimiter(settings.min_domain_interval_s)
        self.http = GuardedHttp(settings, self.allow, self.limiter)
        # a caller-owned browser (tests share one) is never closed here
        self.renderer = BrowserRenderer(self.http, self.log, browser=browser)

    # -- lifecycle ----------------------------------------------------------------------------
    def __enter__(self) -> PageFetcher:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        self.http.close()
        self.renderer.close()

    @property
    def pages_rendered(self) -> int:
        return self.renderer.pages_rendered

    # -- public API ---------------------------------------------------------------------------
    def get(self, url: str, *, accept: tuple[str, ...] = HTML_TYPES) -> FetchedPage:
        """Plain HTTP GET with manual, re-checked redirects and a byte cap (retried)."""
        return with_retries(lambda: self.http.get(url, accept), self.settings, on_retry=self._log_retry(url))

    def get_json(self, url: str) -> Any:
        page = self.get(url, accept=JSON_TYPES)
        try:
            return json.loads(page.html)
        except ValueError as exc:
            raise CrawlError(f"invalid JSON from {url}: {exc}", kind="malformed") from exc

    def render(self, url: str, *, wait_for: str | None = None, scroll: bool = False) -> FetchedPage:
        """Load `url` in Chromium (JS runs; images/fonts/media blocked), retried.

        With `scroll`, the loaded page is then scrolled until it stops growing (bounded by
        `max_scroll_rounds`, `max_listing_items` and `page_timeout_s`): for listings that load
        more items on scroll. Article pages are not scrolled: some load the next article.
        """
        return with_retries(
            lambda: self.renderer.render(url, wait_for, scroll), self.settings, on_retry=self._log_retry(url)
        )

    def fetch(
        self, url: str, *, prefer_browser: bool, wait_for: str | None = None, scroll: bool = False
    ) -> FetchedPage:
        """Rendered or plain, as `browser_mode` and the crawler's preference say; `scroll`
        only has an effect when the page is rendered (plain HTTP cannot scroll)."""
        mode = self.settings.browser_mode
        if mode == "always" or (mode == "auto" and prefer_browser):
            return self.render(url, wait_for=wait_for, scroll=scroll)
        return self.get(url)

    def _log_retry(self, url: str) -> Callable[[int, CrawlError, float], None]:
        def log(attempt: int, exc: CrawlError, delay: float) -> None:
            self.log.info("retry %d for %s in %.2fs after %s: %s", attempt, url, delay, exc.kind, exc.reason)

        return log
