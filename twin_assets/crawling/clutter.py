"""What on a page is not the author's words: navigation, cookie banners, sign-up and subscribe
widgets, share/reaction bars, comment systems, related-post lists, bylines and author boxes,
footers (removed as elements), and the short boilerplate phrases that survive as blocks
("Sign up", "Member-only story", "Listen", "Like this:", "By X · March 3, 2023", ...).

Code is never filtered here: highlighters give comment lines classes such as `token comment`
or `hljs-comment`, so class-based removal does not descend into `<pre>`, `<code>` or code
containers (extraction lifts code out before clutter removal in any case)."""

from __future__ import annotations

import re

from bs4 import Tag

from twin_assets.crawling.codeblocks import is_code_node

# Removed wherever they appear inside the content container.
BASE_CLUTTER = [
    "script",
    "style",
    "noscript",
    "template",
    "svg",
    "iframe",
    "canvas",
    "object",
    "embed",
    "button",
    "form",
    "input",
    "select",
    "textarea",
    "dialog",
    "nav",
    "footer",
    "aside",
    "img",
    "picture",
    "video",
    "audio",
    "[role=navigation]",
    "[role=contentinfo]",
    "[role=banner]",
    "[role=dialog]",
    "[role=toolbar]",
    "[aria-hidden=true]",
    "[hidden]",
    # blog engines' widgets and metadata lines (WordPress/Jetpack, Disqus, Ghost, Jekyll, Hugo)
    ".post-meta",
    ".entry-meta",
    ".article-meta",
    ".byline",
    ".post-byline",
    ".author-bio",
    ".author-box",
    ".about-author",
    ".about-the-author",
    ".author-info",
    ".author-card",
    ".sharedaddy",
    ".jp-relatedposts",
    ".yarpp-related",
    ".wp-block-jetpack-subscriptions",
    ".jetpack-likes-widget-wrapper",
    "#disqus_thread",
    ".dsq-brlink",
    ".post-navigation",
    ".entry-footer",
    ".post-tags",
    ".tags-links",
    ".cat-links",
]
# class / id tokens that mark clutter (matched as whole dash/underscore-separated words).
_CLUTTER_TOKEN = re.compile(
    r"(?:^|[-_])(?:cookies?|consent|gdpr|newsletter|subscribe|subscription|signup|"
    r"share|sharing|social|comments?|related|recommended|advert|ads|"
    r"reactions?|navbar|nav|navigation|breadcrumbs?|sidebar|footer|toolbar|authwall|disqus|"
    r"dsq|byline|relatedposts|likes|sharedaddy|subscriptions|trending|outbrain|taboola|recirc|"
    r"recirculation)"
    r"(?:[-_]|$)",
    re.IGNORECASE,
)
# Tokens that also name wrappers of the article itself (`div.paywall` around the paragraphs a
# news site serves in full, a "banner" image): such an element goes only when it is not prose.
_WEAK_CLUTTER_TOKEN = re.compile(
    r"(?:^|[-_])(?:paywall|promo|popup|modal|banner|teasers?|carousel|popular)(?:[-_]|$)", re.IGNORECASE
)
_PROSE_CHARS = 400  # unlinked text beyond which a weakly marked element is the article's
# Short blocks that are boilerplate, not the author's words. Single action words must be the
# whole block ("Share", "Listen 3 min"), phrases may start it, and a few are recognised anywhere.
_CLUTTER_EXACT = re.compile(
    r"(?:listen|share|follow|following|clap|claps|reply|respond|subscribe|subscribed|like|"
    r"comment|comments|repost|send|save|report|see more|read more|open in app|get the app|"
    r"sign up|sign in|log ?in|join now|member-only story|accept(?: all)?(?: cookies)?|"
    r"reject(?: all)?|share this post|leave a comment|responses|more|top|new|community|"
    r"reactions?|like comment repost send|home|about|archive|like this|share this|related|"
    r"related posts|related articles|you might also like|you may also like|loading|please wait)"
    r"(?:\s*[(\d][\d,.]*[km]?\)?)?(?:\s*(?:min|min read))?(?:[.!:]|\.\.\.|…)?",
    re.IGNORECASE,
)
_CLUTTER_PREFIX = re.compile(
    r"^(?:member-only story|more from|written by|published in|recommended from|sign up to|"
    r"sign in to|join now to|join linkedin|discussion about this post|ready for more|"
    r"subscribe to|get (?:the )?(?:app|updates)|©|copyright \d{4}|blog comments powered by|"
    r"comments powered by|please enable javascript to view|get the next post|"
    r"get new posts by email|you might also like|you may also like|related posts?:|"
    r"\d+\s*min(?:ute)?s?\s+read\b|text size$|(?:photograph|photo|image|illustration|picture)s? "
    r"(?:by|credit|courtesy)\b|(?:photograph|photo|image|picture|credit)s?:|"
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
# An id of more words than this is a slug of a section's heading, named by its text.
_SLUG_WORDS = 3
# Byline and date lines: "By X · March 3, 2023 · 6 min read", "Posted on May 10, 2022 by X".
_MONTH = r"(?:jan|feb|mar|apr|may|jun|jul|aug|sep|sept|oct|nov|dec)[a-z]*\.?"
_DATE = (
    rf"(?:{_MONTH}\s+\d{{1,2}}(?:st|nd|rd|th)?,?\s+\d{{4}}|\d{{1,2}}\s+{_MONTH},?\s+\d{{4}}|"
    r"\d{4}-\d{2}-\d{2}|\d{1,2}/\d{1,2}/\d{2,4})"
)
_DATE_LINE = re.compile(
    rf"^(?:(?:posted|published|updated|last updated)(?: on)?:?\s*)?{_DATE}$", re.IGNORECASE
)
_BYLINE_START = re.compile(r"^(?:by|posted|published|written|updated|last updated)\b", re.IGNORECASE)
_BYLINE_MARK = re.compile(rf"{_DATE}|\bmin(?:ute)?s?\s+read\b|[·•|]|\bposted (?:on|in|by)\b", re.IGNORECASE)
_BYLINE_MAX = 120
_BYLINE_NAME = re.compile(r"^[Bb]y:?\s+[A-Z][\w.'’-]*(?:\s+(?:[A-Z][\w.'’-]*|and|&|de|van|von)){0,4}$")


def is_byline(text: str) -> bool:
    """A byline or date line: who wrote it and when, not what they wrote."""
    text = " ".join(text.split())
    if len(text) > _BYLINE_MAX:
        return False
    return bool(
        _DATE_LINE.match(text)
        or (_BYLINE_START.match(text) and _BYLINE_MARK.search(text) and not text.endswith((".", "?", "!")))
        or bool(_BYLINE_NAME.match(text))
    )


def _is_clutter_tag(tag: Tag) -> bool:
    attrs = tag.attrs or {}
    ident = str(attrs.get("id") or "")
    if len([w for w in re.split(r"[-_]+", ident) if w]) > _SLUG_WORDS:
        ident = ""  # a heading's slug ("sharing-with-a-single-developer"), not a widget's name
    tokens = [*(attrs.get("class") or []), ident, attrs.get("data-testid") or ""]
    if any(t and _CLUTTER_TOKEN.search(t) for t in tokens):
        return True
    return any(t and _WEAK_CLUTTER_TOKEN.search(t) for t in tokens) and not _is_prose(tag)


def _is_prose(tag: Tag) -> bool:
    """Paragraphs of unlinked text: the article's words, whatever the wrapper is called."""
    text = sum(len(p.get_text(" ", strip=True)) for p in tag.find_all("p"))
    linked = sum(len(a.get_text(" ", strip=True)) for p in tag.find_all("p") for a in p.find_all("a"))
    return text - linked >= _PROSE_CHARS


def remove_clutter(container: Tag, extra_selectors: list[str] | tuple[str, ...] = ()) -> None:
    """Strip clutter *inside* the container (the container itself is kept)."""
    for selector in [*BASE_CLUTTER, *extra_selectors]:
        for node in container.select(selector):
            if node is not container:
                node.decompose()

    def walk(node: Tag) -> None:
        for child in node.find_all(True, recursive=False):
            if child.name in ("pre", "code") or is_code_node(child):
                continue  # highlighters' `token comment` is code, not a comment section
            if _is_clutter_tag(child):
                child.decompose()
            else:
                walk(child)

    walk(container)


def is_clutter_text(text: str, *, bylines: bool = True) -> bool:
    """Boilerplate rather than the author's words; `bylines=False` for headings, which may
    legitimately read "By the numbers"."""
    text = " ".join(text.split())
    if len(text) > _SHORT_BLOCK:
        return False
    return bool(
        _CLUTTER_EXACT.fullmatch(text)
        or _CLUTTER_PREFIX.search(text)
        or _CLUTTER_ANYWHERE.search(text)
        or (bylines and is_byline(text))
    )
