"""Is a registered page a listing (a blog index, an archive, a tag page) or an article?

A page is a listing only when it is shaped like one: several sibling elements of the same
shape, each holding one link to a post of the site and little text (post cards, list items),
and either little prose of its own next to them or a path that names an index (archive, tag,
category, pagination, a year). Whatever surrounds an article never makes it a listing:

- links inside a paragraph's sentences ("I wrote about <a>pool sizing</a> last month") are
  never items, however many there are;
- link groups in site chrome (nav, header, footer, aside, menus, breadcrumbs, "related",
  "more stories", "trending" and "popular" rails, share and tag lists) are never items;
- items must be post-like: a path deeper than the listing's own, or as deep with a slug,
  never a bare top-level section such as `/Opinion`;
- a page with an article's worth of running text of its own (`ARTICLE_WORDS`) is an article
  unless its path names an index and its items outweigh that text;
- a page at a post-like path whose main content (as readability-lxml locates it) is prose
  that holds none of the items is an article whose rails merely repeat one shape.

`read_listing` only reads the page; the generic crawler decides what to crawl from its verdict.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, urljoin, urlsplit

from bs4 import Tag
from bs4.element import NavigableString

from twin_assets.crawling.clutter import remove_clutter
from twin_assets.crawling.locate import readability_content
from twin_assets.crawling.soup import soup_of
from twin_assets.crawling.urls import normalize_url, same_site

# Path segments of pages that are not posts: indexes, site pages, assets.
NOT_POST_SEGMENTS = frozenset(
    {
        "tag",
        "tags",
        "category",
        "categories",
        "topic",
        "topics",
        "archive",
        "archives",
        "about",
        "feed",
        "page",
        "author",
        "authors",
        "search",
        "privacy",
        "rss",
        "atom",
        "assets",
        "static",
        "subscribe",
        "contact",
        "login",
        "signin",
        "signup",
        "wp-admin",
        "wp-login.php",
        "cdn-cgi",
        "comments",
        "share",
        "cart",
        "terms",
    }
)
_NOT_PAGE_EXT = re.compile(
    r"\.(?:xml|rss|atom|css|js|json|png|jpe?g|gif|svg|webp|avif|ico|pdf|zip|gz|mp[34]|webm|"
    r"woff2?|ttf|txt)$",
    re.IGNORECASE,
)
# Paths that name an index of posts (matched against the whole path).
_INDEX_PATH = re.compile(
    r"/(?:tags?|categor(?:y|ies)|topics?|archives?|series|authors?)(?:/[^/]+)?/?$"  # /tag/x/
    r"|/page/\d+/?$"  # pagination
    r"|^/(?:\d{4}/)(?:\d{1,2}/)?$",  # /2023/ or /2023/03/
    re.IGNORECASE,
)
# A site's home page, or a section named like a blog's index (/blog/, /posts/, /writing/).
_HOME_OR_SECTION = re.compile(
    r"^/?$|^(?:/[^/]+)?/(?:blog|posts|articles|writing|writings|essays|notes|journal|news|"
    r"stories|newsletter|index\.html?)/?$",
    re.IGNORECASE,
)
_PAGED_QUERY = re.compile(r"(?:^|&)(?:page|paged|p)=\d+(?:&|$)", re.IGNORECASE)

ITEM_MAX_WORDS = 150  # a card: title, date, an excerpt; more is a section of prose
MIN_GROUP = 2  # siblings of one shape needed to call them items
SENTENCE_WORDS = 12  # a block of text with this many words is prose (a tagline or menu is not)
PROSE_FLOOR = 40  # less prose of its own than this (or than its items hold): "little prose"
REAL_PROSE = 30  # a listing with this much prose of its own is kept as a document too
_IN_TEXT_MIN_WORDS = 3  # words of a paragraph outside its links that make a link "in-text"
ARTICLE_WORDS = 150  # running text of its own that makes a page an article, whatever surrounds it
ITEM_STANDS_FOR = 100  # words an item outweighs (it stands for a whole post) when items "dominate"
MAIN_PROSE_FLOOR = 50  # prose in the located main content that makes it an article's body
LINK_LIST_SHARE = 0.5  # a block whose words are at least this much link text is a link list
CHROME_MAX_SHARE = 0.5  # an element holding more of the page's words is its body, not chrome
_BLOCKS = (
    "p",
    "li",
    "dd",
    "dt",
    "td",
    "th",
    "blockquote",
    "figcaption",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "div",
    "section",
    "article",
)
_TEXT_BLOCKS = frozenset(
    {
        *_BLOCKS,
        "main",
        "body",
        "ul",
        "ol",
        "dl",
        "table",
        "tr",
        "pre",
        "header",
        "aside",
        "figure",
        "details",
        "summary",
        "form",
    }
)


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
    return bool(_INDEX_PATH.search(path) or _HOME_OR_SECTION.search(path) or _PAGED_QUERY.search(parts.query))


# -- site chrome -------------------------------------------------------------------------------
_CHROME_TAGS = frozenset({"nav", "footer", "aside", "menu"})
_CHROME_ROLES = frozenset(
    {
        "navigation",
        "banner",
        "contentinfo",
        "complementary",
        "menu",
        "menubar",
        "toolbar",
        "search",
        "tablist",
    }
)
# One word of a class or id that names chrome (words split at -, _ and camelCase).
_CHROME_WORD = re.compile(
    r"^(?:nav|navs|navbar|navigation|navi|menu|menus|submenu|megamenu|dropdown|masthead|topbar|"
    r"footer|sidebar|breadcrumbs?|crumbs?|related|trending|popular|recirc|recirculation|"
    r"recommended|recommendations?|outbrain|taboola|share|sharing|sharebar|social|tags|taglist|"
    r"tagcloud|keywords|toc|pagination|pager|widgets?|ticker|mostread|mostpopular|readnext|"
    r"upnext|seealso)$"
)
# Phrases of several words that name chrome ("more-stories", "most-read", "read-next").
_CHROME_PHRASE = re.compile(
    r"(?:^|-)(?:more-(?:stories|news|articles|posts|from|on|in|like|to-read|reading|headlines|"
    r"coverage|videos)|read-next|up-next|next-up|see-also|also-read|"
    r"most-(?:read|popular|viewed|shared|emailed|commented)|you-(?:may|might)|tag-(?:list|cloud)|"
    r"post-tags|entry-tags|in-this-section|site-header|page-header-nav)(?:-|$)"
)
# Words that make a "header" the header of an item or of the article, not the site's.
_ITEM_HEADER_WORDS = frozenset(
    {"entry", "post", "card", "article", "item", "story", "teaser", "title", "content"}
)
_LAYOUT_PREFIXES = ("has-", "with-", "no-", "without-", "is-", "show-")
_CAMEL = re.compile(r"([a-z0-9])([A-Z])")


def _attr_words(tag: Tag) -> list[list[str]]:
    """Each class and the id of `tag` as lower-case words; layout flags ("has-sidebar") are
    left out, as they describe the page, not the element."""
    attrs = tag.attrs or {}
    values = [*(attrs.get("class") or []), str(attrs.get("id") or "")]
    out = []
    for value in values:
        value = str(value)
        if not value or value.lower().startswith(_LAYOUT_PREFIXES):
            continue
        words = [w for w in re.split(r"[^a-z0-9]+", _CAMEL.sub(r"\1-\2", value).lower()) if w]
        if words:
            out.append(words)
    return out


def _is_card_header(header: Tag) -> bool:
    """Whether a `<header>` heads one of several sibling cards (each card its own header), as
    blog indexes mark up their posts, rather than the site."""
    card = header.parent
    if card is None or card.parent is None:
        return False
    return (
        sum(
            1
            for sibling in card.parent.find_all(card.name, recursive=False)
            if sibling.find("header", recursive=False) is not None
        )
        >= MIN_GROUP
    )


def _names_chrome(tag: Tag) -> bool:
    """Whether the element is by its tag, role or name site chrome: navigation, the site's
    header and footer, sidebars, menus, breadcrumbs, related/more/trending/popular rails,
    share bars and tag lists."""
    if tag.name in _CHROME_TAGS:
        return True
    role = str((tag.attrs or {}).get("role") or "").lower()
    if role in _CHROME_ROLES:
        return True
    in_article = tag.find_parent("article") is not None
    if tag.name == "header" and not in_article and not _is_card_header(tag):
        return True
    for words in _attr_words(tag):
        if any(_CHROME_WORD.match(w) for w in words) or _CHROME_PHRASE.search("-".join(words)):
            return True
        if "header" in words and not in_article and not _ITEM_HEADER_WORDS & set(words):
            return True
    return False


def _segments(path: str) -> list[str]:
    segments = [s for s in path.split("/") if s]
    if segments and re.fullmatch(r"index\.\w+", segments[-1], re.IGNORECASE):
        segments.pop()
    return segments


_INDEX_WORDS = frozenset(
    {
        "tag",
        "tags",
        "category",
        "categories",
        "topic",
        "topics",
        "archive",
        "archives",
        "series",
        "author",
        "authors",
    }
)
_ID_QUERY = re.compile(r"^(?:p|id|post|article|story|entry|aid|nid)$", re.IGNORECASE)
_PAGE_EXT = re.compile(r"\.(?:html?|php|aspx?|jsp|cfm)$", re.IGNORECASE)


def _listing_depth(url: str) -> int:
    """The depth of the part of the listing's path its posts hang under: `/blog/page/3/` and
    `/blog/tag/python/` list posts under `/blog/`, `/2023/05/` lists posts of the site."""
    segments = _segments(urlsplit(url).path)
    if len(segments) >= 2 and segments[-2].lower() == "page" and segments[-1].isdigit():
        segments = segments[:-2]
    for i, segment in enumerate(segments):
        if segment.lower() in _INDEX_WORDS:
            return i
        if re.fullmatch(r"\d{4}", segment):
            return i
    return len(segments)


def _is_slug(segment: str, query: str = "") -> bool:
    """A post's own name: several words (`retry-budgets`), an id or a date in it, a page file;
    a single bare word (`Opinion`, `news`) names a section."""
    stem = _PAGE_EXT.sub("", segment)
    if any(c.isdigit() for c in stem) or len([w for w in re.split(r"[-_+.~]+", stem) if w]) >= 2:
        return True
    return any(_ID_QUERY.match(k) and v.isdigit() for k, v in parse_qsl(query))


def is_post_like(url: str, page_url: str) -> bool:
    """Whether a link of a listing at `page_url` can be one of its posts: deeper than the
    listing's own path, or as deep with a slug; never a bare top-level section (`/Opinion`)."""
    parts = urlsplit(url)
    segments = _segments(parts.path)
    if not segments:
        return False
    slug = _is_slug(segments[-1], parts.query)
    if len(segments) == 1 and not slug:
        return False
    depth = _listing_depth(page_url)
    return len(segments) > depth or (len(segments) == depth and slug)


