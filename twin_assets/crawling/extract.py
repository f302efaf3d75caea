"""Turning a page's HTML into the author's text: structural blocks and lightweight markdown.

Strategy: (1) find the main content: the platform's container by CSS (each platform crawler
knows its selectors) or, for pages of no known platform (`locate_main`), the elements
readability-lxml chooses, falling back to the `<article>`/`<main>` container when readability
keeps little of it (`locate`); (2) lift code blocks out verbatim, before anything else can touch
them (`codeblocks`: highlighter markup, one element per line, line-number gutters); (3) cut out
known clutter (`clutter`); (4) lift quotes and tables; (5) partition what is left with
unstructured's `partition_html`, which classifies headings, narrative text and list items (set
up to run offline by `unstructured_setup`); (6) drop short blocks that are boilerplate phrases
("Sign up", "Member-only story", "Listen", bylines, ...).

Code blocks, quotes and tables are replaced by placeholders before partitioning and put back
in document order: unstructured normalises whitespace, which would destroy indentation in code,
and it drops some containers (`<figure>`) with what they hold. A page whose only text is a
placeholder ("Loading…") yields no blocks, so the crawler reports it as having no content.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime

from bs4 import BeautifulSoup, Tag
from bs4.element import NavigableString

from twin_assets.crawling.clutter import is_clutter_text, remove_clutter
from twin_assets.crawling.codeblocks import block_code_text, code_language, code_nodes
from twin_assets.crawling.dates import find_published
from twin_assets.crawling.locate import readability_content
from twin_assets.crawling.soup import first_text, soup_of
from twin_assets.crawling.titles import choose_title, title_key
from twin_assets.crawling.unstructured_setup import configure_unstructured
from twin_assets.domain.documents import Block
from twin_assets.text.markdown import PAGE_MARKDOWN, blocks_to_markdown

LINE_BREAK = "\ue000"  # private-use char: survives partitioning, becomes "\n" afterwards
_PLACEHOLDER = "TWINBLOCK{:05d}X"
_PLACEHOLDER_RE = re.compile(r"TWINBLOCK(\d{5})X")
# Containers unstructured drops with everything in them, renamed to ones it reads.
_RENAMED = {"figure": "div", "figcaption": "p", "details": "div", "summary": "p", "hgroup": "div"}
# The selector path is kept when readability's choice holds less than this share of its text.
_MIN_LOCATED_SHARE = 0.5
_FALLBACK_SELECTORS = ("article", "main", "[role=main]")
_REPEAT_MIN_CHARS = 40  # shorter paragraphs ("Yes.", "Step 2") may repeat on purpose


@dataclass
class Extracted:
    title: str | None
    blocks: list[Block] = field(default_factory=list)
    published_at: datetime | None = None

    @property
    def markdown(self) -> str:
        """The page as the raw document's text."""
        return blocks_to_markdown(self.blocks, PAGE_MARKDOWN)

    @property
    def word_count(self) -> int:
        return sum(len(b.text.split()) for b in self.blocks if b.kind != "title")


def _table_text(table: Tag) -> str:
    """A data table as a Markdown table, one row per line (a pipe inside a cell escaped)."""
    rows = []
    for tr in table.find_all("tr"):
        cells = [
            " ".join(c.get_text(" ", strip=True).split()).replace("|", "\\|")
            for c in tr.find_all(["th", "td"])
        ]
        if any(cells):
            rows.append("| " + " | ".join(cells) + " |")
    if len(rows) > 1:
        ncols = rows[0].count(" | ") + 1
        rows.insert(1, "|" + " --- |" * ncols)
    return "\n".join(rows)


def _quote_text(quote: Tag) -> str:
    paras = [" ".join(p.get_text(" ", strip=True).split()) for p in quote.find_all(["p", "li"])]
    paras = [p for p in paras if p]
    return "\n\n".join(paras) if paras else " ".join(quote.get_text(" ", strip=True).split())


def _is_layout_table(table: Tag) -> bool:
    """A table used for page layout (holding code, headings, quotes or other tables), whose
    cells are read as ordinary content rather than as a data table."""
    return table.find(["table", "pre", "blockquote", "h1", "h2", "h3", "h4", "h5", "h6"]) is not None


