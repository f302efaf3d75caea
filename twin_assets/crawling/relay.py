"""Chromium's network, relayed: every http(s) request a rendered page makes is fetched by the
crawl's guarded client and handed back to the browser with `route.fulfill`.

Not by Playwright's `route.fetch`, which would resolve the name again on its own: through the
guarded client the address actually dialled is checked, so DNS rebinding cannot reach a
private address. Playwright does not route the hops of a redirect that Chromium follows by
itself, so Chromium is never left to follow one: redirects of sub-resources and frames are
followed here (`redirects.follow_redirects`, each hop checked, rewritten as a browser would),
and a redirect of the page itself is handed to Chromium as it is (so cookies set on the way
are kept) and recorded, so that the renderer navigates to the checked Location itself.
Chromium's own attempt to follow it fails, having no resolver (see `browser.CHROMIUM_ARGS`).

Each relayed request runs under the hard deadline of the guarded client (`page_timeout_s`,
nested inside the navigation's own), so a trickling server cannot block the route handler,
and with it the page, past the page's time limit. Frames from another origin than the page
are aborted: only the main frame's DOM is extracted, and a frame is how a page would pull a
neighbouring service into view. For the same reason the same-origin policy is kept for what
scripts read: Playwright adds a permissive `Access-Control-Allow-Origin` to any fulfilled
cross-origin response that has none, so a `fetch()` of another origin (or one redirected to
another origin) whose server did not allow it is aborted here, as Chromium would have refused
it, instead of handing the page another service's answer. A navigation of the page itself that is refused (a redirect
by script or `<meta http-equiv=refresh>` to a refused address, a binary payload) is recorded
at any time, not only while the page loads, so that Chromium's error page that replaces the
content is reported as that refusal (`PageRoute.raise_if_blocked`), never stored.
"""

from __future__ import annotations

import logging
import time
from typing import Any
from urllib.parse import urlsplit

import httpx

from twin_assets.crawling.errors import CrawlError, FetchTimeout, NetworkError, NotHtml
from twin_assets.crawling.http_fetch import GuardedHttp, read_capped
from twin_assets.crawling.redirects import BrowserRequest, Redirect, follow_redirects, redirect_target
from twin_assets.crawling.safety import check_web_url
from twin_assets.crawling.sniff import binary_reason

HEAVY_RESOURCES = frozenset({"image", "font", "media"})
# Schemes that never reach the network from the browser; everything else is checked.
LOCAL_SCHEMES = ("data:", "blob:", "about:")
# A sub-resource (script, stylesheet, XHR) may be bigger than a page of text (JS bundles are),
# but is still buffered in memory before Chromium gets it, so it is capped too.
SUBRESOURCE_SIZE_FACTOR = 4
# Connection-level headers belong to one hop and are set again by httpx for its own connection;
# Accept-Encoding is replaced by what httpx can decode (the body goes to Chromium decoded).
_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
        "host",
        "content-length",
    }
)
_DROPPED_REQUEST_HEADERS = _HOP_BY_HOP | {"accept-encoding"}
_DROPPED_RESPONSE_HEADERS = _HOP_BY_HOP | {"content-encoding"}

# what route.fulfill needs (status, headers, body), and the URL the body finally came from
Relayed = tuple[int, dict[str, str], bytes, str]
# Requests whose response the page's script reads: the same-origin policy applies to them.
READ_BY_SCRIPT = frozenset({"fetch", "xhr", "eventsource"})


def _origin(url: str) -> tuple[str, str, int | None]:
    try:
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        return scheme, (parts.hostname or ""), parts.port or {"http": 80, "https": 443}.get(scheme)
    except ValueError:
        return "", url, None


def _reader_origin(request: Any) -> tuple[str, str, int | None] | None:
    """The origin of the document that will read `request`'s response: its Origin header,
    else its frame's URL, else (a worker's request) its Referer; None when unknown."""
    from playwright.sync_api import Error as PlaywrightError

    origin = request.headers.get("origin")
    if origin:
        return ("null", "", None) if origin.strip() == "null" else _origin(origin.strip())
    try:
        return _origin(request.frame.url)
    except PlaywrightError:
        referer = request.headers.get("referer")
        return _origin(referer) if referer else None


