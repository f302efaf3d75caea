"""Every web crawler through real Chromium against the sample site, plus failures end to end."""

from __future__ import annotations

import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from twin_assets.crawling import crawl_author
from twin_assets.crawling.base import CrawlContext
from twin_assets.crawling.errors import LoginWall, RefusedAddress
from twin_assets.crawling.fetch import PageFetcher
from twin_assets.crawling.generic import GenericArticleCrawler
from twin_assets.crawling.linkedin import LinkedInCrawler
from twin_assets.crawling.medium import MediumCrawler
from twin_assets.crawling.settings import CrawlSettings
from twin_assets.crawling.substack import SubstackCrawler
from twin_assets.domain.documents import Author, AuthorLink, Platform

SETTINGS = CrawlSettings(
    allow_hosts=["127.0.0.1"],
    min_domain_interval_s=0,
    page_timeout_s=10,
    max_retries=0,
    browser_mode="always",
    max_page_bytes=1_000_000,
)
LOG = logging.getLogger("test_crawling_web")


@pytest.fixture
def ctx(browser):
    with PageFetcher(SETTINGS, LOG, browser=browser) as fetcher:
        yield CrawlContext(
            author=Author(id="maya", full_name="Maya"), settings=SETTINGS, fetcher=fetcher, log=LOG
        )


def _crawl_listing(crawler, url, platform, ctx):
    link = AuthorLink(url=url, platform=platform)
    targets = crawler.expand(link, ctx)
    docs = [crawler.crawl(t, ctx) for t in targets]
    assert ctx.fetcher.pages_rendered == len(targets) + 1  # listing and items all via Chromium
    return targets, docs


def test_medium_profile_expands_to_three_clean_stories(sample_site, ctx):
    targets, docs = _crawl_listing(
        MediumCrawler(), f"{sample_site}/medium/@mayakowalski/", Platform.MEDIUM, ctx
    )
    assert sorted(t.url.rsplit("/", 1)[-1] for t in targets) == [
        "chunking-is-a-retrieval-decision",
        "small-language-models-are-boring",
        "your-pipeline-is-not-idempotent-yet",
    ]
    doc = next(d for d in docs if d.link.endswith("chunking-is-a-retrieval-decision"))
    assert doc.title == "Chunking Is a Retrieval Decision, Not a Preprocessing Step"
    assert doc.category == "articles" and doc.platform == "medium"
    assert doc.published_at is not None and doc.published_at.year == 2026
    assert "Here is my position. Chunk size is not a preprocessing detail" in doc.content
    assert "## The experiment" in doc.content and "- 256 tokens: recall@5 of 0.74" in doc.content
    code = [b for b in doc.blocks if b.kind == "code"]
    assert code[0].language == "python"
    assert code[0].text.startswith(
        "from typing import Callable, Iterator\n\n\ndef pack_paragraphs(\n    text: str,\n"
    )
    assert (
        '        if current and used + size > max_tokens:\n            yield "\\n\\n".join(current)'
        in code[0].text
    )
    for d in docs:
        for clutter in (
            "Sign up",
            "Member-only",
            "cookies",
            "More from",
            "Listen",
            "Recommended from",
            "Written by",
            "Careers",
            "Text to speech",
            "Share",
        ):
            assert clutter not in d.content, (clutter, d.link)


def test_substack_archive_expands_to_two_posts(sample_site, ctx):
    targets, docs = _crawl_listing(
        SubstackCrawler(), f"{sample_site}/substack/archive/", Platform.SUBSTACK, ctx
    )
    assert len(targets) == 2 and all("/substack/p/" in t.url for t in targets)
    doc = next(d for d in docs if "incremental-processing" in d.link)
    assert doc.title == "Incremental Processing Without Tears"
    assert "Watermarks, content hashes, and the late data" in doc.content  # subtitle kept
    assert "## Watermarks, and why the naive one leaks" in doc.content
    code = next(b for b in doc.blocks if b.kind == "code")
    assert "LOOKBACK = timedelta(hours=2)\n\n\ndef fetch_changed(" in code.text
    for d in docs:
        for clutter in ("Subscribe", "Sign in", "Restack", "cookies", "Share", "Like"):
            assert clutter not in d.content, (clutter, d.link)