class _Lifter:
    """Replaces blocks that partitioning would mangle by `<p>` placeholders, keeping them."""

    def __init__(self, soup: BeautifulSoup) -> None:
        self.soup = soup
        self.lifted: dict[int, Block] = {}

    def place(self, node: Tag, block: Block | None) -> None:
        if block is None:
            node.decompose()
            return
        idx = len(self.lifted)
        self.lifted[idx] = block
        p = self.soup.new_tag("p")
        p.string = _PLACEHOLDER.format(idx)
        node.replace_with(p)

    def lift_code(self, container: Tag) -> None:
        for node in code_nodes(container):
            text = block_code_text(node)
            self.place(node, Block(kind="code", text=text, language=code_language(node)) if text else None)

    def lift_quotes_and_tables(self, container: Tag) -> None:
        for node in list(container.find_all(["blockquote", "table"])):
            if not any(parent is container for parent in node.parents):
                continue  # inside a block lifted or removed already
            if _PLACEHOLDER_RE.search(node.get_text()) or (node.name == "table" and _is_layout_table(node)):
                continue  # holds code (or is layout): its parts are read one by one
            if node.name == "blockquote":
                text = _quote_text(node)
                keep = bool(text) and not is_clutter_text(text)
                self.place(node, Block(kind="quote", text=text) if keep else None)
            else:
                text = _table_text(node)
                self.place(node, Block(kind="table", text=text) if text else None)


def _unwrap_layout(container: Tag) -> None:
    """Containers unstructured would drop become ones it reads; layout tables become divs."""
    for node in container.find_all(list(_RENAMED)):
        node.name = _RENAMED[node.name]
    for node in container.find_all(["table", "tbody", "thead", "tfoot", "tr", "td", "th"]):
        node.name = "div"


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
    """Run unstructured over cleaned container HTML and map its elements to Blocks.

    Placeholders of lifted blocks are put back where they stand; one that unstructured dropped
    is put back before the next one it kept, so lifted blocks always stay in reading order, and
    a lifted block whose placeholder is not in the HTML (removed as clutter) is not kept.
    """
    configure_unstructured()
    from unstructured.partition.html import partition_html

    if not container_html.strip():
        return []
    order = [int(i) for i in _PLACEHOLDER_RE.findall(container_html) if int(i) in lifted]
    position = {idx: pos for pos, idx in enumerate(order)}
    elements = partition_html(text=container_html)
    blocks: list[Block] = []
    done = 0  # how many of `order` are placed

    def place_until(idx: int) -> None:
        nonlocal done
        pos = position.get(idx)
        if pos is None or pos < done:
            return
        blocks.extend(lifted[order[i]] for i in range(done, pos + 1))
        done = pos + 1

    for el in elements:
        raw = el.text or ""
        found = _PLACEHOLDER_RE.findall(raw)
        if found:
            rest = _PLACEHOLDER_RE.sub("", raw).replace(LINE_BREAK, " ").strip()
            for idx in found:
                place_until(int(idx))
            if not rest:
                continue
            raw = rest
        text = _clean_text(raw)
        if not text:
            continue
        category = el.category
        if category == "Title":
            if is_clutter_text(text, bylines=False):
                continue
            depth = getattr(el.metadata, "category_depth", None)
            blocks.append(
                Block(
                    kind="title",
                    text=text.replace("\n", " "),
                    level=(depth or 0) + 1 if depth is not None else 2,
                )
            )
            continue
        if is_clutter_text(text):
            continue
        if category == "ListItem":
            blocks.append(Block(kind="list_item", text=text))
        elif category == "CodeSnippet":
            blocks.append(Block(kind="code", text=raw.replace(LINE_BREAK, "\n")))
        elif category == "Table":
            blocks.append(Block(kind="table", text=text))
        elif category in (
            "NarrativeText",
            "UncategorizedText",
            "Text",
            "EmailAddress",
            "Address",
            "Formula",
            "FigureCaption",
        ):
            # <br><br> inside one element separates paragraphs (LinkedIn posts are one <p>)
            blocks.extend(
                Block(kind="paragraph", text=part.strip())
                for part in text.split("\n\n")
                if part.strip() and not is_clutter_text(part)
            )
        # Header, Footer, PageBreak, Image, PageNumber...: layout, not the author's words
    blocks.extend(lifted[i] for i in order[done:])
    return _without_repeats(blocks)


