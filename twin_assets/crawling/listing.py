"""Is a registered page a listing (a blog index, an archive, a tag page) or an article?

A page is a listing only when it is shaped like one: several sibling elements of the same
shape, each holding one link to a page of the site and little text (post cards, list items),
and either little prose of its own next to them or a path that names an index (archive, tag,
category, pagination, a year). Links inside a paragraph's sentences ("I wrote about <a>pool
sizing</a> last month") are never items, however many there are: an article that links to
sibling posts is still an article.

`read_listing` only reads the page; the generic crawler decides what to crawl from its verdict.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import urljoin, urlsplit

from bs4 import Tag
from bs4.element import NavigableString

from twin_assets.crawling.clutter import remove_clutter
from twin_assets.crawling.soup import soup_of
from twin_assets.crawling.urls import normalize_url, same_site

# Path segments of pages that are not posts: indexes, site pages, assets.
NOT_POST_SEGMENTS = frozenset({
    "tag", "tags", "category", "categories", "topic", "topics", "archive", "archives", "about",
    "feed", "page", "author", "authors", "search", "privacy", "rss", "atom", "assets", "static",
    "subscribe", "contact", "login", "signin", "signup", "wp-admin", "wp-login.php", "cdn-cgi",
    "comments", "share", "cart", "terms",
})
_NOT_PAGE_EXT = re.compile(
    r"\.(?:xml|rss|atom|css|js|json|png|jpe?g|gif|svg|webp|avif|ico|pdf|zip|gz|mp[34]|webm|"
    r"woff2?|ttf|txt)$", re.IGNORECASE)
# Paths that name an index of posts (matched against the whole path).
_INDEX_PATH = re.compile(
    r"/(?:tags?|categor(?:y|ies)|topics?|archives?|series|authors?)(?:/[^/]+)?/?$"  # /tag/x/
    r"|/page/\d+/?$"  # pagination
    r"|^/(?:\d{4}/)(?:\d{1,2}/)?$",  # /2023/ or /2023/03/
    re.IGNORECASE)
# A site's home page, or a section named like a blog's index (/blog/, /posts/, /writing/).
_HOME_OR_SECTION = re.compile(
    r"^/?$|^(?:/[^/]+)?/(?:blog|posts|articles|writing|writings|essays|notes|journal|news|"
    r"stories|newsletter|index\.html?)/?$", re.IGNORECASE)
_PAGED_QUERY = re.compile(r"(?:^|&)(?:page|paged|p)=\d+(?:&|$)", re.IGNORECASE)

ITEM_MAX_WORDS = 150  # a card: title, date, an excerpt; more is a section of prose
MIN_GROUP = 2  # siblings of one shape needed to call them items
SENTENCE_WORDS = 12  # a block of text with this many words is prose (a tagline or menu is not)
PROSE_FLOOR = 40  # less prose of its own than this (or than its items hold): "little prose"
REAL_PROSE = 30  # a listing with this much prose of its own is kept as a document too
_IN_TEXT_MIN_WORDS = 3  # words of a paragraph outside its links that make a link "in-text"
_BLOCKS = ("p", "li", "dd", "dt", "td", "th", "blockquote", "figcaption", "h1", "h2", "h3",
           "h4", "h5", "h6", "div", "section", "article")
_TEXT_BLOCKS = frozenset({*_BLOCKS, "main", "body", "ul", "ol", "dl", "table", "tr", "pre",
                          "header", "aside", "figure", "details", "summary", "form"})


@dataclass
class ListingVerdict:
    """What a page is: its item links (empty for an article) and how much prose it has."""

    items: list[str] = field(default_factory=list)
    own_words: int = 0  # words outside the item elements (after clutter is removed)
    prose_words: int = 0  # of those, the words in blocks of prose (`SENTENCE_WORDS` or more)
    item_words: int = 0
    index_path: bool = False
    reason: str = ""
    item_positions: list[int] = field(default_factory=list, repr=False)  # in find_all order

    @property
    def is_listing(self) -> bool:
        return bool(self.items)

    @property
    def has_own_prose(self) -> bool:
        return self.prose_words >= REAL_PROSE


def is_post_url(url: str, page_url: str, registered_url: str) -> bool:
    """A link that may be a post of the author's site: same site as the registered link and
    the page, not the page itself, not an index, site page or asset."""
    if not (same_site(url, registered_url) and same_site(url, page_url)):
        return False
    if normalize_url(url) == normalize_url(page_url):
        return False
    path = urlsplit(url).path
    segments = [s.lower() for s in path.split("/") if s]
    if not segments or _NOT_PAGE_EXT.search(path) or _INDEX_PATH.search(path):
        return False
    return not any(s in NOT_POST_SEGMENTS for s in segments)


def is_index_path(url: str) -> bool:
    """Whether the URL itself names an index: archive, tag, category, pagination, a year, a
    site's home page or a blog section (/blog/, /posts/)."""
    parts = urlsplit(url)
    path = parts.path or "/"
    return bool(_INDEX_PATH.search(path) or _HOME_OR_SECTION.search(path)
                or _PAGED_QUERY.search(parts.query))


