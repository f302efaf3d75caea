"""Substack data-export importer: zip and directory, drafts, links, extraction, bad exports."""

from __future__ import annotations

import html
import logging
import re
import shutil
import zipfile
from pathlib import Path

import pytest

from twin_assets.authors.registry import load_registry
from twin_assets.crawling import crawl_author
from twin_assets.crawling.base import CrawlContext
from twin_assets.crawling.dispatcher import default_registry
from twin_assets.crawling.errors import ExportError
from twin_assets.crawling.fetch import PageFetcher
from twin_assets.crawling.settings import CrawlSettings
from twin_assets.crawling.substack import SubstackCrawler
from twin_assets.crawling.substack_export import (
    SubstackExportImporter,
    post_link,
    split_export_link,
)
from twin_assets.domain.documents import Author, AuthorLink, Platform, SourceKind
from twin_assets.paths import PROJECT_ROOT, SAMPLE_DATA_DIR

SETTINGS = CrawlSettings(
    allow_local_sources=True, min_domain_interval_s=0, max_retries=0, browser_mode="never"
)
LOG = logging.getLogger("test_crawling_substack_export")
SAMPLE = SAMPLE_DATA_DIR / "exports" / "substack"
DEDUP = "151927604.deduplicate-before-you-embed"
FILTERS = "153406118.metadata-filters-are-half-of-retrieval"
HEADER = (
    "post_id,post_date,is_published,email_sent_at,inbox_sent_at,type,audience,title,subtitle,podcast_url\n"
)


def _link(url: str) -> AuthorLink:
    return AuthorLink(url=url, platform=Platform.SUBSTACK, kind=SourceKind.EXPORT)


def _import(url: str) -> dict[str, object]:
    importer = SubstackExportImporter()
    with PageFetcher(SETTINGS) as fetcher:
        ctx = CrawlContext(
            author=Author(id="maya", full_name="Maya"), settings=SETTINGS, fetcher=fetcher, log=LOG
        )
        return {d.title: d for d in (importer.crawl(t, ctx) for t in importer.expand(_link(url), ctx))}


def _zip(src: Path, target: Path, prefix: str = "") -> Path:
    with zipfile.ZipFile(target, "w") as zf:
        for file in sorted(src.rglob("*")):
            if file.is_file():
                zf.write(file, prefix + file.relative_to(src).as_posix())
    return target


def test_sample_export_directory_and_zip_give_the_same_posts(tmp_path):
    unpacked = _import(f"{SAMPLE}#publication=retrievalnotebook.substack.com")
    zipped = _import(str(_zip(SAMPLE, tmp_path / "export-2026-03-12.zip", prefix="export/")))

    titles = {"Deduplicate Before You Embed", "Metadata Filters Are Half of Retrieval"}
    assert set(unpacked) == set(zipped) == titles  # the draft row is skipped, not a failure
    for title in titles:
        assert unpacked[title].content == zipped[title].content
    dedup, filters = (
        unpacked["Deduplicate Before You Embed"],
        unpacked["Metadata Filters Are Half of Retrieval"],
    )
    assert dedup.link == "https://retrievalnotebook.substack.com/p/deduplicate-before-you-embed"
    assert filters.link == "https://retrievalnotebook.substack.com/p/metadata-filters-are-half-of-retrieval"
    assert zipped["Deduplicate Before You Embed"].link == f"substack-export:{DEDUP}"
    assert dedup.platform == "substack" and dedup.category == "articles" and dedup.source == "export"
    assert dedup.published_at.isoformat() == "2026-02-17T08:30:00+00:00"

    # The code block comes through verbatim (indentation, blank lines, unescaped operators).
    source = (SAMPLE / "posts" / f"{DEDUP}.html").read_text()
    code = html.unescape(re.search(r"<pre><code>(.*?)</code></pre>", source, re.S).group(1))
    (block,) = [b for b in dedup.blocks if b.kind == "code"]
    assert block.text == code and "\n\n\ndef shingles" in block.text and "    return {tuple(" in block.text
    assert f"```\n{code}\n```" in dedup.content

    # Subscription widget and captioned image are clutter; title/subtitle lead the document.
    for clutter in ("Thanks for reading", "Subscribe", "Spot the difference", "Type your email"):
        assert clutter not in dedup.content
    assert dedup.content.startswith(
        "# Deduplicate Before You Embed\n\nNear-duplicates quietly eat your top-k."
    )
    assert dedup.content.count("Deduplicate Before You Embed") == 1
    assert "> Rule of thumb: if a passage appears more than twice" in dedup.content
    assert "- language, because a query in Polish" in filters.content


def _post(export: Path, post_id: str, text: str) -> None:
    (export / "posts").mkdir(parents=True, exist_ok=True)
    (export / "posts" / f"{post_id}.html").write_text(f"<p>{text}</p>", encoding="utf-8")


