"""A page's own title, chosen among the places a page states it.

The first `<h1>` of a page is often the site's banner ("Hi, I'm Tom, I write about ..."), not
the post's title. Pages state their title in several independent places: a heading inside the
article, the Open Graph / Twitter card title, JSON-LD `headline`, and `<title>` (usually with a
" | Site" suffix). A candidate that another, independent source confirms wins; a `<title>`'s
site suffix is dropped only when another source confirms the shorter form. With no agreement,
the crawler's own title selector, then the article's heading, then the metadata are trusted,
in that order, and a page-wide `<h1>` last.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass

from bs4 import BeautifulSoup, Tag

from twin_assets.crawling.soup import text_of

_SEPARATOR = re.compile(r"^\s+(?:[|\-–—·•»~/]|::)\s+|^\s*[|·•»]\s*")  # not ":" (titles use it)
_KEY_DROP = re.compile(r"[\W_]+", re.UNICODE)
_MAX_TITLE = 300


@dataclass(frozen=True)
class _Candidate:
    text: str
    source: str  # dom:<node id>, meta, jsonld or doctitle: agreement needs two different sources
    rank: int  # preference when nothing agrees (lower first)


def title_key(text: str) -> str:
    """A title compared loosely: case, punctuation and spacing ignored."""
    return _KEY_DROP.sub(" ", text.casefold()).strip()


def _confirms(shorter: str, longer: str) -> bool:
    """`longer` is `shorter` itself, or `shorter` followed by a separator and a site name."""
    if title_key(shorter) == title_key(longer):
        return True
    if not longer.casefold().startswith(shorter.casefold()) or not title_key(shorter):
        return False
    return bool(_SEPARATOR.match(longer[len(shorter) :]))


def _jsonld_headlines(soup: BeautifulSoup) -> Iterator[str]:
    for script in soup.find_all("script", attrs={"type": "application/ld+json"}):
        try:
            data = json.loads(script.string or "")
        except ValueError:
            continue
        stack = [data]
        while stack:
            item = stack.pop(0)
            if isinstance(item, list):
                stack.extend(item)
            elif isinstance(item, dict):
                if isinstance(item.get("headline"), str):
                    yield item["headline"]
                if isinstance(item.get("@graph"), list):
                    stack.extend(item["@graph"])


def _meta(soup: BeautifulSoup, key: str, value: str) -> str | None:
    node = soup.find("meta", attrs={key: value})
    return " ".join(str(node.get("content") or "").split()) or None if node else None


def _article_heading(scope: Tag | None) -> Tag | None:
    """The article's own heading: its first `<h1>`, else a heading before its first paragraph
    (themes that put the post title in an `<h2 class="post-title">`)."""
    if scope is None:
        return None
    h1 = scope.find("h1")
    if h1 is not None and text_of(h1):
        return h1
    for node in scope.find_all(["h2", "h3", "p"]):
        if node.name == "p" and text_of(node) and len(text_of(node) or "") > 80:
            return None
        if node.name != "p" and text_of(node):
            return node
    return None


def _candidates(
    soup: BeautifulSoup, scopes: list[Tag], selectors: list[str] | tuple[str, ...]
) -> list[_Candidate]:
    out: list[_Candidate] = []

    def add(text: str | None, source: str, rank: int) -> None:
        text = " ".join((text or "").split())
        if text and len(text) <= _MAX_TITLE:
            out.append(_Candidate(text, source, rank))

    for selector in selectors:
        node = soup.select_one(selector)
        if node is not None and text_of(node):
            add(text_of(node), f"dom:{id(node)}", 0)
            break
    for scope in scopes:
        if (node := _article_heading(scope)) is not None:
            add(text_of(node), f"dom:{id(node)}", 1)
            break
    add(_meta(soup, "property", "og:title"), "meta", 2)
    add(_meta(soup, "name", "twitter:title"), "meta", 2)
    for headline in _jsonld_headlines(soup):
        add(headline, "jsonld", 2)
    if (h1 := soup.find("h1")) is not None:
        add(text_of(h1), f"dom:{id(h1)}", 4)
    if soup.title is not None:
        add(text_of(soup.title), "doctitle", 3)
    return out


def choose_title(
    soup: BeautifulSoup, scopes: list[Tag], selectors: list[str] | tuple[str, ...] = ()
) -> str | None:
    """The page's title. `scopes` are the article containers, innermost first (their heading
    is the article's own); `selectors` are the crawler's title selectors (trusted first)."""
    candidates = _candidates(soup, [s for s in scopes if s is not None], selectors)
    if not candidates:
        return None
    ordered = sorted(candidates, key=lambda c: c.rank)
    for cand in ordered:
        others = [o for o in candidates if o.source != cand.source]
        if not any(_confirms(cand.text, o.text) or _confirms(o.text, cand.text) for o in others):
            continue
        # confirmed: its shortest confirmed form ("Post" rather than "Post | Site")
        shorter = [o.text for o in others if _confirms(o.text, cand.text)]
        return min([cand.text, *shorter], key=len)
    return ordered[0].text