def _words(node: Tag) -> int:
    return len(node.get_text(" ", strip=True).split())


def _in_text(anchor: Tag) -> bool:
    """Whether the link sits inside a sentence: its nearest block is a paragraph (or quote)
    with words of its own around the links."""
    block = anchor.find_parent(_BLOCKS)
    if block is None or block.name not in ("p", "blockquote", "dd", "td"):
        return False
    link_words = sum(_words(a) for a in block.find_all("a"))
    return _words(block) - link_words >= _IN_TEXT_MIN_WORDS


def _prose_words(scope: Tag, skip: set[int]) -> int:
    """Words in blocks of prose (paragraphs, text in divs, long list items) outside the
    elements in `skip`: each text is counted for its nearest block, and a block counts once
    it holds `SENTENCE_WORDS` words, so that taglines, menus and dates do not."""
    per_block: dict[int, int] = {}
    for text in scope.find_all(string=True):
        if type(text) is not NavigableString or not text.strip():
            continue  # comments, CDATA, doctype
        block: Tag | None = None
        skipped = False
        for parent in text.parents:
            if id(parent) in skip:
                skipped = True
                break
            if block is None and parent.name in _TEXT_BLOCKS:
                block = parent
            if parent is scope:
                break
        if not skipped:
            key = id(block if block is not None else scope)
            per_block[key] = per_block.get(key, 0) + len(text.split())
    return sum(n for n in per_block.values() if n >= SENTENCE_WORDS)


