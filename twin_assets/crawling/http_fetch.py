"""Plain HTTP: the crawl's one guarded httpx client, and a GET that follows redirects itself.

The client connects through `safety.GuardedTransport`, which checks the address it actually
dials, so DNS rebinding cannot slip a private address in between the URL check and the
connection; it never follows redirects (`redirects.follow_redirects` checks every hop) and
ignores proxies from the environment (a proxy would connect out of reach of that check).
Bodies are read under a byte cap: Content-Length is believed only when it already says too
much, and the bytes actually received are counted. Every fetch runs under one hard wall-clock
deadline (`page_timeout_s`, redirects included) that bounds connecting, the headers and the
body alike (`safety.HardDeadline`): a server trickling its headers a byte at a time fails as
a timeout instead of holding the crawl. A body that is a binary file whatever its declared
type (a PDF served as text/html) is refused as `not_html` (`sniff`).
"""

from __future__ import annotations

import time
from urllib.parse import urlsplit

import httpx

from twin_assets.crawling.errors import (
    CrawlError,
    FetchTimeout,
    HttpStatusError,
    NetworkError,
    NoContent,
    NotHtml,
    TooLarge,
)
from twin_assets.crawling.page import FetchedPage
from twin_assets.crawling.redirects import Redirect, follow_redirects, redirect_target
from twin_assets.crawling.safety import AllowList, DomainRateLimiter, GuardedTransport, HardDeadline
from twin_assets.crawling.settings import CrawlSettings
from twin_assets.crawling.sniff import binary_reason

HTML_TYPES = ("text/html", "application/xhtml+xml", "text/plain")
JSON_TYPES = ("application/json", "text/json", "application/octet-stream", "text/plain")


def read_capped(resp: httpx.Response, url: str, limit: int, deadline: float, timeout_s: float) -> bytes:
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
            raise FetchTimeout(f"{url} took longer than {timeout_s}s")
    return bytes(body)


class GuardedHttp:
    """The crawl's HTTP side: the guarded client (opened on first use), its rules (settings,
    allow-list, per-host rate limit) and single-attempt GETs; retries are the caller's."""

    def __init__(self, settings: CrawlSettings, allow: AllowList, limiter: DomainRateLimiter):
        self.settings = settings
        self.allow = allow
        self.limiter = limiter
        # Every request of the client runs under the deadlines opened here (`deadline.within`).
        self.deadline = HardDeadline()
        self._client: httpx.Client | None = None

    @property
    def client(self) -> httpx.Client:
        if self._client is None:
            t = self.settings.page_timeout_s
            self._client = httpx.Client(
                # Connects only to addresses that pass the SSRF rules, checked at connect time.
                transport=GuardedTransport(self.allow, deadline=self.deadline),
                follow_redirects=False,  # every hop is re-checked by hand
                timeout=httpx.Timeout(t, connect=min(t, 10.0)),
                headers={
                    "User-Agent": self.settings.user_agent,
                    "Accept": "text/html,application/xhtml+xml,application/json;q=0.9,*/*;q=0.5",
                },
                trust_env=False,  # a proxy from the environment would bypass the address checks
            )
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def get(self, url: str, accept: tuple[str, ...] = HTML_TYPES) -> FetchedPage:
        """One GET of `url` (redirects followed, each hop checked and rate limited), refused
        unless its content type starts with one of `accept`."""
        s = self.settings
        deadline = time.monotonic() + s.page_timeout_s

        def hop(current: str) -> FetchedPage | Redirect:
            self.limiter.wait(urlsplit(current).hostname or "")
            try:
                with self.client.stream("GET", current) as resp:
                    if resp.is_redirect:
                        location = resp.headers.get("location")
                        if not location:
                            raise HttpStatusError(current, resp.status_code)
                        return Redirect(redirect_target(current, location))
                    if resp.status_code >= 400:
                        raise HttpStatusError(current, resp.status_code)
                    ctype = resp.headers.get("content-type", "").split(";")[0].strip().lower()
                    if ctype and not ctype.startswith(accept):
                        raise NoContent(f"{current} is {ctype}, not a page we can read")
                    body = read_capped(resp, current, s.max_page_bytes, deadline, s.page_timeout_s)
                    encoding = resp.charset_encoding or "utf-8"
                    why = binary_reason(body, resp.charset_encoding)
                    if why:
                        raise NotHtml(f"{current} is served as {ctype or 'a page'} but {why}")
                    try:
                        text = body.decode(encoding, errors="replace")
                    except LookupError:
                        text = body.decode("utf-8", errors="replace")
                    return FetchedPage(url, current, resp.status_code, text, "http")
            except httpx.TimeoutException as exc:
                raise FetchTimeout(f"timed out after {s.page_timeout_s}s fetching {current}") from exc
            except httpx.TransportError as exc:
                raise NetworkError(f"network error fetching {current}: {exc}") from exc
            except httpx.InvalidURL as exc:
                raise CrawlError(f"malformed URL {current!r}: {exc}", kind="malformed") from exc

        with self.deadline.within(s.page_timeout_s):
            return follow_redirects(url, s, self.allow, hop)