def page_is_post_like(url: str) -> bool:
    """Whether a page's own path reads like a post's (its last segment is a slug or an id)."""
    parts = urlsplit(url)
    segments = _segments(parts.path)
    return bool(segments) and _is_slug(segments[-1], parts.query)


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
    """Words of running text (paragraphs, text in divs, long list items) outside the elements
    in `skip`: each text is counted for its nearest block, and a block counts once it holds
    `SENTENCE_WORDS` words of which less than `LINK_LIST_SHARE` are link text, so that
    taglines, menus, dates and link lists do not."""
    per_block: dict[int, list[int]] = {}
    for text in scope.find_all(string=True):
        if type(text) is not NavigableString or not text.strip():
            continue  # comments, CDATA, doctype
        block: Tag | None = None
        skipped = linked = False
        for parent in text.parents:
            if id(parent) in skip:
                skipped = True
                break
            if block is None:
                if parent.name == "a":
                    linked = True
                elif parent.name in _TEXT_BLOCKS:
                    block = parent
            if parent is scope:
                break
        if not skipped:
            counts = per_block.setdefault(id(block if block is not None else scope), [0, 0])
            n = len(text.split())
            counts[0] += n
            counts[1] += n if linked else 0
    return sum(
        total
        for total, link in per_block.values()
        if total >= SENTENCE_WORDS and link < LINK_LIST_SHARE * total
    )


