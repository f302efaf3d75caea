"""Collection bookkeeping over several crawls: pruning links that left the registry, the failure
table following the latest crawl, and cleaning that never drops a document on an empty re-fetch.

The crawl itself is faked (`twin_assets.collect.crawl_author` hands out a prepared CrawlReport's
documents and failures through its callbacks and returns it), so
these run against the real warehouse with no browser and no network.
"""

from __future__ import annotations

import pytest

import twin_assets.crawling.collect as collect
from twin_assets.crawling.collect import collect_author, collection_metadata
from twin_assets.crawling.settings import CrawlSettings
from twin_assets.domain.documents import (
    Author,
    AuthorLink,
    Category,
    CrawlFailure,
    CrawlReport,
    Platform,
    RawDocument,
    SourceKind,
)
from twin_assets.features.incremental import clean_author

AUTHOR = "ada"
BLOG = "https://ada.example/blog/"
SUBSTACK = "https://ada.substack.com/archive"
EXPORT = "/exports/ada-linkedin.zip"
SETTINGS = CrawlSettings()


def article(slug: str, source: str | None, text: str = "") -> RawDocument:
    return RawDocument(
        author_id=AUTHOR,
        platform=Platform.WEB,
        category=Category.ARTICLES,
        link=f"https://ada.example/{slug}",
        title=slug,
        source_link=source,
        content=text or f"{slug}: what I learned about retrieval, written down at some length.",
    )


def post(n: int, source: str | None, text: str = "") -> RawDocument:
    return RawDocument(
        author_id=AUTHOR,
        platform=Platform.LINKEDIN,
        category=Category.POSTS,
        link=f"https://www.linkedin.com/posts/ada_{n}",
        source=SourceKind.EXPORT,
        source_link=source,
        content=text or f"Post {n}: shipping beats perfect, every single time, in every team.",
    )


def author(*links: str) -> Author:
    return Author(id=AUTHOR, full_name="Ada", links=[AuthorLink(url=u) for u in links])


def failure(link: str, kind: str = "http_error") -> CrawlFailure:
    return CrawlFailure(author_id=AUTHOR, link=link, kind=kind, reason="HTTP 503")


@pytest.fixture
def crawl(monkeypatch):
    """Set `crawl.report` before each collect_author call; the crawl returns a copy of it."""

    class FakeCrawl:
        report: CrawlReport | None = None

        def __call__(
            self, who: Author, settings: CrawlSettings, log=None, *, on_document=None, on_failure=None
        ) -> CrawlReport:
            assert who.id == self.report.author_id
            report = self.report.model_copy(deep=True)
            for document in report.documents:  # handed out one by one, as the real crawl does
                on_document(document)
            for failure_ in report.failures:
                on_failure(failure_)
            return report

    fake = FakeCrawl()
    monkeypatch.setattr(collect, "crawl_author", fake)
    return fake


