"""Listings only when they are listings; a registered link always yields its own document or a
recorded failure; pages built by JavaScript are waited for; LinkedIn Pulse is an article.

The verdict of `read_listing` is checked on page shapes directly, then the same pages are
served from 127.0.0.1 and crawled through `crawl_author`, as the `raw_documents` asset does.
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from twin_assets.crawling import CrawlSettings, crawl_author
from twin_assets.crawling.linkedin import LinkedInCrawler
from twin_assets.crawling.listing import (
    feed_entries,
    is_feed,
    is_index_path,
    is_post_like,
    looks_like_feed_url,
    read_listing,
    without_items,
)
from twin_assets.crawling.page import FetchedPage
from twin_assets.crawling.settle import is_placeholder
from twin_assets.crawling.web import shows_placeholder
from twin_assets.domain.documents import Author, AuthorLink, Category, Platform

PAGES = Path(__file__).parent / "pages"
SITE = PAGES.parent.parent / "twin_assets" / "sample_data" / "site"


def _verdict(name: str, url: str):
    html = (PAGES / name).read_text()
    return read_listing(html, url, url)


# -- the verdict on page shapes --------------------------------------------------------------
def test_in_text_links_to_sibling_posts_never_make_an_index():
    # eight links to other posts of the site inside sentences, plus a three-item reading list
    v = _verdict("article_many_intext_links.html", "http://blog.test/2023/05/backpressure/")
    assert not v.is_listing and v.items == [], v.reason
    v = _verdict("article_with_links.html", "http://blog.test/notes/article-with-links")
    assert not v.is_listing, v.reason


def test_repeated_cards_with_little_prose_are_an_index():
    v = _verdict("listing_index.html", "http://blog.test/journal/")
    assert v.items == [
        "http://blog.test/journal/first-entry/",
        "http://blog.test/journal/second-entry/",
        "http://blog.test/journal/third-entry/",
    ]  # pagination and feed are not posts
    assert not v.has_own_prose
    html = (SITE / "blog" / "index.html").read_text()
    v = read_listing(html, "http://blog.test/blog/", "http://blog.test/blog/")
    assert [u.rsplit("/", 2)[-2] for u in v.items] == [
        "data-quality-checks-that-catch-things",
        "hybrid-search-when-bm25-still-wins",
    ]


def test_home_page_with_an_intro_is_an_index_and_keeps_its_own_words():
    html = (PAGES / "home_intro_and_posts.html").read_text()
    v = read_listing(html, "http://lena.test/", "http://lena.test/")
    assert len(v.items) == 4 and v.has_own_prose
    own = without_items(html, v)
    assert "I have spent the last twelve years building data systems" in own
    assert "Rerunning a job should never double a row" not in own
    assert "idempotent-loads" not in own


def test_index_paths_make_a_page_with_prose_an_index():
    v = _verdict("tag_page.html", "http://lena.test/tag/python/")
    assert v.index_path and v.items == [
        "http://lena.test/2021/05/profiling/",
        "http://lena.test/2021/08/packaging/",
    ]
    for url in (
        "http://a.test/tag/python/",
        "http://a.test/category/ml",
        "http://a.test/blog/page/3/",
        "http://a.test/2023/",
        "http://a.test/2023/03/",
        "http://a.test/",
        "http://a.test/blog/",
        "http://a.test/archive?page=2",
    ):
        assert is_index_path(url), url
    for url in (
        "http://a.test/2023/03/retry-budgets/",
        "http://a.test/notes/article-with-links",
        "http://a.test/p/the-index-is-the-product",
    ):
        assert not is_index_path(url), url


def test_articles_of_every_real_shape_are_articles():
    for name, path in [
        ("blog_banner_h1_prism.html", "/2023/03/retry-budgets/"),
        ("wordpress_table_related.html", "/2022/05/10/bm25-vs-dense/"),
        ("medium_new_markup.html", "/@ana/sharding-1f2e"),
        ("linkedin_pulse.html", "/pulse/what-year-on-call/"),
    ]:
        v = _verdict(name, "http://x.test" + path)
        assert not v.is_listing, (name, v.reason)


NEWS_URL = "http://news.test/news/2024/03/council-votes-to-close-east-bank-water-plant"


def test_a_news_article_with_menus_and_rails_is_not_a_listing():
    """A news article: a menu of 10 sections, a 400-word body, a related-stories rail of 5
    posts and footer links. None of it makes the article an index, even with the rail and
    menu named neutrally, and even when the article is a 67-word brief (the rails then hold
    more words than the article: its main content, holding none of them, still decides)."""
    html = (PAGES / "news_article_rails.html").read_text()
    neutral = (
        html.replace("related-stories", "col-list")
        .replace("menu-level-1", "strip")
        .replace("header-wrap", "top")
    )
    brief = (PAGES / "news_brief_rails.html").read_text()
    for name, page in [("article", html), ("neutral names", neutral), ("brief", brief)]:
        v = read_listing(page, NEWS_URL, NEWS_URL)
        assert not v.is_listing and v.items == [], (name, v.reason)
    assert read_listing(html, NEWS_URL, NEWS_URL).prose_words >= 390


def test_a_wordpress_index_lists_its_cards_not_its_menu_or_widgets():
    # cards whose links sit in each <article>'s own <header>; a menu and a "recent posts"
    # widget with links to other posts; pagination
    v = _verdict("wordpress_blog_index.html", "http://tomas.test/blog/")
    assert v.items == [
        "http://tomas.test/2024/05/schema-drift-in-practice/",
        "http://tomas.test/2024/03/small-files-big-bills/",
        "http://tomas.test/2024/01/testing-sql-like-code/",
    ], v.reason


def test_cards_headed_by_their_own_header_are_items():
    # a static-site theme: each post a <div> whose <header> holds its link, no <article>
    cards = "".join(
        f'<div class="post"><header><h2><a href="/posts/{slug}/">{slug}</a></h2>'
        f"<time>2024-0{i}-01</time></header><p>An excerpt of the post.</p></div>"
        for i, slug in enumerate(["first-post", "second-post", "third-post"], 1)
    )
    html = (
        f'<html><body><header><a href="/">Site</a><a href="/posts/about-this-site/">About'
        f"</a></header><main>{cards}</main></body></html>"
    )
    v = read_listing(html, "http://a.test/posts/", "http://a.test/posts/")
    assert [u.rsplit("/", 2)[-2] for u in v.items] == ["first-post", "second-post", "third-post"]


def test_listing_items_are_post_like():
    article = "http://a.test/news/2024/03/some-story"
    for url in (
        "http://a.test/Opinion",
        "http://a.test/world/",
        "http://a.test/noticias.php?cat=14",
        "http://a.test/",
    ):
        assert not is_post_like(url, article), url
        assert not is_post_like(url, "http://a.test/"), url
    for url, listing in [
        ("http://a.test/journal/first-entry/", "http://a.test/journal/"),
        ("http://a.test/spa-blog/one/", "http://a.test/spa-blog/"),
        ("http://a.test/late-data/", "http://a.test/"),
        ("http://a.test/profiling-python/", "http://a.test/tag/python/"),
        ("http://a.test/blog/old-post/", "http://a.test/blog/page/3/"),
        ("http://a.test/2021/05/profiling/", "http://a.test/tag/python/"),
        ("http://a.test/post.php?id=12", "http://a.test/"),
    ]:
        assert is_post_like(url, listing), (url, listing)
    # a sibling section of the listing is not one of its posts
    assert not is_post_like("http://a.test/journal/", "http://a.test/notes/")


def test_placeholders_are_recognised_and_short_posts_are_not():
    for text in (
        "",
        "Loading…",
        "Loading posts...",
        "  …  ",
        "Please enable JavaScript to view this site.",
        "You need to enable JavaScript to run this app.",
    ):
        assert is_placeholder(text), text
    for text in ("Loading the dishwasher is a skill. #life", "Shipped it.", "Hello world"):
        assert not is_placeholder(text), text
    assert shows_placeholder((PAGES / "js_rendered_article.html").read_text())
    assert not shows_placeholder((PAGES / "article_with_links.html").read_text())


def test_linkedin_pulse_is_extracted_as_an_article():
    crawler = LinkedInCrawler()
    url = "https://www.linkedin.com/pulse/what-year-on-call-taught-me-priya-natarajan-abcde/"
    html = (PAGES / "linkedin_pulse.html").read_text()
    extracted = crawler.extract(FetchedPage(url, url, 200, html, "browser"))
    assert extracted.title == "What a year of on-call taught me"
    text = extracted.markdown
    assert "## Runbooks are for the tired you" in text and "The pager is a product." in text
    for clutter in ("Report this post", "+ Follow", "Staff Engineer at Northwind", "Published", "Repost"):
        assert clutter not in text, clutter
    assert crawler.category_for(url) == Category.ARTICLES
    assert crawler.category_for("https://www.linkedin.com/posts/priya_on-call-activity-1-x") is None


def test_a_feed_lists_its_entries_on_the_site():
    rss = (PAGES / "feed.xml").read_text()
    atom = (PAGES / "atom.xml").read_text()
    assert is_feed(rss) and is_feed(atom) and not is_feed((PAGES / "listing_index.html").read_text())
    assert feed_entries(rss, "http://lena.test/feed.xml", "http://lena.test/feed.xml") == [
        "http://lena.test/2020/06/feed-only-post/",
        "http://lena.test/2020/07/another-feed-post/",
    ]
    assert feed_entries(atom, "http://lena.test/atom.xml", "http://lena.test/atom.xml") == [
        "http://lena.test/2023/11/backfills/",
        "http://lena.test/2023/09/alerting-on-freshness/",
    ]
    for url in (
        "http://a.test/feed.xml",
        "http://a.test/feed/",
        "http://a.test/blog/rss",
        "http://a.test/index.xml",
        "http://a.test/atom.xml",
    ):
        assert looks_like_feed_url(url), url
    assert not looks_like_feed_url("http://a.test/2023/03/feeding-the-model/")


# -- end to end ------------------------------------------------------------------------------
ITEM = (PAGES / "sibling_a.html").read_bytes()
ROUTES: dict[str, str] = {
    "/": "home_intro_and_posts.html",
    "/2023/05/backpressure/": "article_many_intext_links.html",
    "/tag/python/": "tag_page.html",
    "/spa/never/": "js_never_renders.html",
    "/spa-blog/": "js_rendered_listing.html",
    "/feed.xml": "feed.xml",
    "/wp/blog/": "wordpress_blog_index.html",
}
ITEMS = {
    "/2024/02/idempotent-loads/",
    "/2024/01/late-data/",
    "/2023/11/backfills/",
    "/2023/09/alerting-on-freshness/",
    "/2021/05/profiling/",
    "/2021/08/packaging/",
    "/spa-blog/one/",
    "/spa-blog/two/",
    "/spa-blog/three/",
    "/2020/06/feed-only-post/",
    "/2020/07/another-feed-post/",
    "/2024/05/schema-drift-in-practice/",
    "/2024/03/small-files-big-bills/",
    "/2024/01/testing-sql-like-code/",
}
REGISTERED = list(ROUTES)
SIBLINGS = {
    "/2021/03/bounded-queues/",
    "/2021/06/shedding-load/",
    "/2022/01/retry-storms/",
    "/2023/03/contracts/",
    "/2022/04/kafka-lag/",
}


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path in ROUTES:
            body = (PAGES / ROUTES[self.path]).read_bytes()
        elif self.path in ITEMS or self.path in SIBLINGS:
            body = ITEM
        else:
            self.send_error(404)
            return
        self.send_response(200)
        xml = self.path.endswith(".xml")
        self.send_header("Content-Type", "application/rss+xml" if xml else "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture(scope="module")
def crawled(browser):
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    author = Author(
        id="lena",
        full_name="Lena Park",
        links=[AuthorLink(url=base + path, platform=Platform.WEB) for path in REGISTERED],
    )
    settings = CrawlSettings(
        allow_hosts=["127.0.0.1"], min_domain_interval_s=0.0, max_retries=0, page_timeout_s=4.0
    )
    try:
        report = crawl_author(author, settings, browser=browser)
    finally:
        server.shutdown()
    docs = {d.link.removeprefix(base): d for d in report.documents}
    failures = {f.link.removeprefix(base): f for f in report.failures}
    return docs, failures


def test_every_registered_link_yields_a_document_or_a_failure(crawled):
    """Articles and pages with words of their own give a document or a failure; a listing
    without prose of its own (the script-built one) gives its items instead."""
    docs, failures = crawled
    listings = {"/spa-blog/", "/feed.xml", "/wp/blog/"}
    for path in set(REGISTERED) - listings:
        assert (path in docs) != (path in failures), (path, sorted(docs), failures)
    for listing in listings:
        assert listing not in docs and listing not in failures


def test_an_article_linking_its_siblings_is_stored_and_pulls_nothing_in(crawled):
    docs, _ = crawled
    assert "Backpressure is a contract between stages" in docs["/2023/05/backpressure/"].content
    assert not SIBLINGS & set(docs), sorted(docs)


def test_a_home_page_expands_and_keeps_its_intro(crawled):
    docs, _ = crawled
    assert {
        "/2024/02/idempotent-loads/",
        "/2024/01/late-data/",
        "/2023/11/backfills/",
        "/2023/09/alerting-on-freshness/",
    } <= set(docs)
    home = docs["/"].content
    assert "I have spent the last twelve years building data systems" in home
    assert "Watermarks that do not lie" not in home


def test_a_tag_page_expands_to_its_posts(crawled):
    docs, _ = crawled
    assert {"/2021/05/profiling/", "/2021/08/packaging/"} <= set(docs)
    assert "/tag/python/page/2/" not in docs


def test_a_page_that_never_renders_is_a_recorded_failure_not_loading(crawled):
    docs, failures = crawled
    assert "/spa/never/" not in docs
    failure = failures["/spa/never/"]
    assert failure.kind == "no_content" and "placeholder" in failure.reason and "Loading" in failure.reason


def test_a_listing_built_by_javascript_is_rendered_before_it_is_judged(crawled):
    docs, _ = crawled
    assert {"/spa-blog/one/", "/spa-blog/two/", "/spa-blog/three/"} <= set(docs)


def test_a_registered_feed_expands_to_its_entries(crawled):
    docs, failures = crawled
    assert "/feed.xml" not in failures
    # in feed order, tracking parameters dropped, the talk on another site left out
    assert {"/2020/06/feed-only-post/", "/2020/07/another-feed-post/"} <= set(docs)
    assert not any("conference" in path for path in docs)


def test_a_wordpress_index_expands_to_its_cards_only(crawled):
    docs, failures = crawled
    cards = {
        "/2024/05/schema-drift-in-practice/",
        "/2024/03/small-files-big-bills/",
        "/2024/01/testing-sql-like-code/",
    }
    assert cards <= set(docs)
    for widget in (
        "/2023/11/late-arriving-dimensions/",
        "/2022/07/start-here-a-reading-guide/",
        "/blog/page/2/",
    ):
        assert widget not in docs and widget not in failures
