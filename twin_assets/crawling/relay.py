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
"""

from __future__ import annotations

import logging
import time
from typing import Any

import httpx

from twin_assets.crawling.errors import CrawlError, FetchTimeout, NetworkError
from twin_assets.crawling.http_fetch import GuardedHttp, read_capped
from twin_assets.crawling.redirects import BrowserRequest, Redirect, follow_redirects, redirect_target
from twin_assets.crawling.safety import check_web_url

HEAVY_RESOURCES = frozenset({"image", "font", "media"})
# Schemes that never reach the network from the browser; everything else is checked.
LOCAL_SCHEMES = ("data:", "blob:", "about:")
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

Relayed = tuple[int, dict[str, str], bytes]  # what route.fulfill needs: status, headers, body


def relay_request(http: GuardedHttp, request: Any, limit: int, *, follow: bool) -> Relayed:
    """Do one intercepted browser request through the guarded client.

    With `follow`, redirects are followed here, each hop checked like the first; without it,
    a 3xx comes back as it is. The request is built by hand rather than with
    `client.build_request`, so the client's own cookie jar and default headers do not leak
    into what the page asked for; the browser's headers (its cookies included) are sent.
    """
    s = http.settings
    headers = {k.lower(): v for k, v in request.headers.items()
               if k.lower() not in _DROPPED_REQUEST_HEADERS}
    headers["accept-encoding"] = "gzip, deflate"
    current = BrowserRequest(request.method, request.url, headers, request.post_data_buffer)
    deadline = time.monotonic() + s.page_timeout_s

    def hop(url: str) -> Relayed | Redirect:
        nonlocal current
        outgoing = httpx.Request(current.method, url, headers=current.headers,
                                 content=current.content,
                                 extensions={"timeout": http.client.timeout.as_dict()})
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
        merged: dict[str, list[str]] = {}
        for name, value in resp.headers.multi_items():
            if name.lower() not in _DROPPED_RESPONSE_HEADERS:
                merged.setdefault(name.lower(), []).append(value)
        # Playwright splits a fulfilled Set-Cookie on newlines; other repeats fold with commas.
        out = {name: ("\n" if name == "set-cookie" else ", ").join(values)
               for name, values in merged.items()}
        return resp.status_code, out, body

    return follow_redirects(request.url, s, http.allow, hop)


class PageRoute:
    """The request route of one rendering (`context.route("**/*", route.handle)`).

    Besides relaying, it records what happened to the page's own navigation while
    `navigating` is set: why it was refused (`refused`) and where it was redirected
    (`redirects`), which the renderer reads after each navigation hop. The handler blocks
    Playwright's dispatcher while it runs, so a page's requests go one at a time.
    """

    def __init__(self, http: GuardedHttp, log: logging.Logger):
        self.http = http
        self.log = log
        self.refused: list[CrawlError] = []  # why the page's own navigation was blocked
        self.redirects: list[str] = []  # where the page's own navigation was redirected to
        self.navigating = True  # page.goto in progress (later navigations are the page's JS)

    def start_hop(self) -> None:
        """Forget the previous navigation hop's outcome."""
        self.refused.clear()
        self.redirects.clear()

    def handle(self, route: Any, request: Any) -> None:
        from playwright.sync_api import Error as PlaywrightError

        s = self.http.settings
        try:
            page_nav = (request.is_navigation_request() and self.navigating
                        and request.frame.parent_frame is None)
        except PlaywrightError:  # no frame (a worker's request): not the page's navigation
            page_nav = False
        if s.block_heavy_resources and request.resource_type in HEAVY_RESOURCES:
            route.abort("blockedbyclient")
            return
        if request.url.startswith(LOCAL_SCHEMES):
            route.continue_()
            return
        nav = request.is_navigation_request()
        limit = s.max_page_bytes if nav else s.max_page_bytes * SUBRESOURCE_SIZE_FACTOR
        try:
            status, headers, body = relay_request(self.http, request, limit, follow=not page_nav)
            location = headers.get("location")
            if page_nav and 300 <= status < 400 and location:
                target = redirect_target(request.url, location)
                check_web_url(target, s, self.http.allow)
                self.redirects.append(target)
        except CrawlError as exc:
            if page_nav:
                self.refused.append(exc)
            self.log.debug("blocked request to %s: %s", request.url, exc.reason)
            route.abort("timedout" if isinstance(exc, FetchTimeout)
                        else "failed" if isinstance(exc, NetworkError) else "blockedbyclient")
            return
        except Exception as exc:  # never leave a request hanging until the page times out
            self.log.exception("could not relay %s to the browser", request.url)
            if page_nav:
                self.refused.append(CrawlError(f"could not relay {request.url}: {exc!r}"))
            route.abort("failed")
            return
        try:
            route.fulfill(status=status, headers=headers, body=body)
        except PlaywrightError as exc:  # the page went away (navigated, closed) meanwhile
            self.log.debug("could not hand %s to the browser: %s", request.url,
                           str(exc).splitlines()[0])
