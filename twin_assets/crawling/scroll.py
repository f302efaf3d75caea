"""Infinite scroll: a rendered listing is scrolled to its bottom until it stops growing, so the
links of every batch it loads end up in its HTML.

The page's own requests for more items go through the page's route, and so through the
guarded client, like everything else it loads. Article pages are never scrolled: some load
the next article.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from twin_assets.crawling.settings import CrawlSettings

# What the scroll phase measures: how tall the page is, how many distinct links it holds (a
# card often links its story several times, so elements would overcount), and whether it runs
# any script at all (without one, nothing can be added on scroll). JSON-LD and other data
# blocks are <script> elements too, but never run.
_PAGE_STATE_JS = """() => {
  const root = document.documentElement;
  const height = Math.max(root ? root.scrollHeight : 0,
                          document.body ? document.body.scrollHeight : 0);
  const links = new Set();
  for (const a of document.querySelectorAll("a[href]")) links.add(a.href);
  const runnable = /^$|javascript|ecmascript|^module$/i;
  const scripts = Array.from(document.scripts)
    .filter((s) => runnable.test((s.type || "").trim())).length;
  return {height, links: links.size, scripts};
}"""
# Bring the end of the listing into view: the last link first (it may sit in a scrolling
# container of its own, which window scrolling would not move), then the window's bottom.
# Two animation frames pass first: an IntersectionObserver only reports changes it has seen
# rendered, so a batch appended a moment ago must have pushed the page's sentinel out of view
# (in a rendered frame) before scrolling brings it back, or the page never hears it come back.
# A hidden or throttled page may not render frames at all, hence the timer fallback.
_FRAMES_JS = """() => new Promise((resolve) => {
  const timer = setTimeout(resolve, 250);
  requestAnimationFrame(() => requestAnimationFrame(() => { clearTimeout(timer); resolve(); }));
})"""
_SCROLL_JS = (
    """async () => {
  await ("""
    + _FRAMES_JS
    + """)();
  const anchors = document.querySelectorAll("a[href]");
  if (anchors.length) anchors[anchors.length - 1].scrollIntoView({block: "end"});
  const root = document.documentElement;
  window.scrollTo(0, Math.max(root ? root.scrollHeight : 0,
                              document.body ? document.body.scrollHeight : 0));
}"""
)
# Before giving up on a round that added nothing: move up a viewport, let a frame render, and
# come back down, so a page whose sentinel never seemed to leave the view sees it arrive again.
_NUDGE_JS = (
    """async () => {
  window.scrollBy(0, -Math.max(window.innerHeight, 400));
  await ("""
    + _FRAMES_JS
    + """)();
}"""
)
_GREW_JS = """([height, links]) => {
  const root = document.documentElement;
  const h = Math.max(root ? root.scrollHeight : 0,
                     document.body ? document.body.scrollHeight : 0);
  if (h > height) return true;
  const seen = new Set();
  for (const a of document.querySelectorAll("a[href]")) seen.add(a.href);
  return seen.size > links;
}"""


def scroll_listing(page: Any, url: str, settings: CrawlSettings, log: logging.Logger) -> int:
    """Scroll a loaded listing to its bottom until it stops growing; returns the rounds run.

    A round scrolls to the bottom and waits up to `scroll_settle_s` for the page to get
    taller or gain links; if nothing came, it scrolls up a viewport and back down and waits
    once more. Scrolling stops at the first round that adds nothing, after
    `max_scroll_rounds`, once the page holds `max_listing_items` more distinct links than it
    loaded with (the listing keeps no more items than that, and counting from the first batch
    never stops short because of navigation links), or after `page_timeout_s` of scrolling;
    what has been loaded by then is kept. A page that runs no script cannot grow, so it is not
    scrolled at all.
    """
    from playwright.sync_api import Error as PlaywrightError

    s = settings
    deadline = time.monotonic() + s.page_timeout_s
    rounds = 0
    try:
        state = page.evaluate(_PAGE_STATE_JS)
    except PlaywrightError as exc:
        log.info("not scrolling %s: %s", url, str(exc).splitlines()[0])
        return 0
    if not state["scripts"]:
        log.debug("not scrolling %s: it runs no script, so it cannot load more", url)
        return 0
    first_links = state["links"]
    stop = "max_scroll_rounds reached"
    while rounds < s.max_scroll_rounds:
        if state["links"] - first_links >= s.max_listing_items:
            stop = f"{s.max_listing_items} new links (max_listing_items)"
            break
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            stop = f"scrolling took {s.page_timeout_s}s (page_timeout_s)"
            break
        rounds += 1
        try:
            grew = _scroll_and_wait(page, _SCROLL_JS, state, min(s.scroll_settle_s, remaining))
            if not grew and (remaining := deadline - time.monotonic()) > 0:
                page.evaluate(_NUDGE_JS)
                grew = _scroll_and_wait(page, _SCROLL_JS, state, min(s.scroll_settle_s, remaining))
            if not grew:
                stop = "nothing new appeared"
                break
            state = page.evaluate(_PAGE_STATE_JS)
        except PlaywrightError as exc:  # the page navigated away or crashed meanwhile
            stop = f"the page failed: {str(exc).splitlines()[0]}"
            break
    log.info(
        "scrolled %s: %d round(s), %d -> %d links; stopped: %s",
        url,
        rounds,
        first_links,
        state["links"],
        stop,
    )
    return rounds


def _scroll_and_wait(page: Any, scroll_js: str, state: dict, settle_s: float) -> bool:
    """Run one scroll and wait up to `settle_s` for the page to grow past `state`."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    page.evaluate(scroll_js)
    try:
        page.wait_for_function(
            _GREW_JS,
            arg=[state["height"], state["links"]],
            timeout=settle_s * 1000,
            polling=100,
        )
    except PlaywrightTimeout:
        return False
    return True
