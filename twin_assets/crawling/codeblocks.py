"""Code on a page, read exactly as a reader sees it: every line, indent and comment.

Syntax highlighters wrap code in markup that generic text extraction gets wrong:

- token spans carry classes such as `token comment` (Prism) or `hljs-comment` (highlight.js),
  which class-based clutter filters mistake for a comment section; code is therefore read
  here, before any clutter removal, and never filtered by class;
- many renderers write one element per line with no newline between them (GitHub/GitLab/Gist
  `blob-code` table rows, `.code-line` / `.line` divs, Docusaurus `token-line` spans, Prism
  and highlight.js line-number plugins, CodeMirror): each line element becomes one line;
- line-number gutters (`td.gutter`, `.linenos`, `blob-num`, `hljs-ln-numbers`, ...) are not
  the code and are dropped, but only when they hold nothing but digits, so a class name can
  never delete real code.

`code_nodes` finds the code blocks of a container (each `<pre>`, and each container of line
elements or gutter table that is not inside one); `code_text` reads one.
"""

from __future__ import annotations

import re

from bs4 import Comment, Declaration, Doctype, ProcessingInstruction, Tag
from bs4.element import NavigableString

# Class tokens of an element that holds exactly one line of code.
_LINE_CLASSES = frozenset(
    {
        "line",
        "code-line",
        "codeline",
        "blob-code",
        "blob-code-inner",
        "js-file-line",
        "token-line",
        "cm-line",
        "codemirror-line",
        "view-line",
        "ace_line",
        "hljs-ln-code",
        "highlight-line",
        "line-content",
        "code-line-content",
        "diff-line",
    }
)
# Class tokens of a line-number gutter (dropped when it holds only digits).
_GUTTER_CLASSES = frozenset(
    {
        "gutter",
        "linenos",
        "lineno",
        "linenodiv",
        "line-numbers",
        "line-numbers-rows",
        "line-number",
        "line-numbers-wrapper",
        "linenumber",
        "linenumbers",
        "blob-num",
        "js-line-number",
        "hljs-ln-numbers",
        "hljs-ln-n",
        "ln-num",
        "lnt",
        "ln",
        "gl",
        "code-line-number",
        "react-syntax-highlighter-line-number",
        "linenumber-cell",
        "rouge-gutter",
        "line-no",
    }
)
# Tags that end a line when they are a code block's line elements.
_LINE_TAGS = frozenset(
    {"div", "p", "tr", "li", "table", "tbody", "thead", "tfoot", "ol", "ul", "pre", "section", "dd", "dt"}
)
_NOT_CODE_TAGS = frozenset(
    {"script", "style", "template", "button", "noscript", "svg", "select", "textarea", "input"}
)
_GUTTER_TEXT = re.compile(r"^[\d\s.:]*$")
_SKIPPED_STRINGS = (Comment, Declaration, Doctype, ProcessingInstruction)


def _classes(tag: Tag) -> set[str]:
    return {str(c).lower() for c in (tag.get("class") or [])}


def is_gutter(tag: Tag) -> bool:
    """A line-number gutter: a gutter class and nothing but line numbers as text."""
    return bool(_classes(tag) & _GUTTER_CLASSES) and bool(_GUTTER_TEXT.match(tag.get_text()))


def _is_line(tag: Tag) -> bool:
    return tag.name in _LINE_TAGS or bool(_classes(tag) & _LINE_CLASSES)


def _visible_children(node: Tag) -> list[Tag | NavigableString]:
    out: list[Tag | NavigableString] = []
    for child in node.children:
        if isinstance(child, Tag):
            if child.name in _NOT_CODE_TAGS or is_gutter(child):
                continue
            out.append(child)
        elif isinstance(child, NavigableString) and not isinstance(child, _SKIPPED_STRINGS):
            out.append(child)
    return out


def _one_line(text: str) -> str:
    return text[:-1] if text.endswith("\n") else text


def code_text(node: Tag | NavigableString) -> str:
    """The code in `node` as a reader sees it (not stripped; the caller trims blank ends).

    A node whose children are all line elements (ignoring whitespace between them) is read
    as one line per child; anything else is read as its text, `<br>` as a line break.
    """
    if isinstance(node, NavigableString):
        return "" if isinstance(node, _SKIPPED_STRINGS) else str(node)
    if node.name == "br":
        return "\n"
    children = _visible_children(node)
    elements = [c for c in children if isinstance(c, Tag)]
    loose_text = any(isinstance(c, NavigableString) and c.strip() for c in children)
    if elements and not loose_text and all(_is_line(c) for c in elements):
        return "\n".join(_one_line(code_text(c)) for c in elements)
    return "".join(code_text(c) for c in children)


def _is_line_container(tag: Tag) -> bool:
    """Two or more line elements as children (a `.code-line` div per line)."""
    lines = [c for c in tag.find_all(True, recursive=False) if _classes(c) & _LINE_CLASSES]
    return len(lines) >= 2


def _is_gutter_table(tag: Tag) -> bool:
    """A highlighter's table: a line-number gutter cell next to the code (Pygments, Rouge,
    Hexo, GitHub blobs, highlightjs-line-numbers)."""
    if tag.name != "table":
        return False
    cells = tag.find_all(["td", "th"])
    return any(is_gutter(c) for c in cells) or any(_classes(c) & _LINE_CLASSES for c in cells)


def is_code_node(tag: Tag) -> bool:
    """Whether `tag` is a whole code block (a `<pre>`, a gutter table, a line container)."""
    return tag.name == "pre" or _is_gutter_table(tag) or (tag.name != "table" and _is_line_container(tag))


def code_nodes(container: Tag) -> list[Tag]:
    """The outermost code blocks inside `container`, in document order."""
    found: list[Tag] = []

    def walk(node: Tag) -> None:
        for child in node.find_all(True, recursive=False):
            if is_code_node(child):
                found.append(child)
            else:
                walk(child)

    walk(container)
    return found


def block_code_text(node: Tag) -> str:
    """A code block's text, blank lines at its ends dropped (indentation of the first kept)."""
    text = code_text(node).replace("\r\n", "\n").replace("\r", "\n")
    lines = text.split("\n")
    while lines and not lines[0].strip():
        lines.pop(0)
    while lines and not lines[-1].strip():
        lines.pop()
    return "\n".join(lines)


def code_language(node: Tag) -> str | None:
    """The language a highlighter tagged the block with (`language-x`, `lang-x`, data-lang)."""
    # the block, its code elements, then its wrappers (Jekyll: div.language-python > div > pre)
    wrappers = [p for _, p in zip(range(3), node.parents, strict=False) if p.name not in ("body", "html")]
    for el in [node, *node.find_all(["code", "pre"]), *wrappers]:
        for cls in el.get("class") or []:
            m = re.match(r"(?:language|lang|highlight-source|highlight)-([\w+#.-]+)$", str(cls))
            if m:
                return m.group(1).lower()
        if el.get("data-lang"):
            return str(el["data-lang"]).lower()
        if el.get("data-language"):
            return str(el["data-language"]).lower()
    tagged = node.select_one("[data-code-block-lang]")  # Medium
    if tagged is not None and tagged.get("data-code-block-lang"):
        return str(tagged["data-code-block-lang"]).lower()
    return None