def test_bad_exports_are_recorded_and_the_other_posts_still_come_through(tmp_path):
    good = tmp_path / "good"
    good.mkdir()
    (good / "posts.csv").write_text(
        HEADER
        + "1.kept-post,2026-01-05T10:00:00.000Z,true,,,newsletter,everyone,Kept Post,,\n"
        + "2.lost-body,2026-01-06T10:00:00.000Z,true,,,newsletter,everyone,Lost Body,,\n"
        + "3.a-draft,,false,,,newsletter,everyone,A Draft,,\n",
        encoding="utf-8",
    )
    _post(good, "1.kept-post", "Chunk boundaries decide what retrieval can ever find, so I test them first.")
    (good / "posts" / "1.kept-post.opens.csv").write_text("email,timestamp\n")  # subscriber data, ignored
    no_csv = tmp_path / "no-csv"
    _post(no_csv, "9.orphan", "A body without its posts.csv row.")

    author = Author(
        id="maya",
        full_name="Maya",
        links=[_link(f"{good}#publication=https://news.maya.codes/"), _link(str(no_csv))],
    )
    report = crawl_author(author, SETTINGS, LOG)

    assert [(d.title, d.link) for d in report.documents] == [
        ("Kept Post", "https://news.maya.codes/p/kept-post")
    ]
    failures = {f.link: (f.kind, f.reason) for f in report.failures}
    assert set(failures) == {"https://news.maya.codes/p/lost-body", str(no_csv)}
    assert failures["https://news.maya.codes/p/lost-body"][0] == "export_error"
    assert "posts/2.lost-body.html is missing" in failures["https://news.maya.codes/p/lost-body"][1]
    assert failures[str(no_csv)][0] == "export_error" and "no posts.csv" in failures[str(no_csv)][1]
    assert all(f.platform == "substack" for f in report.failures)


def test_csv_without_post_id_column_is_an_export_error(tmp_path):
    (tmp_path / "posts.csv").write_text("id,title\n1,Hello\n", encoding="utf-8")
    with pytest.raises(ExportError, match="no post_id column"):
        _import(str(tmp_path))


@pytest.mark.parametrize(
    ("url", "path", "base"),
    [
        ("/x/export.zip", "/x/export.zip", None),
        ("/x/export.zip#publication=Notes.Example.com", "/x/export.zip", "https://notes.example.com"),
        (
            "file:///x/exp#publication=http://127.0.0.1:8765/substack/",
            "file:///x/exp",
            "http://127.0.0.1:8765/substack",
        ),
        ("/x/issue#3/export", "/x/issue#3/export", None),  # a '#' that is part of the path
    ],
)
def test_publication_is_read_from_the_link_fragment(url, path, base):
    assert split_export_link(url) == (path, base)


@pytest.mark.parametrize("bad", ["not a host", "ftp://example.com", "https://x.com/?a=1"])
def test_bad_publication_is_refused(bad):
    with pytest.raises(ExportError, match="publication"):
        split_export_link(f"/x/export.zip#publication={bad}")


def test_post_links_are_stable_without_publication_or_slug():
    assert post_link("7.some-slug", None) == "substack-export:7.some-slug"
    assert post_link("7", "https://a.substack.com") == "substack-export:7"  # no slug to build /p/
    assert post_link("7.some-slug", "https://a.substack.com") == "https://a.substack.com/p/some-slug"


@pytest.mark.parametrize(
    ("link", "expected"),
    [
        (_link("/tmp/substack-export.zip"), SubstackExportImporter),
        (_link("/tmp/substack#publication=a.substack.com"), SubstackExportImporter),
        (AuthorLink(url="https://a.substack.com/archive"), SubstackCrawler),
    ],
)
def test_dispatcher_routes_substack_exports_to_the_importer(link, expected):
    assert type(default_registry().for_link(link)) is expected


def test_bundled_registry_registers_the_sample_export():
    (author,) = load_registry(PROJECT_ROOT / "authors.yaml")
    (link,) = [lk for lk in author.links if lk.platform == Platform.SUBSTACK and lk.kind == SourceKind.EXPORT]
    path, base = split_export_link(link.url)
    assert Path(path) == SAMPLE and base == "https://retrievalnotebook.substack.com"
    assert type(default_registry().for_link(link)) is SubstackExportImporter


def test_export_copied_elsewhere_keeps_its_links(tmp_path):
    """Stable links do not depend on where the export lives: re-imports update, not duplicate."""
    copy = tmp_path / "moved"
    shutil.copytree(SAMPLE, copy)
    importer = SubstackExportImporter()
    with PageFetcher(SETTINGS) as fetcher:
        ctx = CrawlContext(
            author=Author(id="maya", full_name="Maya"), settings=SETTINGS, fetcher=fetcher, log=LOG
        )
        urls = [t.url for t in importer.expand(_link(str(copy)), ctx)]
    assert sorted(urls) == [f"substack-export:{DEDUP}", f"substack-export:{FILTERS}"]
