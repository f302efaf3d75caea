"""Parsing a page with BeautifulSoup (lxml, which repairs malformed HTML rather than raising)
and reading short texts out of it (titles, selectors' first match)."""

from __future__ import annotations

from bs4 import BeautifulSoup, Tag


def soup_of(html: str, *, keep_whitespace: bool = False) -> BeautifulSoup:
    """The parsed page. BeautifulSoup shrinks every whitespace-only string outside `<pre>` to
    one space, which flattens the indentation of code rendered one `<div>` per line (`<td
    class="blob-code">    <span>...`); `keep_whitespace` keeps every string as written."""
    if keep_whitespace:
        return BeautifulSoup(html, "lxml", preserve_whitespace_tags={"html", "pre", "textarea"})
    return BeautifulSoup(html, "lxml")


def text_of(node: Tag | None) -> str | None:
    """A node's text on one line, whitespace collapsed; None when it has none."""
    if node is None:
        return None
    text = " ".join(node.get_text(" ", strip=True).split())
    return text or None


def first_text(soup: BeautifulSoup, selectors: list[str] | tuple[str, ...]) -> str | None:
    """The text of the first selector that matches a node with text."""
    for selector in selectors:
        node = soup.select_one(selector)
        if node is not None and (text := text_of(node)):
            return text
    return None


def attr_str(node: Tag, name: str) -> str | None:
    """An attribute's value as a string, None when the node lacks it. BeautifulSoup gives a
    multi-valued attribute (`class`, `rel`) as a list of its tokens: joined by spaces here."""
    value = node.get(name)
    if value is None or isinstance(value, str):
        return value
    return " ".join(value)


def meta_title(soup: BeautifulSoup) -> str | None:
    """The page's title as its metadata gives it (Open Graph, Twitter card, <title>)."""
    for key, value in (("property", "og:title"), ("name", "twitter:title")):
        node = soup.find("meta", attrs={key: value})
        if node and node.get("content"):
            return " ".join(str(node["content"]).split())
    return text_of(soup.title) if soup.title else None
