"""Typed crawl errors: each carries the `FailureKind` recorded in the warehouse."""

from __future__ import annotations

from twin_assets.domain.documents import FailureKind


class CrawlError(Exception):
    """A link could not be crawled; `kind` says why in a machine-readable way."""

    kind: FailureKind = "error"
    retryable: bool = False

    def __init__(self, reason: str, *, kind: FailureKind | None = None, retryable: bool | None = None):
        super().__init__(reason)
        self.reason = reason
        if kind is not None:
            self.kind = kind
        if retryable is not None:
            self.retryable = retryable


class RefusedAddress(CrawlError):
    kind = "refused_address"


class UnsupportedScheme(CrawlError):
    kind = "unsupported_scheme"


class FetchTimeout(CrawlError):
    kind = "timeout"
    retryable = True


class HttpStatusError(CrawlError):
    kind = "http_error"

    def __init__(self, url: str, status: int):
        super().__init__(f"HTTP {status} for {url}", retryable=status >= 500 or status == 429)
        self.status = status


class TooLarge(CrawlError):
    kind = "too_large"


class NetworkError(CrawlError):
    kind = "network_error"
    retryable = True


class NoContent(CrawlError):
    kind = "no_content"


class LoginWall(CrawlError):
    kind = "login_wall"


class GitError(CrawlError):
    kind = "git_error"


class ExportError(CrawlError):
    kind = "export_error"


class NotHtml(CrawlError):
    """The server called it a page (text/html, text/plain) but sent a binary file."""

    kind = "not_html"