def _without_repeats(blocks: list[Block]) -> list[Block]:
    """Paragraphs a page repeats word for word (a caption in every responsive variant of an
    image, a standfirst in a hidden mobile copy) are markup duplicates: the first is kept."""
    seen: set[str] = set()
    out: list[Block] = []
    for block in blocks:
        if block.kind == "paragraph" and len(block.text) >= _REPEAT_MIN_CHARS:
            key = " ".join(block.text.split()).casefold()
            if key in seen:
                continue
            seen.add(key)
        out.append(block)
    return out


def _text_length(node: Tag | None) -> int:
    """How much text `node` holds outside links (menus and teaser lists are all links)."""
    if node is None:
        return 0
    total = len("".join(node.get_text(" ").split()))
    linked = sum(len("".join(a.get_text(" ").split())) for a in node.find_all("a"))
    return max(total - linked, 0)


def _select(soup: BeautifulSoup, selectors: list[str] | tuple[str, ...]) -> Tag | None:
    for selector in selectors:
        node = soup.select_one(selector)
        if node is not None:
            return node
    return None


def _prepared(container: Tag, soup: BeautifulSoup, clutter: list[str]) -> _Lifter:
    """Code lifted, clutter removed, quotes and tables lifted: the container is ready to partition."""
    lifter = _Lifter(soup)
    lifter.lift_code(container)
    remove_clutter(container, clutter)
    lifter.lift_quotes_and_tables(container)
    _unwrap_layout(container)
    _mark_line_breaks(container)
    return lifter


def extract_article(
    html: str,
    *,
    content_selectors: list[str] | tuple[str, ...] = (),
    clutter_selectors: list[str] | tuple[str, ...] = (),
    title_selectors: list[str] | tuple[str, ...] = (),
    subtitle_selectors: list[str] | tuple[str, ...] = (),
    drop_title_from_body: bool = True,
    locate_main: bool = False,
) -> Extracted:
    """Main-content extraction for one page. Never raises on malformed HTML (lxml repairs it).

    `content_selectors` name the platform's content container (the first that matches wins,
    then `<article>`, `<main>`); with `locate_main`, readability-lxml chooses the content
    instead, and the selector container is kept only when readability's choice holds less
    than half of its text (after clutter removal in both).
    """
    soup = soup_of(html, keep_whitespace=True)
    subtitle = first_text(soup, subtitle_selectors) if subtitle_selectors else None
    published = find_published(soup)
    selected = _select(soup, [*content_selectors, *_FALLBACK_SELECTORS])
    scopes = [
        selected,
        *(selected.find_parents("article") if selected is not None else []),
        _select(soup, _FALLBACK_SELECTORS),
    ]
    # the title is read before the container is cut up
    title = choose_title(soup, [s for s in scopes if s is not None], title_selectors)

    fallback = selected is None
    work = selected if selected is not None else (soup.body or soup)
    lifter = _prepared(work, soup, [*clutter_selectors, *(["header"] if fallback else [])])
    if locate_main:
        located = readability_content(html)
        if located is not None:
            located_lifter = _prepared(located, soup, list(clutter_selectors))
            found = _text_length(located)
            if found and (fallback or found >= _MIN_LOCATED_SHARE * _text_length(work)):
                work, lifter = located, located_lifter
    blocks = partition_blocks(str(work), lifter.lifted)

    if title and drop_title_from_body:
        key = title_key(title)
        blocks = [b for b in blocks if not (b.kind == "title" and title_key(b.text) == key)]
    head: list[Block] = []
    if title:
        head.append(Block(kind="title", text=title, level=1))
    if subtitle and subtitle != title:
        blocks = [b for b in blocks if b.text != subtitle]
        head.append(Block(kind="paragraph", text=subtitle))
    return Extracted(title=title, blocks=head + blocks, published_at=published)