def _main_content_holds_no_items(html: str, page_url: str, items: list[str]) -> tuple[bool, int]:
    """Whether the page's main content (as readability-lxml locates it, or the page's only
    `<article>`) is prose of its own (`MAIN_PROSE_FLOOR` words) that links to fewer than
    `MIN_GROUP` of the items: the items are then rails around an article. Also returns the
    words of prose found there."""
    wanted = set(items)
    candidates: list[Tag] = []
    located = readability_content(html)
    if located is not None:
        candidates.append(located)
    articles = soup_of(html).find_all("article")
    if len(articles) == 1:
        candidates.append(articles[0])
    best = 0
    for main in candidates:
        remove_clutter(main)
        prose = _prose_words(main, set())
        best = max(best, prose)
        inside = {
            normalize_url(urljoin(page_url, str(a["href"]).strip())) for a in main.find_all("a", href=True)
        } & wanted
        if prose >= MAIN_PROSE_FLOOR and len(inside) < MIN_GROUP:
            return True, prose
    return False, best


def read_listing(html: str, page_url: str, registered_url: str) -> ListingVerdict:
    """Read a page's item structure and prose, and decide whether it is a listing."""
    soup = soup_of(html)
    position = {id(t): i for i, t in enumerate(soup.find_all(True))}
    scope = soup.select_one("main") or soup.select_one("[role=main]") or soup.body or soup
    for header in scope.find_all("header"):
        if header is not scope and header.find_parent("article") is None and not _is_card_header(header):
            header.decompose()  # the site's header; an item's or the article's own stays
    remove_clutter(scope)
    total = _words(scope)

    # Link groups in site chrome (menus, rails, tag lists) are never items; an element named
    # like chrome that holds most of the page is the page's body (a "has-sidebar" layout).
    chrome: dict[int, bool] = {}

    def in_chrome(anchor: Tag) -> bool:
        for parent in anchor.parents:
            if parent is scope or parent.name in ("body", "html"):
                return False
            key = id(parent)
            if key not in chrome:
                chrome[key] = _names_chrome(parent) and _words(parent) <= CHROME_MAX_SHARE * total
            if chrome[key]:
                return True
        return False

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
        if not (is_post_url(url, page_url, registered_url) and is_post_like(url, page_url)):
            continue
        if in_chrome(a):
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
        while (
            node.parent is not None
            and node.parent is not scope
            and urls_in.get(id(node.parent), set()) == {url}
        ):
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

    item_words = sum(_words(n) for n, _ in elements)
    verdict = ListingVerdict(
        own_words=total - item_words,
        item_words=item_words,
        prose_words=_prose_words(scope, {id(n) for n, _ in elements}),
        index_path=is_index_path(page_url),
    )
    if not elements:
        verdict.reason = "no repeated item structure"
        return verdict
    elements.sort(key=lambda e: position.get(id(e[0]), 0))  # document order
    items = list(dict.fromkeys(url for _, url in elements))
    prose = verdict.prose_words
    if prose >= ARTICLE_WORDS and not (verdict.index_path and len(items) * ITEM_STANDS_FOR >= prose):
        verdict.reason = (
            f"{prose} words of running text of its own: an article, whatever its "
            f"{len(items)} link items are" + (" (they do not outweigh it)" if verdict.index_path else "")
        )
        return verdict
    if not verdict.index_path and page_is_post_like(page_url):
        rails, main_prose = _main_content_holds_no_items(html, page_url, items)
        if rails:
            verdict.reason = (
                f"its main content is {main_prose} words of prose without its "
                f"{len(items)} link items: an article with rails"
            )
            return verdict
    little_prose = prose < max(PROSE_FLOOR, item_words)
    if not (little_prose or verdict.index_path):
        verdict.reason = (
            f"{len(elements)} link items but {prose} words of prose "
            f"of its own (against {item_words} in the items): an article"
        )
        return verdict
    verdict.items = items
    verdict.item_positions = [position[id(n)] for n, _ in elements if id(n) in position]
    verdict.reason = (
        "an index path"
        if verdict.index_path and not little_prose
        else f"{len(verdict.items)} link items and {prose} words of prose of its own"
    )
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
FEED_TYPES = (
    "application/rss+xml",
    "application/atom+xml",
    "application/xml",
    "text/xml",
    "application/rdf+xml",
)
_FEED_PATH = re.compile(r"(?:\.(?:xml|rss|atom)|/(?:feed|rss|atom)(?:\.\w+)?)/?$", re.IGNORECASE)
_FEED_ROOT = re.compile(
    r"^\s*(?:<\?xml[^>]*\?>\s*)?(?:<!--.*?-->\s*)*<(?:rss|feed|rdf:RDF)\b", re.IGNORECASE | re.DOTALL
)


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
        if (
            href is None
            and (guid := entry.find("guid")) is not None
            and guid.string
            and str(guid.get("isPermaLink", "true")).lower() == "true"
        ):
            href = guid.string.strip()
        if not href:
            continue
        url = normalize_url(urljoin(feed_url, href))
        if urlsplit(url).scheme in ("http", "https") and same_site(url, registered_url) and url not in urls:
            urls.append(url)
    return urls