def relay_request(
    http: GuardedHttp, request: Any, limit: int, *, follow: bool, budget_s: float | None = None
) -> Relayed:
    """Do one intercepted browser request through the guarded client.

    With `follow`, redirects are followed here, each hop checked like the first; without it,
    a 3xx comes back as it is. The request is built by hand rather than with
    `client.build_request`, so the client's own cookie jar and default headers do not leak
    into what the page asked for; the browser's headers (its cookies included) are sent.
    The whole exchange, redirects included, ends within `page_timeout_s`, or `budget_s` when
    that is shorter (what is left of the page's own time; 0 or less fails at once).
    """
    s = http.settings
    headers = {k.lower(): v for k, v in request.headers.items() if k.lower() not in _DROPPED_REQUEST_HEADERS}
    headers["accept-encoding"] = "gzip, deflate"
    current = BrowserRequest(request.method, request.url, headers, request.post_data_buffer)
    deadline = time.monotonic() + s.page_timeout_s

    def hop(url: str) -> Relayed | Redirect:
        nonlocal current
        outgoing = httpx.Request(
            current.method,
            url,
            headers=current.headers,
            content=current.content,
            extensions={"timeout": http.client.timeout.as_dict()},
        )
        try:
            resp = http.client.send(outgoing, stream=True, follow_redirects=False)
            try:
                if follow and resp.is_redirect:
                    target = redirect_target(url, resp.headers["location"])
                    current = current.redirected(resp.status_code, target)
                    return Redirect(target)
                body = read_capped(resp, url, limit, deadline, s.page_timeout_s)
            finally:
                resp.close()
        except httpx.TimeoutException as exc:
            raise FetchTimeout(f"timed out after {s.page_timeout_s}s loading {url}") from exc
        except httpx.TransportError as exc:
            raise NetworkError(f"could not load {url}: {exc}") from exc
        except httpx.InvalidURL as exc:
            raise CrawlError(f"malformed URL {url!r}: {exc}", kind="malformed") from exc
        merged: dict[str, list[str]] = {}
        for name, value in resp.headers.multi_items():
            if name.lower() not in _DROPPED_RESPONSE_HEADERS:
                merged.setdefault(name.lower(), []).append(value)
        # Playwright splits a fulfilled Set-Cookie on newlines; other repeats fold with commas.
        out = {name: ("\n" if name == "set-cookie" else ", ").join(values) for name, values in merged.items()}
        return resp.status_code, out, body, url

    limit_s = s.page_timeout_s if budget_s is None else min(s.page_timeout_s, budget_s)
    with http.deadline.within(limit_s):
        return follow_redirects(request.url, s, http.allow, hop)


