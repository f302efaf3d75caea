"""What on a page is not the author's words: navigation, cookie banners, sign-up and subscribe
widgets, share/reaction bars, footers (removed as elements), and the short boilerplate
phrases that survive as blocks ("Sign up", "Member-only story", "Listen", ...)."""

from __future__ import annotations

import re

from bs4 import Tag

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


def _is_clutter_tag(tag: Tag) -> bool:
    attrs = tag.attrs or {}
    tokens = [*(attrs.get("class") or []), attrs.get("id") or "", attrs.get("data-testid") or ""]
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