def read_listing(html: str, page_url: str, registered_url: str) -> ListingVerdict:
    """Read a page's item structure and prose, and decide whether it is a listing."""
    soup = soup_of(html)
    position = {id(t): i for i, t in enumerate(soup.find_all(True))}
    scope = soup.select_one("main") or soup.select_one("[role=main]") or soup.body or soup
    remove_clutter(scope, ["header"])

    # Each candidate link's item element: its highest ancestor (below the scope) that holds
    # no other candidate link. Links inside sentences are never items.
    item_of: dict[int, tuple[Tag, str]] = {}
    urls_in: dict[int, set[str]] = {}
    anchors: list[tuple[Tag, str]] = []
    for a in scope.find_all("a", href=True):
        href = urljoin(page_url, str(a["href"]).strip())
        if urlsplit(href).scheme not in ("http", "https"):
            continue
        url = normalize_url(href)
        if not is_post_url(url, page_url, registered_url):
            continue
        anchors.append((a, url))
        for parent in a.parents:
            urls_in.setdefault(id(parent), set()).add(url)
            if parent is scope:
                break
    for a, url in anchors:
        if _in_text(a):
            continue
        node: Tag = a
        while node.parent is not None and node.parent is not scope and \
                urls_in.get(id(node.parent), set()) == {url}:
            node = node.parent
        item_of.setdefault(id(node), (node, url))

    # Items are siblings of one shape (same parent, same tag), each with little text.
    groups: dict[tuple[int, str], list[tuple[Tag, str]]] = {}
    for node, url in item_of.values():
        if node.parent is not None:
            groups.setdefault((id(node.parent), node.name), []).append((node, url))
    elements: list[tuple[Tag, str]] = []
    for members in groups.values():
        if len(members) >= MIN_GROUP and all(_words(n) <= ITEM_MAX_WORDS for n, _ in members):
            elements.extend(members)

    total = _words(scope)
    item_words = sum(_words(n) for n, _ in elements)
    verdict = ListingVerdict(own_words=total - item_words, item_words=item_words,
                             prose_words=_prose_words(scope, {id(n) for n, _ in elements}),
                             index_path=is_index_path(page_url))
    if not elements:
        verdict.reason = "no repeated item structure"
        return verdict
    little_prose = verdict.prose_words < max(PROSE_FLOOR, item_words)
    if not (little_prose or verdict.index_path):
        verdict.reason = (f"{len(elements)} link items but {verdict.prose_words} words of prose "
                          f"of its own (against {item_words} in the items): an article")
        return verdict
    elements.sort(key=lambda e: position.get(id(e[0]), 0))  # document order
    verdict.items = list(dict.fromkeys(url for _, url in elements))
    verdict.item_positions = [position[id(n)] for n, _ in elements if id(n) in position]
    verdict.reason = ("an index path" if verdict.index_path and not little_prose else
                      f"{len(verdict.items)} link items and {verdict.prose_words} words of prose "
                      "of its own")
    return verdict


def without_items(html: str, verdict: ListingVerdict) -> str:
    """The page's HTML with its listing items removed, for keeping the rest (an intro, an
    about text) as a document of its own without every excerpt repeated in it."""
    soup = soup_of(html)
    tags = soup.find_all(True)  # the same parse as `read_listing`'s, so positions match
    for position in verdict.item_positions:
        if position < len(tags) and tags[position].parent is not None:
            tags[position].decompose()
    return str(soup)


# -- feeds -------------------------------------------------------------------------------------
FEED_TYPES = ("application/rss+xml", "application/atom+xml", "application/xml", "text/xml",
              "application/rdf+xml")
_FEED_PATH = re.compile(r"(?:\.(?:xml|rss|atom)|/(?:feed|rss|atom)(?:\.\w+)?)/?$", re.IGNORECASE)
_FEED_ROOT = re.compile(r"^\s*(?:<\?xml[^>]*\?>\s*)?(?:<!--.*?-->\s*)*<(?:rss|feed|rdf:RDF)\b",
                        re.IGNORECASE | re.DOTALL)


def looks_like_feed_url(url: str) -> bool:
    """A URL named like an RSS/Atom feed (/feed/, /rss.xml, /atom.xml, /index.xml)."""
    return bool(_FEED_PATH.search(urlsplit(url).path))


def is_feed(text: str) -> bool:
    """Whether a fetched document is an RSS or Atom feed rather than a page."""
    return bool(_FEED_ROOT.match(text[:4000]))


def feed_entries(text: str, feed_url: str, registered_url: str) -> list[str]:
    """The entry links of an RSS/Atom feed on the registered site, in feed order."""
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(text, "xml")
    urls: list[str] = []
    for entry in soup.find_all(["item", "entry"]):
        href = None
        for link in entry.find_all("link", recursive=False):
            rel = link.get("rel") or "alternate"
            if link.get("href") and rel == "alternate":
                href = str(link["href"])
                break
            if link.string and link.string.strip():
                href = link.string.strip()
                break
        if href is None and (guid := entry.find("guid")) is not None and guid.string and \
                str(guid.get("isPermaLink", "true")).lower() == "true":
            href = guid.string.strip()
        if not href:
            continue
        url = normalize_url(urljoin(feed_url, href))
        if urlsplit(url).scheme in ("http", "https") and same_site(url, registered_url) and \
                url not in urls:
            urls.append(url)
    return urls