class PageRoute:
    """The request route of one rendering (`context.route("**/*", route.handle)`).

    Besides relaying, it records what happened to the page's own navigation: why it was
    refused (`refused`, at any time: while `navigating` and after, when the page's script
    navigates) and, while `navigating`, where it was redirected (`redirects`), which the
    renderer reads after each navigation hop. The handler blocks Playwright's dispatcher
    while it runs, so a page's requests go one at a time.

    That is also why every request also gets only what is left of the page's time: otherwise
    a page firing many requests at a trickling server would hold the crawl for
    `page_timeout_s` per request. Each navigation hop has `page_timeout_s` from its first
    request (Playwright's own navigation timeout runs alongside); once the page has loaded
    (`navigating` cleared), waiting for content and scrolling get `LATE_FACTOR` times
    `page_timeout_s` for all their requests together.
    """

    LATE_FACTOR = 2  # waiting for scripts to settle, then scrolling: each bounded by page_timeout_s

    def __init__(self, http: GuardedHttp, log: logging.Logger):
        self.http = http
        self.log = log
        self.refused: list[CrawlError] = []  # why the page's own navigation was blocked
        self.redirects: list[str] = []  # where the page's own navigation was redirected to
        self._navigating = True
        self._ends_at: float | None = None  # when this hop's (or the loaded page's) time is up

    @property
    def navigating(self) -> bool:
        """page.goto in progress (later navigations are the page's JS)."""
        return self._navigating

    @navigating.setter
    def navigating(self, value: bool) -> None:
        self._navigating = value
        self._ends_at = (
            None if value else time.monotonic() + self.LATE_FACTOR * self.http.settings.page_timeout_s
        )

    def start_hop(self) -> None:
        """Forget the previous navigation hop's outcome; the next hop's time starts with its
        first request."""
        self.refused.clear()
        self.redirects.clear()
        self._ends_at = None

    def _budget(self) -> float:
        """Seconds left for a request of the page (see the class docstring)."""
        now = time.monotonic()
        if self._ends_at is None:
            self._ends_at = now + self.http.settings.page_timeout_s
        return self._ends_at - now

    def raise_if_blocked(self, page: Any) -> None:
        """Raise why the page's own navigation was refused since it loaded (a script or
        meta-refresh redirect to a refused address, a binary payload), or when the page shows
        one of Chromium's error pages: what was captured is then not the author's content."""
        if self.refused:
            raise self.refused[0]
        url = page.url or ""
        if url.startswith("chrome-error:"):
            raise NetworkError(f"the page navigated to a browser error page ({url})", retryable=False)

    def handle(self, route: Any, request: Any) -> None:
        from playwright.sync_api import Error as PlaywrightError

        s = self.http.settings
        nav = request.is_navigation_request()
        try:
            frame = request.frame
            main_nav = nav and frame.parent_frame is None
            page_url = frame.page.main_frame.url if nav and not main_nav else ""
        except PlaywrightError:  # no frame (a worker's request): not the page's navigation
            main_nav, page_url = False, ""
        page_nav = main_nav and self.navigating
        if s.block_heavy_resources and request.resource_type in HEAVY_RESOURCES:
            route.abort("blockedbyclient")
            return
        if request.url.startswith(LOCAL_SCHEMES):
            route.continue_()
            return
        if nav and not main_nav and _origin(request.url) != _origin(page_url):
            # A frame of another origin: never extracted, so never loaded (see module doc).
            self.log.debug("blocked cross-origin frame %s in %s", request.url, page_url)
            route.abort("blockedbyclient")
            return
        limit = s.max_page_bytes if nav else s.max_page_bytes * SUBRESOURCE_SIZE_FACTOR
        try:
            status, headers, body, final = relay_request(
                self.http, request, limit, follow=not page_nav, budget_s=self._budget()
            )
            location = headers.get("location")
            if page_nav and 300 <= status < 400 and location:
                target = redirect_target(request.url, location)
                check_web_url(target, s, self.http.allow)
                self.redirects.append(target)
            elif main_nav:
                charset = headers.get("content-type", "").partition("charset=")[2]
                charset = charset.split(";")[0].strip(" \"'")
                why = binary_reason(body, charset or None)
                if why:
                    raise NotHtml(
                        f"{request.url} is served as {headers.get('content-type') or 'a page'} but {why}"
                    )
            elif request.resource_type in READ_BY_SCRIPT and "access-control-allow-origin" not in headers:
                reader = _reader_origin(request)
                if reader is None or reader != _origin(final):
                    self.log.debug("blocked cross-origin read of %s by %s", final, reader)
                    route.abort("accessdenied")
                    return
        except CrawlError as exc:
            if main_nav:
                self.refused.append(exc)
            self.log.debug("blocked request to %s: %s", request.url, exc.reason)
            route.abort(
                "timedout"
                if isinstance(exc, FetchTimeout)
                else "failed"
                if isinstance(exc, NetworkError)
                else "blockedbyclient"
            )
            return
        except Exception as exc:  # never leave a request hanging until the page times out
            self.log.exception("could not relay %s to the browser", request.url)
            if main_nav:
                self.refused.append(CrawlError(f"could not relay {request.url}: {exc!r}"))
            route.abort("failed")
            return
        try:
            route.fulfill(status=status, headers=headers, body=body)
        except PlaywrightError as exc:  # the page went away (navigated, closed) meanwhile
            self.log.debug("could not hand %s to the browser: %s", request.url, str(exc).splitlines()[0])
