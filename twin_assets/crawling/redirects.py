"""Following redirects: the one loop every fetch uses, and how a browser re-sends a request.

Redirects are never followed by a library on its own: every hop's URL must pass
`check_web_url` (scheme, credentials, public addresses) before anything is sent to it, and
the chain is cut after `max_redirects` hops. Plain HTTP GETs, the requests Chromium makes
(relayed through the guarded client) and Chromium's own page navigation all follow their
redirects through `follow_redirects`, so the rule, and the error at its limit, exist once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TypeVar
from urllib.parse import urljoin, urlsplit

from twin_assets.crawling.errors import CrawlError
from twin_assets.crawling.safety import AllowList, check_web_url
from twin_assets.crawling.settings import CrawlSettings

T = TypeVar("T")


@dataclass(frozen=True)
class Redirect:
    """A hop's answer: go on to `url` (already absolute)."""

    url: str


def redirect_target(url: str, location: str) -> str:
    """The absolute URL a Location header sends `url` to."""
    return urljoin(url, location)


def follow_redirects(
    url: str, settings: CrawlSettings, allow: AllowList, hop: Callable[[str], T | Redirect]
) -> T:
    """Call `hop` on `url`, then on every URL it redirects to, each checked first.

    `hop` makes one request and returns its result, or a `Redirect` to follow. At most
    `max_redirects` redirects are followed; one more is a CrawlError ("http_error").
    """
    current = url
    for _ in range(settings.max_redirects + 1):
        check_web_url(current, settings, allow)
        outcome = hop(current)
        if not isinstance(outcome, Redirect):
            return outcome
        current = outcome.url
    raise CrawlError(f"more than {settings.max_redirects} redirects from {url}", kind="http_error")


def _origin(url: str) -> tuple[str, str | None, int | None]:
    parts = urlsplit(url)
    return parts.scheme.lower(), parts.hostname, parts.port


@dataclass(frozen=True)
class BrowserRequest:
    """A request as the browser made it, re-sent hop by hop by the crawler's own client."""

    method: str
    url: str
    headers: dict[str, str] = field(default_factory=dict)  # lower-case names
    content: bytes | None = None

    def redirected(self, status: int, target: str) -> BrowserRequest:
        """The request a browser sends on a `status` redirect to `target` (Fetch standard):
        a 303 (or a 301/302 answering a POST) becomes a GET without a body, and cookies and
        credentials stay with the origin that set them."""
        method, content, headers = self.method, self.content, dict(self.headers)
        if (status == 303 and method != "HEAD") or (status in (301, 302) and method == "POST"):
            method, content = "GET", None
            headers.pop("content-type", None)
        if _origin(target) != _origin(self.url):
            headers.pop("cookie", None)
            headers.pop("authorization", None)
        return replace(self, method=method, url=target, headers=headers, content=content)
