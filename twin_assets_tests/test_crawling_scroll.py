"""Infinite-scroll listings through real Chromium against the sample site.

`/scroll.html` lists all 11 sample articles in three batches: 4 in the served HTML, then 4 and
3 more fetched by the page's own script (`/scroll/infinite.js`) when the end of the list comes
into view. `/scroll/no-more.html` runs the same script but has no further batch.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager

import pytest

from resources.crawler import CrawlerResource
from twin_assets.crawling.base import CrawlContext
from twin_assets.crawling.fetch import PageFetcher
from twin_assets.crawling.generic import GenericArticleCrawler
from twin_assets.crawling.medium import MediumCrawler
from twin_assets.crawling.settings import CrawlSettings
from twin_assets.crawling.substack import SubstackCrawler
from twin_assets.crawling.urls import page_links
from twin_assets.crawling.web import runs_scripts
from twin_assets.defs.resources import crawl_settings_from_env
from twin_assets.domain.documents import Author, AuthorLink, Platform

SETTINGS = CrawlSettings(
    allow_hosts=["127.0.0.1"],
    min_domain_interval_s=0,
    page_timeout_s=10,
    max_retries=0,
    browser_mode="always",
    max_page_bytes=1_000_000,
)
LOG = logging.getLogger("test_crawling_scroll")

BATCHES = [
    [
        "/blog/data-quality-checks-that-catch-things/",
        "/blog/hybrid-search-when-bm25-still-wins/",
        "/medium/@mayakowalski/chunking-is-a-retrieval-decision",
        "/medium/@mayakowalski/your-pipeline-is-not-idempotent-yet",
    ],
    [
        "/medium/@mayakowalski/small-language-models-are-boring",
        "/substack/p/incremental-processing-without-tears",
        "/substack/p/measure-retrieval-before-you-tune-embeddings",
        "/linkedin/posts/mayakowalski_rag-chunking-activity-7301842265519364096-Qx3a",
    ],
    [
        "/linkedin/posts/mayakowalski_measure-first-evals-activity-7298310054127611904-bT7k",
        "/linkedin/posts/mayakowalski_idempotent-pipelines-activity-7294512889003417600-Lm2p",
        "/linkedin/posts/mayakowalski_small-language-models-activity-7290076141558890496-Zr9d",
    ],
]
ALL = [p for batch in BATCHES for p in batch]


@pytest.fixture
def context_for(browser):
    """Builds a crawl context with settings overrides; its fetcher is closed afterwards."""
    opened: list[PageFetcher] = []

    def make(**overrides) -> CrawlContext:
        settings = SETTINGS.model_copy(update=overrides)
        fetcher = PageFetcher(settings, LOG, browser=browser)
        opened.append(fetcher)
        return CrawlContext(
            author=Author(id="maya", full_name="Maya"), settings=settings, fetcher=fetcher, log=LOG
        )

    yield make
    for fetcher in opened:
        fetcher.close()


def articles_in(html: str, base: str) -> list[str]:
    """Sample-article paths linked from a page, in page order."""
    paths = [u[len(base) :] for u in page_links(html, base) if u.startswith(base)]
    return [p for p in paths if p in ALL or p + "/" in ALL]


def paths(targets, base: str) -> list[str]:
    return [t.url[len(base) :] for t in targets]


@contextmanager
def recorded_renders(fetcher: PageFetcher):
    """Records (url, scroll) for every render, still rendering for real."""
    calls: list[tuple[str, bool]] = []
    real = fetcher.render

    def render(url, *, wait_for=None, scroll=False):
        calls.append((url, scroll))
        return real(url, wait_for=wait_for, scroll=scroll)

    fetcher.render = render
    try:
        yield calls
    finally:
        del fetcher.render


def test_scrolling_loads_every_batch(sample_site, context_for):
    page = context_for().fetcher.render(f"{sample_site}/scroll.html", scroll=True)
    assert articles_in(page.html, sample_site) == ALL
    # two rounds that each added a batch, and a third that found nothing more
    assert page.scroll_rounds == 3
    assert "That's everything." in page.html


def test_index_expands_to_items_of_all_three_loads(sample_site, context_for):
    """browser_mode auto: the index is fetched plainly, found to be an index that runs a
    script, then rendered once and scrolled; its items come in feed order."""
    ctx = context_for(browser_mode="auto")
    with recorded_renders(ctx.fetcher) as renders:
        targets = GenericArticleCrawler().expand(AuthorLink(url=f"{sample_site}/scroll.html"), ctx)
    assert paths(targets, sample_site) == ALL
    assert renders == [(f"{sample_site}/scroll.html", True)]
    assert ctx.fetcher.pages_rendered == 1


def test_without_scrolling_only_the_first_batch_is_found(sample_site, context_for):
    ctx = context_for(max_scroll_rounds=0)
    page = ctx.fetcher.render(f"{sample_site}/scroll.html", scroll=True)
    assert page.scroll_rounds == 0 and articles_in(page.html, sample_site) == BATCHES[0]
    targets = GenericArticleCrawler().expand(AuthorLink(url=f"{sample_site}/scroll.html"), ctx)
    assert paths(targets, sample_site) == BATCHES[0]


def test_browser_mode_never_keeps_the_served_batch(sample_site, context_for):
    ctx = context_for(browser_mode="never")
    targets = GenericArticleCrawler().expand(AuthorLink(url=f"{sample_site}/scroll.html"), ctx)
    assert paths(targets, sample_site) == BATCHES[0]
    assert ctx.fetcher.pages_rendered == 0


def test_max_listing_items_stops_scrolling_and_caps_the_listing(sample_site, context_for):
    ctx = context_for(max_listing_items=3)
    page = ctx.fetcher.render(f"{sample_site}/scroll.html", scroll=True)
    # the first round brought 4 new links (>= 3), so the third batch was never requested
    assert page.scroll_rounds == 1
    assert articles_in(page.html, sample_site) == BATCHES[0] + BATCHES[1]
    targets = GenericArticleCrawler().expand(AuthorLink(url=f"{sample_site}/scroll.html"), ctx)
    assert paths(targets, sample_site) == BATCHES[0][:3]


def test_max_scroll_rounds_bounds_the_rounds(sample_site, context_for):
    page = context_for(max_scroll_rounds=1).fetcher.render(f"{sample_site}/scroll.html", scroll=True)
    assert page.scroll_rounds == 1
    assert articles_in(page.html, sample_site) == BATCHES[0] + BATCHES[1]


def test_a_page_that_never_grows_stops_after_one_round(sample_site, context_for):
    page = context_for().fetcher.render(f"{sample_site}/scroll/no-more.html", scroll=True)
    assert page.scroll_rounds == 1
    assert articles_in(page.html, sample_site) == BATCHES[0][:2]


def test_a_page_without_scripts_is_not_scrolled(sample_site, context_for):
    page = context_for().fetcher.render(f"{sample_site}/blog/", scroll=True)
    assert page.scroll_rounds == 0
    assert len(articles_in(page.html, sample_site)) == 2


def test_listings_scroll_and_articles_do_not(sample_site, context_for):
    ctx = context_for()
    crawler = MediumCrawler()
    with recorded_renders(ctx.fetcher) as renders:
        targets = crawler.expand(
            AuthorLink(url=f"{sample_site}/medium/@mayakowalski/", platform=Platform.MEDIUM), ctx
        )
        crawler.crawl(targets[0], ctx)
    assert len(targets) == 3
    assert renders == [(f"{sample_site}/medium/@mayakowalski/", True), (targets[0].url, False)]


def test_a_script_free_listing_is_not_rendered_in_auto_mode(sample_site, context_for):
    ctx = context_for(browser_mode="auto")
    targets = SubstackCrawler().expand(
        AuthorLink(url=f"{sample_site}/substack/archive/", platform=Platform.SUBSTACK), ctx
    )
    assert len(targets) == 2 and ctx.fetcher.pages_rendered == 0


def test_runs_scripts_ignores_data_blocks():
    assert runs_scripts("<html><script>1</script></html>")
    assert runs_scripts('<script type="module" src="/a.js"></script>')
    assert runs_scripts('<script type="text/javascript">1</script>')
    assert not runs_scripts('<script type="application/ld+json">{"@type": "Blog"}</script>')
    assert not runs_scripts("<p>no scripts</p>")


def test_scroll_settings_come_from_the_environment():
    settings = crawl_settings_from_env(
        {"TWIN_CRAWL_MAX_SCROLL_ROUNDS": "7", "TWIN_CRAWL_SCROLL_SETTLE_S": "0.75"}
    )
    assert settings.max_scroll_rounds == 7 and settings.scroll_settle_s == 0.75
    defaults = CrawlerResource.from_settings(crawl_settings_from_env({})).settings()
    assert defaults.max_scroll_rounds == 20 and defaults.scroll_settle_s == 1.5
