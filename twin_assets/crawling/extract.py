"""Turning a page's HTML into the author's text: structural blocks and lightweight markdown.

Strategy: (1) select the platform's main-content container with CSS (each crawler knows its
selectors) and cut out known clutter (`clutter`); (2) partition what is left with
unstructured's `partition_html`, which classifies headings, narrative text and list items
(set up to run offline by `unstructured_setup`); (3) drop short blocks that are boilerplate
phrases ("Sign up", "Member-only story", "Listen", ...).

Code blocks, quotes and tables are lifted out *before* partitioning and put back in document
order: unstructured normalises whitespace, which would destroy indentation in code.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime

from bs4 import BeautifulSoup, NavigableString, Tag

from twin_assets.crawling.clutter import is_clutter_text, remove_clutter
from twin_assets.crawling.dates import find_published
from twin_assets.crawling.soup import first_text, meta_title, soup_of
from twin_assets.crawling.unstructured_setup import configure_unstructured
from twin_assets.domain.documents import Block
from twin_assets.text.markdown import PAGE_MARKDOWN, blocks_to_markdown

LINE_BREAK = "\ue000"  # private-use char: survives partitioning, becomes "\n" afterwards
_PLACEHOLDER = "TWINBLOCK{:05d}X"
_PLACEHOLDER_RE = re.compile(r"TWINBLOCK(\d{5})X")


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
    configure_unstructured()
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
