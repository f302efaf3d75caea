"""Rendering pages in Chromium (Playwright) without letting Chromium touch the network.

Every http(s) request of a rendered page goes through `relay.PageRoute`, i.e. through the
crawl's guarded client, and a redirect of the page itself is re-navigated hop by hop here
(`redirects.follow_redirects`, each hop checked and rate limited). WebSockets, which the
request route does not see, are refused outright, and Chromium's own resolver is switched off
(`CHROMIUM_ARGS`; browsers handed in must come from `launch_browser`) so that anything that
still escapes interception resolves to nothing, IP literals included.

The browser starts lazily, the first time a page needs rendering; each page gets its own
short-lived browser context.
"""

from __future__ import annotations

import logging
import time
from typing import Any
from urllib.parse import urlsplit

from twin_assets.crawling.errors import FetchTimeout, HttpStatusError, NetworkError, TooLarge
from twin_assets.crawling.http_fetch import GuardedHttp
from twin_assets.crawling.page import FetchedPage
from twin_assets.crawling.redirects import Redirect, follow_redirects
from twin_assets.crawling.relay import PageRoute
from twin_assets.crawling.safety import check_web_url
from twin_assets.crawling.scroll import scroll_listing
from twin_assets.crawling.settings import CrawlSettings
from twin_assets.crawling.settle import wait_for_content

CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    # Every http(s) request is fulfilled by the guarded client, so Chromium needs no resolver of
    # its own; with none, a connection that escapes interception has nowhere to go.
    "--host-resolver-rules=MAP * ~NOTFOUND",
    "--dns-prefetch-disable",
]


def launch_browser(settings: CrawlSettings) -> Any:
    """Start Playwright and the system Chromium; the browser carries its Playwright handle
    so that `close_browser` can stop both."""
    from playwright.sync_api import sync_playwright

    pw = sync_playwright().start()
    try:
        browser = pw.chromium.launch(
            executable_path=settings.chromium_path, args=CHROMIUM_ARGS, headless=True
        )
    except Exception:
        pw.stop()
        raise
    browser._twin_playwright = pw  # type: ignore[attr-defined]
    return browser


def close_browser(browser: Any) -> None:
    pw = getattr(browser, "_twin_playwright", None)
    try:
        browser.close()
    finally:
        if pw is not None:
            pw.stop()


class BrowserRenderer:
    """Renders pages for one crawl, relaying their requests through `http` (whose settings,
    allow-list and rate limiter it shares). A browser handed in (tests share one) is the
    caller's and is never closed here; one launched here is closed by `close`."""

    def __init__(self, http: GuardedHttp, log: logging.Logger, browser: Any = None):
        self.http = http
        self.settings = http.settings
        self.log = log
        self._browser = browser
        self._owns_browser = False
        self.pages_rendered = 0

    @property
    def browser(self) -> Any:
        if self._browser is None:
            self._browser = launch_browser(self.settings)
            self._owns_browser = True
        return self._browser

    def close(self) -> None:
        if self._owns_browser and self._browser is not None:
            try:
                close_browser(self._browser)
            finally:
                self._browser = None
                self._owns_browser = False

    def render(self, url: str, wait_for: str | None = None, scroll: bool = False) -> FetchedPage:
        """One attempt at loading `url` (JS runs; heavy resources blocked per settings), then
        waiting, within `page_timeout_s`, for content built after load to appear (`settle`),
        then scrolling it when `scroll` is set; retries are the caller's."""
        from playwright.sync_api import Error as PlaywrightError
        from playwright.sync_api import TimeoutError as PlaywrightTimeout

        s = self.settings
        started = time.monotonic()
        route = PageRoute(self.http, self.log)
        context = self.browser.new_context(
            user_agent=s.user_agent, service_workers="block", accept_downloads=False
        )
        try:
            context.route("**/*", route.handle)
            # Not seen by the request route: a page's WebSocket would be opened by Chromium
            # itself, unchecked. Text extraction needs none, so none is ever connected.
            context.route_web_socket("**/*", lambda ws: ws.close(code=1008, reason="refused by the crawler"))
            timeout_ms = s.page_timeout_s * 1000
            page, resp = self._navigate(context, url, route, timeout_ms)
            route.navigating = False
            final_url = page.url
            check_web_url(final_url, s, self.http.allow)
            if resp.status >= 400:
                raise HttpStatusError(final_url, resp.status)
            length = resp.headers.get("content-length")
            if length and length.isdigit() and int(length) > s.max_page_bytes:
                raise TooLarge(f"{final_url} is {int(length)} bytes (limit {s.max_page_bytes})")
            if wait_for:
                try:
                    page.wait_for_selector(wait_for, timeout=min(timeout_ms, 5000), state="attached")
                except PlaywrightTimeout:
                    pass  # extraction will report what is (not) there
            # Scripts may still be building the page (a "Loading…" shell): judge it once its
            # text has settled, or when its time is up.
            wait_for_content(page, started + s.page_timeout_s, self.log, final_url)
            rounds = scroll_listing(page, final_url, s, self.log) if scroll and s.max_scroll_rounds > 0 else 0
            try:
                if len(resp.body()) > s.max_page_bytes:
                    raise TooLarge(f"{final_url} exceeds {s.max_page_bytes} bytes")
            except PlaywrightError:
                pass  # body unavailable (e.g. after a client-side navigation); the DOM is checked
            html = page.content()
            # A script or meta-refresh navigation refused meanwhile leaves Chromium's error page.
            route.raise_if_blocked(page)
            check_web_url(page.url, s, self.http.allow)
            if len(html.encode("utf-8", errors="ignore")) > s.max_page_bytes:
                raise TooLarge(f"{final_url} rendered to more than {s.max_page_bytes} bytes")
            self.pages_rendered += 1
            return FetchedPage(url, final_url, resp.status, html, "browser", scroll_rounds=rounds)
        finally:
            context.close()

    def _navigate(self, context: Any, url: str, route: PageRoute, timeout_ms: float) -> tuple[Any, Any]:
        """page.goto, following the page's redirects hop by hop (see `relay`); returns the
        page and its final response.

        Each hop gets a fresh page of the same context (cookies carry over): the failed
        follow-up leaves Chromium committing an error page, which would interrupt a new
        navigation started in the same page.
        """
        from playwright.sync_api import Error as PlaywrightError
        from playwright.sync_api import TimeoutError as PlaywrightTimeout

        s = self.settings
        page = None

        def hop(current: str) -> tuple[Any, Any] | Redirect:
            nonlocal page
            self.http.limiter.wait(urlsplit(current).hostname or "")
            route.start_hop()
            if page is not None:
                page.close()
            page = context.new_page()
            page.set_default_timeout(timeout_ms)
            try:
                resp = page.goto(current, wait_until="load", timeout=timeout_ms)
            except PlaywrightTimeout as exc:
                if route.refused:
                    raise route.refused[0] from exc
                raise FetchTimeout(f"timed out after {s.page_timeout_s}s rendering {current}") from exc
            except PlaywrightError as exc:
                if route.refused:
                    raise route.refused[0] from exc
                if route.redirects:
                    return Redirect(route.redirects[0])
                raise NetworkError(f"browser could not load {current}: {str(exc).splitlines()[0]}") from exc
            if route.refused:
                raise route.refused[0]
            if route.redirects and resp is not None and 300 <= resp.status < 400:
                return Redirect(route.redirects[0])
            if resp is None:
                raise NetworkError(f"no response for {current}", retryable=False)
            return page, resp

        return follow_redirects(url, s, self.http.allow, hop)
