"""Getting a page's HTML: plain HTTP (httpx) or rendered by Chromium (Playwright), safely.

Both paths enforce the same rules: the URL and every redirect hop pass `check_web_url`, each
host is rate limited, pages over `max_page_bytes` are refused (Content-Length first, then the
bytes actually received), and transient failures (timeouts, 5xx, 429, dropped connections) are
retried with exponential backoff while 4xx fail at once.

Both paths also connect through one guarded httpx client (`safety.GuardedTransport`), which
checks the address it actually dials, so DNS rebinding cannot slip a private address in between
the URL check and the connection. Chromium therefore never touches the network for http(s)
itself: every request it makes is intercepted and fetched by that client (not by Playwright's
`route.fetch`, which would resolve the name again on its own), and the response is handed back
with `route.fulfill`. Playwright does not route the hops of a redirect that Chromium follows by
itself, so Chromium is never left to follow one: redirects of sub-resources and frames are
followed by the client (each hop checked), and a redirect of the page itself is re-navigated
hop by hop by `PageFetcher`. WebSockets, which the request route does not see, are refused
outright, and Chromium's own resolver is switched off (`CHROMIUM_ARGS`; browsers handed to
`PageFetcher` must come from `launch_browser`) so that anything that still escapes
interception resolves to nothing, IP literals included.

One `PageFetcher` is opened per crawl of an author: it starts Chromium lazily, the first time a
page needs rendering, and closes it on exit; each page gets its own short-lived browser context.

Listing pages that load more items as the reader scrolls (infinite scroll) are rendered with
`scroll=True`: after loading, the page is scrolled to its bottom round after round, each round
waiting briefly for it to grow, so the links of every batch end up in the returned HTML (see
`PageFetcher._scroll`). The page's own requests for more items go through the same route, and
so through the guarded client, as everything else it loads.
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
from twin_assets.crawling.safety import (
    AllowList,
    DomainRateLimiter,
    GuardedTransport,
    check_web_url,
    with_retries,
)
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
    # Every http(s) request is fulfilled by the guarded client, so Chromium needs no resolver of
    # its own; with none, a connection that escapes interception has nowhere to go.
    "--host-resolver-rules=MAP * ~NOTFOUND",
    "--dns-prefetch-disable",
]
HEAVY_RESOURCES = frozenset({"image", "font", "media"})
# Schemes that never reach the network from the browser; everything else is checked.
_LOCAL_SCHEMES = ("data:", "blob:", "about:")
_HTML_TYPES = ("text/html", "application/xhtml+xml", "text/plain")
# A sub-resource (script, stylesheet, XHR) may be bigger than a page of text (JS bundles are),
# but is still buffered in memory before Chromium gets it, so it is capped too.
SUBRESOURCE_SIZE_FACTOR = 4
# Connection-level headers belong to one hop and are set again by httpx for its own connection;
# Accept-Encoding is replaced by what httpx can decode (the body goes to Chromium decoded).
_HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-authenticate", "proxy-authorization",
                         "proxy-connection", "te", "trailer", "trailers", "transfer-encoding",
                         "upgrade", "host", "content-length"})
_DROPPED_REQUEST_HEADERS = _HOP_BY_HOP | {"accept-encoding"}
_DROPPED_RESPONSE_HEADERS = _HOP_BY_HOP | {"content-encoding"}

# What the scroll phase measures: how tall the page is, how many distinct links it holds (a
# card often links its story several times, so elements would overcount), and whether it runs
# any script at all (without one, nothing can be added on scroll). JSON-LD and other data
# blocks are <script> elements too, but never run.
_PAGE_STATE_JS = """() => {
  const root = document.documentElement;
  const height = Math.max(root ? root.scrollHeight : 0,
                          document.body ? document.body.scrollHeight : 0);
  const links = new Set();
  for (const a of document.querySelectorAll("a[href]")) links.add(a.href);
  const runnable = /^$|javascript|ecmascript|^module$/i;
  const scripts = Array.from(document.scripts)
    .filter((s) => runnable.test((s.type || "").trim())).length;
  return {height, links: links.size, scripts};
}"""
# Bring the end of the listing into view: the last link first (it may sit in a scrolling
# container of its own, which window scrolling would not move), then the window's bottom.
_SCROLL_JS = """() => {
  const anchors = document.querySelectorAll("a[href]");
  if (anchors.length) anchors[anchors.length - 1].scrollIntoView({block: "end"});
  const root = document.documentElement;
  window.scrollTo(0, Math.max(root ? root.scrollHeight : 0,
                              document.body ? document.body.scrollHeight : 0));
}"""
_GREW_JS = """([height, links]) => {
  const root = document.documentElement;
  const h = Math.max(root ? root.scrollHeight : 0,
                     document.body ? document.body.scrollHeight : 0);
  if (h > height) return true;
  const seen = new Set();
  for (const a of document.querySelectorAll("a[href]")) seen.add(a.href);
  return seen.size > links;
}"""


def _origin(url: str) -> tuple[str, str | None, int | None]:
    parts = urlsplit(url)
    return parts.scheme.lower(), parts.hostname, parts.port


@dataclass
class FetchedPage:
    url: str  # what was asked for
    final_url: str  # after redirects
    status: int
    html: str
    via: Literal["http", "browser"]
    scroll_rounds: int = 0  # rounds of infinite scrolling run before `html` was taken


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
                # Connects only to addresses that pass the SSRF rules, checked at connect time.
                transport=GuardedTransport(self.allow),
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

    def render(self, url: str, *, wait_for: str | None = None, scroll: bool = False) -> FetchedPage:
        """Load `url` in Chromium (JS runs; images/fonts/media blocked), retried.

        With `scroll`, the loaded page is then scrolled until it stops growing (bounded by
        `max_scroll_rounds`, `max_listing_items` and `page_timeout_s`): for listings that load
        more items on scroll. Article pages are not scrolled: some load the next article.
        """
        return with_retries(lambda: self._render_once(url, wait_for, scroll), self.settings,
                            on_retry=self._log_retry(url))

    def fetch(self, url: str, *, prefer_browser: bool, wait_for: str | None = None,
              scroll: bool = False) -> FetchedPage:
        """Rendered or plain, as `browser_mode` and the crawler's preference say; `scroll`
        only has an effect when the page is rendered (plain HTTP cannot scroll)."""
        mode = self.settings.browser_mode
        if mode == "always" or (mode == "auto" and prefer_browser):
            return self.render(url, wait_for=wait_for, scroll=scroll)
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
                    body = self._read_capped(resp, current, s.max_page_bytes, deadline)
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

    def _read_capped(self, resp: httpx.Response, url: str, limit: int, deadline: float) -> bytes:
        """The (decoded) body, refused once it is over `limit` bytes or past the deadline;
        Content-Length is believed only when it already says too much."""
        length = resp.headers.get("content-length")
        if length and length.isdigit() and int(length) > limit:
            raise TooLarge(f"{url} is {int(length)} bytes (limit {limit})")
        body = bytearray()
        for chunk in resp.iter_bytes():
            body += chunk
            if len(body) > limit:
                raise TooLarge(f"{url} exceeds {limit} bytes")
            if time.monotonic() > deadline:
                raise FetchTimeout(f"{url} took longer than {self.settings.page_timeout_s}s")
        return bytes(body)

    def _fetch_for_browser(self, request, limit: int, *,
                           follow_redirects: bool) -> tuple[int, dict[str, str], bytes]:
        """Do one intercepted browser request through the guarded client.

        Returns what `route.fulfill` needs. With `follow_redirects`, redirects are followed
        here, each hop checked like the first (Playwright never routes the hops Chromium
        follows by itself, so Chromium must not be handed a 3xx it would follow alone); without
        it, a 3xx comes back as it is. The request is built by hand rather than with
        `client.build_request`, so the client's own cookie jar and default headers do not leak
        into what the page asked for; the browser's headers (its cookies included) are sent.
        """
        s = self.settings
        method, url, content = request.method, request.url, request.post_data_buffer
        headers = {k.lower(): v for k, v in request.headers.items()
                   if k.lower() not in _DROPPED_REQUEST_HEADERS}
        headers["accept-encoding"] = "gzip, deflate"
        deadline = time.monotonic() + s.page_timeout_s
        for _ in range(s.max_redirects + 1):
            check_web_url(url, s, self.allow)
            outgoing = httpx.Request(method, url, headers=headers, content=content,
                                     extensions={"timeout": self.client.timeout.as_dict()})
            try:
                resp = self.client.send(outgoing, stream=True, follow_redirects=False)
                try:
                    if follow_redirects and resp.is_redirect:
                        target = urljoin(url, resp.headers["location"])
                        if resp.status_code == 303 and method != "HEAD" or (
                                resp.status_code in (301, 302) and method == "POST"):
                            method, content = "GET", None  # as browsers do (Fetch standard)
                            headers.pop("content-type", None)
                        if _origin(target) != _origin(url):  # credentials stay with their origin
                            headers.pop("cookie", None)
                            headers.pop("authorization", None)
                        url = target
                        continue
                    body = self._read_capped(resp, url, limit, deadline)
                finally:
                    resp.close()
            except httpx.TimeoutException as exc:
                raise FetchTimeout(f"timed out after {s.page_timeout_s}s loading {url}") from exc
            except httpx.TransportError as exc:
                raise NetworkError(f"could not load {url}: {exc}") from exc
            merged: dict[str, list[str]] = {}
            for name, value in resp.headers.multi_items():
                if name.lower() not in _DROPPED_RESPONSE_HEADERS:
                    merged.setdefault(name.lower(), []).append(value)
            # Playwright splits a fulfilled Set-Cookie on newlines; other repeats fold with commas.
            out = {name: ("\n" if name == "set-cookie" else ", ").join(values)
                   for name, values in merged.items()}
            return resp.status_code, out, body
        raise CrawlError(f"more than {s.max_redirects} redirects from {request.url}",
                         kind="http_error")

    def _render_once(self, url: str, wait_for: str | None, scroll: bool = False) -> FetchedPage:
        s = self.settings
        from playwright.sync_api import Error as PlaywrightError
        from playwright.sync_api import TimeoutError as PlaywrightTimeout

        refused: list[CrawlError] = []  # why the page's own navigation was blocked
        redirects: list[str] = []  # where the page's own navigation was redirected to
        navigating = [True]  # page.goto in progress (later navigations are the page's JS)

        def route(route, request) -> None:
            # Every http(s) request is fetched here, through the guarded client, and handed to
            # Chromium with route.fulfill. Playwright does not route the hops of a redirect
            # Chromium follows itself, so Chromium never follows one on its own: sub-resources
            # and frames get their redirects followed here (each hop checked), and the page's
            # own navigation gets its 3xx (so cookies set on the way are kept) while
            # `_render_once` navigates to the checked Location itself; Chromium's own attempt
            # to follow it fails, having no resolver (see CHROMIUM_ARGS). The handler blocks
            # Playwright's dispatcher while it runs, so a page's requests go one at a time.
            try:
                page_nav = (request.is_navigation_request() and navigating[0]
                            and request.frame.parent_frame is None)
            except PlaywrightError:  # no frame (a worker's request): not the page's navigation
                page_nav = False
            if s.block_heavy_resources and request.resource_type in HEAVY_RESOURCES:
                route.abort("blockedbyclient")
                return
            if request.url.startswith(_LOCAL_SCHEMES):
                route.continue_()
                return
            nav = request.is_navigation_request()
            limit = s.max_page_bytes if nav else s.max_page_bytes * SUBRESOURCE_SIZE_FACTOR
            try:
                status, headers, body = self._fetch_for_browser(request, limit,
                                                                follow_redirects=not page_nav)
                location = headers.get("location")
                if page_nav and 300 <= status < 400 and location:
                    target = urljoin(request.url, location)
                    check_web_url(target, s, self.allow)
                    redirects.append(target)
            except CrawlError as exc:
                if page_nav:
                    refused.append(exc)
                self.log.debug("blocked request to %s: %s", request.url, exc.reason)
                route.abort("timedout" if isinstance(exc, FetchTimeout)
                            else "failed" if isinstance(exc, NetworkError) else "blockedbyclient")
                return
            except Exception as exc:  # never leave a request hanging until the page times out
                self.log.exception("could not relay %s to the browser", request.url)
                if page_nav:
                    refused.append(CrawlError(f"could not relay {request.url}: {exc!r}"))
                route.abort("failed")
                return
            try:
                route.fulfill(status=status, headers=headers, body=body)
            except PlaywrightError as exc:  # the page went away (navigated, closed) meanwhile
                self.log.debug("could not hand %s to the browser: %s", request.url,
                               str(exc).splitlines()[0])

        context = self.browser.new_context(user_agent=s.user_agent, service_workers="block",
                                           accept_downloads=False)
        try:
            context.route("**/*", route)
            # Not seen by the request route: a page's WebSocket would be opened by Chromium
            # itself, unchecked. Text extraction needs none, so none is ever connected.
            context.route_web_socket(
                "**/*", lambda ws: ws.close(code=1008, reason="refused by the crawler"))
            timeout_ms = s.page_timeout_s * 1000
            page, resp = self._navigate(context, url, refused, redirects, timeout_ms)
            navigating[0] = False
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
            rounds = self._scroll(page, final_url) if scroll and s.max_scroll_rounds > 0 else 0
            try:
                if len(resp.body()) > s.max_page_bytes:
                    raise TooLarge(f"{final_url} exceeds {s.max_page_bytes} bytes")
            except PlaywrightError:
                pass  # body unavailable (e.g. after a client-side navigation); the DOM is checked
            html = page.content()
            if len(html.encode("utf-8", errors="ignore")) > s.max_page_bytes:
                raise TooLarge(f"{final_url} rendered to more than {s.max_page_bytes} bytes")
            self.pages_rendered += 1
            return FetchedPage(url, final_url, resp.status, html, "browser", scroll_rounds=rounds)
        finally:
            context.close()

    def _scroll(self, page, url: str) -> int:
        """Scroll a loaded listing to its bottom until it stops growing; returns the rounds run.

        A round scrolls to the bottom and waits up to `scroll_settle_s` for the page to get
        taller or gain links (whatever the page fetches meanwhile is relayed by the route, so
        the guarded client serves it). Scrolling stops at the first round that adds nothing,
        after `max_scroll_rounds`, once the page holds `max_listing_items` more distinct links
        than it loaded with (the listing keeps no more items than that, and counting from the
        first batch never stops short because of navigation links), or after `page_timeout_s`
        of scrolling; what has been loaded by then is kept. A page that runs no script cannot
        grow, so it is not scrolled at all.
        """
        s = self.settings
        from playwright.sync_api import Error as PlaywrightError
        from playwright.sync_api import TimeoutError as PlaywrightTimeout

        deadline = time.monotonic() + s.page_timeout_s
        rounds = 0
        try:
            state = page.evaluate(_PAGE_STATE_JS)
        except PlaywrightError as exc:
            self.log.info("not scrolling %s: %s", url, str(exc).splitlines()[0])
            return 0
        if not state["scripts"]:
            self.log.debug("not scrolling %s: it runs no script, so it cannot load more", url)
            return 0
        first_links = state["links"]
        stop = "max_scroll_rounds reached"
        while rounds < s.max_scroll_rounds:
            if state["links"] - first_links >= s.max_listing_items:
                stop = f"{s.max_listing_items} new links (max_listing_items)"
                break
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                stop = f"scrolling took {s.page_timeout_s}s (page_timeout_s)"
                break
            rounds += 1
            try:
                page.evaluate(_SCROLL_JS)
                page.wait_for_function(_GREW_JS, arg=[state["height"], state["links"]],
                                       timeout=min(s.scroll_settle_s, remaining) * 1000,
                                       polling=100)
                state = page.evaluate(_PAGE_STATE_JS)
            except PlaywrightTimeout:
                stop = "nothing new appeared"
                break
            except PlaywrightError as exc:  # the page navigated away or crashed meanwhile
                stop = f"the page failed: {str(exc).splitlines()[0]}"
                break
        self.log.info("scrolled %s: %d round(s), %d -> %d links; stopped: %s", url, rounds,
                      first_links, state["links"], stop)
        return rounds

    def _navigate(self, context, url: str, refused: list[CrawlError], redirects: list[str],
                  timeout_ms: float):
        """page.goto, following the page's redirects hop by hop (see the route in
        `_render_once`); returns the page and its final response.

        Each hop gets a fresh page of the same context (cookies carry over): the failed
        follow-up leaves Chromium committing an error page, which would interrupt a new
        navigation started in the same page.
        """
        s = self.settings
        from playwright.sync_api import Error as PlaywrightError
        from playwright.sync_api import TimeoutError as PlaywrightTimeout

        current = url
        page = None
        for _ in range(s.max_redirects + 1):
            check_web_url(current, s, self.allow)
            self.limiter.wait(urlsplit(current).hostname or "")
            refused.clear()
            redirects.clear()
            if page is not None:
                page.close()
            page = context.new_page()
            page.set_default_timeout(timeout_ms)
            try:
                resp = page.goto(current, wait_until="load", timeout=timeout_ms)
            except PlaywrightTimeout as exc:
                if refused:
                    raise refused[0] from exc
                raise FetchTimeout(
                    f"timed out after {s.page_timeout_s}s rendering {current}") from exc
            except PlaywrightError as exc:
                if refused:
                    raise refused[0] from exc
                if redirects:
                    current = redirects[0]
                    continue
                raise NetworkError(f"browser could not load {current}: "
                                   f"{str(exc).splitlines()[0]}") from exc
            if refused:
                raise refused[0]
            if redirects and resp is not None and 300 <= resp.status < 400:
                current = redirects[0]
                continue
            if resp is None:
                raise NetworkError(f"no response for {current}", retryable=False)
            return page, resp
        raise CrawlError(f"more than {s.max_redirects} redirects from {url}", kind="http_error")


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