def test_documents_of_removed_links_are_pruned_and_nothing_else(warehouse, crawl):
    store = warehouse.get_store()
    legacy = article("legacy", None)  # stored before documents recorded their source link
    store.upsert_documents([legacy])
    crawl.report = CrawlReport(
        author_id=AUTHOR,
        documents=[
            article("a1", BLOG),
            article("a2", BLOG),
            article("s1", SUBSTACK),
            post(1, EXPORT),
            post(2, EXPORT),
        ],
    )
    first = collect_author(author(BLOG, SUBSTACK, EXPORT), SETTINGS, store)
    assert first.removed == 0 and len(first.stored_hashes) == 6
    assert clean_author(store, AUTHOR).new == 6

    # The export leaves the registry; the substack listing fails this time; the blog no longer
    # lists a2 (a listing that shrinks is not a removal) and now also yields the legacy page.
    crawl.report = CrawlReport(
        author_id=AUTHOR,
        documents=[article("a1", BLOG), article("legacy", BLOG)],
        failures=[failure(SUBSTACK)],
    )
    second = collect_author(author(BLOG, SUBSTACK), SETTINGS, store)
    removed = sorted([post(1, EXPORT).id, post(2, EXPORT).id])
    assert second.removed_ids == removed
    assert collection_metadata(second)["removed"] == 2
    assert second.data_version != first.data_version
    kept = {d.link: d.source_link for d in store.get_documents(AUTHOR)}
    assert kept == {
        article("a1", BLOG).link: BLOG,
        article("a2", BLOG).link: BLOG,  # no longer listed, link still registered: kept
        article("s1", SUBSTACK).link: SUBSTACK,  # its link failed this time: kept
        legacy.link: BLOG,  # its source is now recorded ...
    }
    assert second.stats.unchanged == 2 and second.stats.updated == 0  # ... without a rewrite
    cleaned = clean_author(store, AUTHOR)
    assert sorted(cleaned.deleted_ids) == removed and cleaned.unchanged == 4

    third = collect_author(author(BLOG, SUBSTACK), SETTINGS, store)  # same crawl again: a no-op
    assert third.removed == 0 and third.data_version == second.data_version

    # a document whose source was never recorded is never pruned, whatever the registry says
    store.upsert_documents([article("old", None)])
    crawl.report = CrawlReport(author_id=AUTHOR)
    assert collect_author(author(), SETTINGS, store).removed == 4
    assert [d.title for d in store.get_documents(AUTHOR)] == ["old"]


def test_failure_table_follows_the_latest_crawl(warehouse, crawl):
    store = warehouse.get_store()
    item = "https://ada.example/broken-post"
    crawl.report = CrawlReport(
        author_id=AUTHOR,
        documents=[article("a1", BLOG)],
        failures=[failure(SUBSTACK, "timeout"), failure(item)],
    )
    collect_author(author(BLOG, SUBSTACK), SETTINGS, store)
    assert sorted(f.link for f in store.list_failures(AUTHOR)) == [item, SUBSTACK]

    # The substack listing now works (its link produced no document of the same URL) and the
    # broken item is no longer listed: both stale rows go, a new failure is recorded.
    crawl.report = CrawlReport(
        author_id=AUTHOR, documents=[article("s1", SUBSTACK)], failures=[failure(BLOG, "refused_address")]
    )
    collect_author(author(BLOG, SUBSTACK), SETTINGS, store)
    assert [(f.link, f.kind) for f in store.list_failures(AUTHOR)] == [(BLOG, "refused_address")]

    crawl.report = CrawlReport(author_id=AUTHOR, failures=[failure(BLOG, "timeout")])
    collect_author(author(BLOG, SUBSTACK), SETTINGS, store)  # still failing: one row, updated
    assert [(f.link, f.kind) for f in store.list_failures(AUTHOR)] == [(BLOG, "timeout")]
    assert [d.title for d in store.get_documents(AUTHOR)] == ["a1", "s1"]  # nothing lost


def test_a_document_that_cleans_to_nothing_keeps_its_previous_version(warehouse):
    store = warehouse.get_store()
    good = post(7, EXPORT)
    store.upsert_documents([good])
    assert clean_author(store, AUTHOR).new == 1
    (before,) = store.get_cleaned(AUTHOR)

    store.upsert_documents([post(7, EXPORT, text="🚀🔥\nFollow\n…see more")])  # a broken re-fetch
    for _ in range(2):  # and again on the next run: still kept, still reported
        stats = clean_author(store, AUTHOR)
        assert stats.failed == 1 and stats.deleted == 0 and stats.deleted_ids == []
        assert good.link in stats.failures[0] and "previous cleaned version kept" in stats.failures[0]
        assert store.get_cleaned(AUTHOR) == [before]

    assert store.delete_documents(AUTHOR, [good.id]) == 1  # only a vanished raw document is gone
    gone = clean_author(store, AUTHOR)
    assert gone.deleted_ids == [good.id] and store.get_cleaned(AUTHOR) == []
