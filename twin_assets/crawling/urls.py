"""URLs as the crawler compares and collects them: one canonical form for de-duplication,
the links of a page, and whether a link stays on the author's own site."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode, urljoin, urlsplit, urlunsplit

from twin_assets.crawling.soup import soup_of
from twin_assets.text.tracking import URL_IDENTITY_IGNORED_RE


def normalize_url(url: str) -> str:
    """Canonical form for de-duplication: lower-case host, no fragment, no tracking params."""
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    netloc = host
    if parts.port and not (
        (scheme == "http" and parts.port == 80) or (scheme == "https" and parts.port == 443)
    ):
        netloc = f"{host}:{parts.port}"
    query = urlencode(
        [
            (k, v)
            for k, v in parse_qsl(parts.query, keep_blank_values=True)
            if not URL_IDENTITY_IGNORED_RE.match(k)
        ]
    )
    return urlunsplit((scheme, netloc, parts.path or "/", query, ""))


def page_links(html: str, base_url: str, within: str | None = None) -> list[str]:
    """Absolute http(s) links of a page (optionally only inside a CSS selector), in order."""
    soup = soup_of(html)
    scope = soup.select_one(within) if within else None
    scope = scope or soup
    seen: dict[str, None] = {}
    for a in scope.find_all("a", href=True):
        href = urljoin(base_url, str(a["href"]).strip())
        if urlsplit(href).scheme in ("http", "https"):
            seen.setdefault(normalize_url(href), None)
    return list(seen)


def same_site(url: str, base: str) -> bool:
    a, b = urlsplit(url), urlsplit(base)
    return (a.hostname or "").lower() == (b.hostname or "").lower() and (a.port == b.port)


def path_segments(url: str) -> list[str]:
    return [s for s in urlsplit(url).path.split("/") if s]
