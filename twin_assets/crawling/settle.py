"""Waiting for a rendered page to finish building its content before it is judged.

Single-page blogs and JS-heavy platforms serve a shell ("Loading…", a spinner, an empty
`<div id="app">`) and inject the article after the `load` event. Judging such a page at `load`
records the placeholder, or nothing, as the author's text. So a rendered page is watched until
its text stops changing and is not a placeholder, bounded by the page's timeout; what is there
when the time is up is what extraction sees (and a page still showing only a placeholder is
then reported as having no content, not stored as "Loading…").
"""

from __future__ import annotations

import logging
import re
import time
from typing import Any

# Text a page shows while its content is still being built, or instead of it without
# JavaScript: a short message that starts with a loading phrase ("Loading…", "Loading posts…",
# "Please wait"), or a short one asking for JavaScript.
_LOADING = re.compile(
    r"^\W*(?:loading|please wait|just a moment|one moment|fetching|rendering|initiali[sz]ing)\b",
    re.IGNORECASE,
)
_LOADING_WORDS = 4  # "Loading the dishwasher is a skill." is a post, not a placeholder
_NEEDS_JS = re.compile(
    r"\b(?:enable|requires?|needs?|turn on|activate) javascript\b|"
    r"\bjavascript (?:is )?(?:required|disabled|needed)\b",
    re.IGNORECASE,
)
_PLACEHOLDER_WORDS = 12  # longer texts are never placeholders


def is_placeholder(text: str) -> bool:
    """Whether `text`, all the text a page (or its main content) shows, is a placeholder:
    nothing at all, or a short "Loading…" / "Please enable JavaScript" message."""
    words = text.split()
    if not any(any(c.isalnum() for c in w) for w in words):
        return True  # empty, or only punctuation / spinner glyphs
    if len(words) <= _LOADING_WORDS and _LOADING.search(text):
        return True
    return len(words) <= _PLACEHOLDER_WORDS and bool(_NEEDS_JS.search(text))


# What is measured on each poll: the visible text of the page and of its main content element,
# as a size and, while short, the text itself (to recognise placeholders).
_TEXT_STATE_JS = """([short]) => {
  const text = (document.body && document.body.innerText) || "";
  let main = 0;
  for (const el of document.querySelectorAll("article, main, [role=main]")) {
    const n = (el.innerText || "").split(/\\s+/).filter(Boolean).length;
    if (n > main) main = n;
  }
  const words = text.split(/\\s+/).filter(Boolean);
  return {chars: text.length, words: words.length, main,
          head: words.length <= short ? words.join(" ") : ""};
}"""

SETTLE_S = 0.5  # a page with real content is done once its text has not changed for this long
QUIET_S = 2.0  # a short page (not a placeholder) is done once nothing has changed for this long
RICH_WORDS = 40  # "real content": this many words in the main element (or twice that in all)
_POLL_S = 0.1


def wait_for_content(page: Any, deadline: float, log: logging.Logger, url: str) -> bool:
    """Wait until the rendered `page` shows its content; returns whether it did in time.

    Done when the text has not changed for `SETTLE_S` and the page has real content (a main
    element with `RICH_WORDS` words, or a body with twice that), or has not changed for
    `QUIET_S` and is not a placeholder. A page that stays a placeholder (or empty) is waited
    for until `deadline` (monotonic seconds; the caller derives it from `page_timeout_s`).
    """
    from playwright.sync_api import Error as PlaywrightError

    last: tuple[int, int, int] | None = None
    since = time.monotonic()
    state: dict[str, Any] = {}
    while True:
        try:
            state = page.evaluate(_TEXT_STATE_JS, [_PLACEHOLDER_WORDS])
        except PlaywrightError as exc:  # navigated away or crashed: judge what was loaded
            log.info("stopped waiting for %s to render: %s", url, str(exc).splitlines()[0])
            return False
        now = time.monotonic()
        key = (state["chars"], state["words"], state["main"])
        if key != last:
            last, since = key, now
        stable = now - since
        placeholder = state["words"] <= _PLACEHOLDER_WORDS and is_placeholder(state["head"])
        if not placeholder:
            rich = state["main"] >= RICH_WORDS or state["words"] >= 2 * RICH_WORDS
            if stable >= (SETTLE_S if rich else QUIET_S):
                return True
        if now >= deadline:
            log.info(
                "%s still %s when its page timeout ran out; judging it as it is",
                url,
                f"shows only {state['head']!r}" if placeholder else "changing",
            )
            return not placeholder
        page.wait_for_timeout(int(min(_POLL_S, max(deadline - now, 0.01)) * 1000))
