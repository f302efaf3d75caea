"""Getting a page's HTML: plain HTTP (httpx) or rendered by Chromium (Playwright), safely.

Both paths enforce the same rules: the URL and every redirect hop pass `check_web_url`, each
host is rate limited, pages over `max_page_bytes` are refused (Content-Length first, then the
bytes actually received), and transient failures (timeouts, 5xx, 429, dropped connections) are
retried with exponential backoff while 4xx fail at once.

One `PageFetcher` is opened per crawl of an author: it starts Chromium lazily, the first time a
page needs rendering, and closes it on exit; each page gets its own short-lived browser context.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from types import TracebackType
from typing import Literal
from urllib.parse import urljoin, urlsplit

import httpx

from twin_assets.crawling.errors import (
    CrawlError,
    FetchTimeout,
    HttpStatusError,
    NetworkError,
    NoContent,
    TooLarge,
)
from twin_assets.crawling.safety import AllowList, DomainRateLimiter, check_web_url, with_retries
from twin_assets.crawling.settings import CrawlSettings

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
]
HEAVY_RESOURCES = frozenset({"image", "font", "media"})
# Schemes that never reach the network from the browser; everything else is checked.
_LOCAL_SCHEMES = ("data:", "blob:", "about:")
_HTML_TYPES = ("text/html", "application/xhtml+xml", "text/plain")


@dataclass
class FetchedPage:
    url: str  # what was asked for
    final_url: str  # after redirects
    status: int
    html: str
    via: Literal["http", "browser"]


class PageFetcher:
    """Fetches pages for one crawl; use as a context manager (closes the browser)."""

    def __init__(self, settings: CrawlSettings, log: logging.Logger | None = None, browser=None):
        self.settings = settings
        self.log = log or logging.getLogger(__name__)
        self.allow = AllowList(settings.allow_hosts)
        self.limiter = DomainRateLimiter(settings.min_domain_interval_s)
        self._client: httpx.Client | None = None
        self._playwright = None
        self._browser = browser  # a caller-owned browser (tests share one) is never closed here
        self._owns_browser = False
        self.pages_rendered = 0

    # -- lifecycle ----------------------------------------------------------------------------
    def __enter__(self) -> PageFetcher:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
        if self._owns_browser and self._browser is not None:
            try:
                self._browser.close()
            finally:
                self._browser = None
                self._owns_browser = False
                if self._playwright is not None:
                    self._playwright.stop()
                    self._playwright = None

    @property
    def client(self) -> httpx.Client:
        if self._client is None:
            t = self.settings.page_timeout_s
            self._client = httpx.Client(
                follow_redirects=False,  # every hop is re-checked by hand
                timeout=httpx.Timeout(t, connect=min(t, 10.0)),
                headers={"User-Agent": self.settings.user_agent,
                         "Accept": "text/html,application/xhtml+xml,application/json;q=0.9,*/*;q=0.5"},
                trust_env=False,  # a proxy from the environment would bypass the address checks
            )
        return self._client

    @property
    def browser(self):
        if self._browser is None:
            self._browser = launch_browser(self.settings)
            self._playwright = self._browser._twin_playwright  # type: ignore[attr-defined]
            self._owns_browser = True
        return self._browser

    # -- public API ---------------------------------------------------------------------------
    def get(self, url: str, *, accept: tuple[str, ...] = _HTML_TYPES) -> FetchedPage:
        """Plain HTTP GET with manual, re-checked redirects and a byte cap (retried)."""
        return with_retries(lambda: self._http_once(url, accept), self.settings,
                            on_retry=self._log_retry(url))

    def get_json(self, url: str):
        page = self.get(url, accept=("application/json", "text/json", "application/octet-stream",
                                     "text/plain"))
        import json

        try:
            return json.loads(page.html)
        except ValueError as exc:
            raise CrawlError(f"invalid JSON from {url}: {exc}", kind="malformed") from exc

    def render(self, url: str, *, wait_for: str | None = None) -> FetchedPage:
        """Load `url` in Chromium (JS runs; images/fonts/media blocked), retried."""
        return with_retries(lambda: self._render_once(url, wait_for), self.settings,
                            on_retry=self._log_retry(url))

    def fetch(self, url: str, *, prefer_browser: bool, wait_for: str | None = None) -> FetchedPage:
        mode = self.settings.browser_mode
        if mode == "always" or (mode == "auto" and prefer_browser):
            return self.render(url, wait_for=wait_for)
        return self.get(url)

    # -- internals ----------------------------------------------------------------------------
    def _log_retry(self, url: str):
        def log(attempt: int, exc: CrawlError, delay: float) -> None:
            self.log.info("retry %d for %s in %.2fs after %s: %s", attempt, url, delay, exc.kind,
                          exc.reason)

        return log

    def _http_once(self, url: str, accept: tuple[str, ...]) -> FetchedPage:
        s = self.settings
        current = url
        deadline = time.monotonic() + s.page_timeout_s
        for _ in range(s.max_redirects + 1):
            check_web_url(current, s, self.allow)
            self.limiter.wait(urlsplit(current).hostname or "")
            try:
                with self.client.stream("GET", current) as resp:
                    if resp.is_redirect:
                        location = resp.headers.get("location")
                        if not location:
                            raise HttpStatusError(current, resp.status_code)
                        current = urljoin(current, location)
                        continue
                    if resp.status_code >= 400:
                        raise HttpStatusError(current, resp.status_code)
                    ctype = resp.headers.get("content-type", "").split(";")[0].strip().lower()
                    if ctype and not ctype.startswith(accept):
                        raise NoContent(f"{current} is {ctype}, not a page we can read")
                    length = resp.headers.get("content-length")
                    if length and length.isdigit() and int(length) > s.max_page_bytes:
                        raise TooLarge(f"{current} is {int(length)} bytes (limit {s.max_page_bytes})")
                    body = bytearray()
                    for chunk in resp.iter_bytes():
                        body += chunk
                        if len(body) > s.max_page_bytes:
                            raise TooLarge(f"{current} exceeds {s.max_page_bytes} bytes")
                        if time.monotonic() > deadline:
                            raise FetchTimeout(f"{current} took longer than {s.page_timeout_s}s")
                    encoding = resp.charset_encoding or "utf-8"
                    try:
                        text = bytes(body).decode(encoding, errors="replace")
                    except LookupError:
                        text = bytes(body).decode("utf-8", errors="replace")
                    return FetchedPage(url, current, resp.status_code, text, "http")
            except httpx.TimeoutException as exc:
                raise FetchTimeout(f"timed out after {s.page_timeout_s}s fetching {current}") from exc
            except httpx.TransportError as exc:
                raise NetworkError(f"network error fetching {current}: {exc}") from exc
        raise CrawlError(f"more than {s.max_redirects} redirects from {url}", kind="http_error")

    def _render_once(self, url: str, wait_for: str | None) -> FetchedPage:
        s = self.settings
        from playwright.sync_api import Error as PlaywrightError
        from playwright.sync_api import TimeoutError as PlaywrightTimeout

        check_web_url(url, s, self.allow)
        self.limiter.wait(urlsplit(url).hostname or "")
        refused: list[CrawlError] = []

        def route(route, request) -> None:
            # Chromium follows redirects without consulting the route, so every request is
            # fetched here with redirects off: each Location is checked before the browser is
            # handed the 3xx and asks for the next hop (which comes back through this route).
            nav = request.is_navigation_request()
            if s.block_heavy_resources and request.resource_type in HEAVY_RESOURCES:
                route.abort("blockedbyclient")
                return
            if request.url.startswith(_LOCAL_SCHEMES):
                route.continue_()
                return
            try:
                check_web_url(request.url, s, self.allow)
                response = route.fetch(max_redirects=0, timeout=s.page_timeout_s * 1000)
                location = response.headers.get("location")
                if 300 <= response.status < 400 and location:
                    check_web_url(urljoin(request.url, location), s, self.allow)
                if nav:
                    length = response.headers.get("content-length", "")
                    if (length.isdigit() and int(length) > s.max_page_bytes) or \
                            len(response.body()) > s.max_page_bytes:
                        raise TooLarge(f"{request.url} exceeds {s.max_page_bytes} bytes")
            except CrawlError as exc:
                if nav:
                    refused.append(exc)
                self.log.debug("blocked request to %s: %s", request.url, exc.reason)
                route.abort("blockedbyclient")
                return
            except PlaywrightTimeout:
                if nav:
                    refused.append(FetchTimeout(f"timed out after {s.page_timeout_s}s loading {request.url}"))
                route.abort("timedout")
                return
            except PlaywrightError as exc:
                if nav:
                    refused.append(NetworkError(f"could not load {request.url}: {str(exc).splitlines()[0]}"))
                route.abort("failed")
                return
            route.fulfill(response=response)

        context = self.browser.new_context(user_agent=s.user_agent, service_workers="block",
                                           accept_downloads=False)
        try:
            context.route("**/*", route)
            page = context.new_page()
            timeout_ms = s.page_timeout_s * 1000
            page.set_default_timeout(timeout_ms)
            try:
                resp = page.goto(url, wait_until="load", timeout=timeout_ms)
            except PlaywrightTimeout as exc:
                raise FetchTimeout(f"timed out after {s.page_timeout_s}s rendering {url}") from exc
            except PlaywrightError as exc:
                if refused:
                    raise refused[0] from exc
                raise NetworkError(f"browser could not load {url}: {str(exc).splitlines()[0]}") from exc
            if refused:
                raise refused[0]
            if resp is None:
                raise NetworkError(f"no response for {url}", retryable=False)
            # Redirect chain and final URL are re-checked even though the route saw each hop.
            hop = resp.request
            while hop is not None:
                check_web_url(hop.url, s, self.allow)
                hop = hop.redirected_from
            final_url = page.url
            check_web_url(final_url, s, self.allow)
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
            try:
                if len(resp.body()) > s.max_page_bytes:
                    raise TooLarge(f"{final_url} exceeds {s.max_page_bytes} bytes")
            except PlaywrightError:
                pass  # body unavailable (e.g. after a client-side navigation); the DOM is checked
            html = page.content()
            if len(html.encode("utf-8", errors="ignore")) > s.max_page_bytes:
                raise TooLarge(f"{final_url} rendered to more than {s.max_page_bytes} bytes")
            self.pages_rendered += 1
            return FetchedPage(url, final_url, resp.status, html, "browser")
        finally:
            context.close()


def launch_browser(settings: CrawlSettings):
    """Start Playwright and the system Chromium; the browser carries its Playwright handle
    so that `close_browser` can stop both."""
    from playwright.sync_api import sync_playwright

    pw = sync_playwright().start()
    try:
        browser = pw.chromium.launch(executable_path=settings.chromium_path, args=CHROMIUM_ARGS,
                                     headless=True)
    except Exception:
        pw.stop()
        raise
    browser._twin_playwright = pw  # type: ignore[attr-defined]
    return browser


def close_browser(browser) -> None:
    pw = getattr(browser, "_twin_playwright", None)
    try:
        browser.close()
    finally:
        if pw is not None:
            pw.stop()
