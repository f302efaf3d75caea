"""Finding a page's main content with readability-lxml, on the page's own markup.

readability-lxml (a port of Mozilla's Readability) is good at deciding *which part* of a page
is the article, across blog engines and news sites no per-site selector list can cover. Its
output, though, is rewritten HTML: it turns divs into paragraphs and drops elements by class
scores, and this project reads code, tables and quotes verbatim from the original markup.

So readability is used as a locator only: every element of the page is tagged with an id
before readability sees it, the ids that survive in its summary name the elements it chose,
and those elements are cut out of the *original* soup (a kept `<pre>`, `<table>` or code
container keeps its whole subtree, so readability can never thin out code, and a code block
inside the chosen elements is kept even when readability dropped it as too short). The caller then
runs the project's own pipeline on them.
"""

from __future__ import annotations

import logging
import re

from bs4 import Tag

from twin_assets.crawling.codeblocks import is_code_node
from twin_assets.crawling.soup import soup_of

log = logging.getLogger(__name__)

_ID_ATTR = "data-twin-node"
_ID_RE = re.compile(_ID_ATTR + r'="(\d+)"')


def _whole(tag: Tag) -> bool:
    """Elements whose subtree is kept as it is once readability keeps them."""
    return tag.name in ("table", "blockquote") or is_code_node(tag)


def readability_content(html: str) -> Tag | None:
    """A `<div>` holding the elements readability chose as the article, taken from a fresh
    parse of `html`, in document order; None when readability fails or chooses nothing."""
    from readability import Document  # readability-lxml
    from readability.readability import Unparseable

    soup = soup_of(html, keep_whitespace=True)
    body = soup.body or soup
    nodes = list(body.find_all(True))
    for i, tag in enumerate(nodes):
        tag[_ID_ATTR] = str(i)
    try:
        summary = Document(str(soup)).summary(html_partial=True)
    except (Unparseable, ValueError, TypeError, RecursionError) as exc:
        log.debug("readability could not read the page: %s", exc)
        return None
    kept = {int(m) for m in _ID_RE.findall(summary)}
    for tag in nodes:
        del tag[_ID_ATTR]
    if not kept:
        return None
    index = {id(t): i for i, t in enumerate(nodes)}

    def is_kept(tag: Tag) -> bool:
        return index.get(id(tag), -1) in kept

    def has_kept_ancestor(tag: Tag) -> bool:
        return any(is_kept(p) for p in tag.parents)

    def prune(tag: Tag) -> None:
        if _whole(tag):
            return
        for child in tag.find_all(True, recursive=False):
            if is_kept(child):
                prune(child)
            elif is_code_node(child):
                continue  # code between the chosen paragraphs is the author's, however short
            elif child.find("pre") is not None:
                prune(child)
            else:
                child.decompose()

    roots = [t for i, t in enumerate(nodes) if i in kept and not has_kept_ancestor(t)]
    out = soup.new_tag("div")
    for root in roots:
        prune(root)
        out.append(root.extract())
    return out