def test_linkedin_feed_expands_to_four_posts_with_line_breaks(sample_site, ctx):
    targets, docs = _crawl_listing(
        LinkedInCrawler(),
        f"{sample_site}/linkedin/in/mayakowalski/recent-activity/all/",
        Platform.LINKEDIN,
        ctx,
    )
    assert len(targets) == 4 and all("/linkedin/posts/" in t.url for t in targets)
    doc = next(d for d in docs if "rag-chunking" in d.link)
    assert doc.category == "posts"
    assert doc.title.startswith("We changed ONE thing in our RAG pipeline")
    assert "It wasn't the embedding model.\nIt wasn't the vector database." in doc.content
    assert "𝗖𝗵𝘂𝗻𝗸𝗶𝗻𝗴 𝗶𝘀 𝗮 𝗿𝗲𝘁𝗿𝗶𝗲𝘃𝗮𝗹 𝗱𝗲𝗰𝗶𝘀𝗶𝗼𝗻" in doc.content and "🚀" in doc.content
    assert "#RAG #MachineLearning" in doc.content
    for d in docs:
        for clutter in (
            "Join now",
            "Sign in",
            "cookies",
            "reactions",
            "Repost",
            "Great write-up",
            "See more comments",
            "More Relevant Posts",
        ):
            assert clutter not in d.content, (clutter, d.link)


def test_linkedin_login_wall_is_detected(sample_site, ctx):
    with pytest.raises(LoginWall):
        LinkedInCrawler().crawl(
            LinkedInCrawler().expand(AuthorLink(url=f"{sample_site}/linkedin/authwall/"), ctx)[0], ctx
        )


def test_generic_blog_index_expands_and_posts_are_clean(sample_site, ctx):
    crawler = GenericArticleCrawler()
    targets = crawler.expand(AuthorLink(url=f"{sample_site}/blog/"), ctx)
    assert sorted(t.url.rstrip("/").rsplit("/", 1)[-1] for t in targets) == [
        "data-quality-checks-that-catch-things",
        "hybrid-search-when-bm25-still-wins",
    ]
    doc = crawler.crawl(next(t for t in targets if "hybrid" in t.url), ctx)
    assert doc.title == "Hybrid Search: When BM25 Still Wins" and doc.platform == "web"
    assert "- Split your golden set by query type" in doc.content
    assert (
        "    for ranking in rankings:\n        for rank, doc_id in enumerate(ranking, start=1):"
        in doc.content
    )
    for clutter in ("maya.codes", "cookies", "Subscribe", "Tags:", "RSS", "6 min read"):
        assert clutter not in doc.content, clutter


class _Redirect(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_GET(self):
        self.send_response(302)
        self.send_header("Location", "http://10.255.255.1/internal")
        self.end_headers()


def test_browser_redirect_to_private_address_is_refused(ctx):
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Redirect)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with pytest.raises(RefusedAddress):
            ctx.fetcher.render(f"http://127.0.0.1:{server.server_address[1]}/go")
    finally:
        server.shutdown()
        server.server_close()
    with pytest.raises(RefusedAddress):
        ctx.fetcher.render("http://169.254.169.254/latest/meta-data/")


def test_crawl_author_records_every_failure_and_keeps_the_rest(sample_site, browser):
    b = sample_site
    links = [
        AuthorLink(url=f"{b}/medium/@mayakowalski/", platform="medium"),
        AuthorLink(url=f"{b}/medium/@mayakowalski/", platform="medium"),  # duplicate: once
        AuthorLink(url=f"{b}/linkedin/authwall/", platform="linkedin"),
        AuthorLink(url=f"{b}/blog/hybrid-search-when-bm25-still-wins/"),
        AuthorLink(url=f"{b}/broken/empty/"),
        AuthorLink(url=f"{b}/broken/malformed/"),
        AuthorLink(url=f"{b}/no/such/page/"),
        AuthorLink(url=f"{b}/_fixtures/slow?seconds=5"),
        AuthorLink(url=f"{b}/_fixtures/huge?mb=2"),
        AuthorLink(url="http://169.254.169.254/latest/meta-data/"),
        AuthorLink(url="ftp://example.com/post"),
    ]
    settings = SETTINGS.model_copy(update={"page_timeout_s": 1.5, "browser_mode": "auto"})
    report = crawl_author(
        Author(id="maya", full_name="Maya Kowalski", links=links), settings, LOG, browser=browser
    )
    kinds = {f.link.replace(b, ""): f.kind for f in report.failures}
    assert kinds == {
        "/linkedin/authwall/": "login_wall",
        "/broken/empty/": "no_content",
        "/broken/malformed/": "malformed",
        "/no/such/page/": "http_error",
        "/_fixtures/slow?seconds=5": "timeout",
        "/_fixtures/huge?mb=2": "too_large",
        "http://169.254.169.254/latest/meta-data/": "refused_address",
        "ftp://example.com/post": "unsupported_scheme",
    }
    assert all(f.reason and f.author_id == "maya" for f in report.failures)
    links_done = sorted(d.link.replace(b, "") for d in report.documents)
    assert len(links_done) == 4 and len(set(d.id for d in report.documents)) == 4
    assert "/blog/hybrid-search-when-bm25-still-wins/" in links_done
