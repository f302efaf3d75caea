"""Dispatcher, git repositories, GitHub user listing and data-export importers."""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
from pathlib import Path

import pytest

from twin_assets.crawling import crawl_author
from twin_assets.crawling.base import CrawlContext
from twin_assets.crawling.dispatcher import default_registry
from twin_assets.crawling.errors import ExportError
from twin_assets.crawling.exports import LinkedInExportImporter, MediumExportImporter
from twin_assets.crawling.fetch import PageFetcher
from twin_assets.crawling.generic import GenericArticleCrawler
from twin_assets.crawling.github import GithubCrawler
from twin_assets.crawling.linkedin import LinkedInCrawler
from twin_assets.crawling.medium import MediumCrawler
from twin_assets.crawling.settings import CrawlSettings
from twin_assets.crawling.substack import SubstackCrawler
from twin_assets.domain.documents import Author, AuthorLink, Platform, SourceKind
from twin_assets.paths import SAMPLE_DATA_DIR
from twin_assets.sample_data.server import SampleSite

SETTINGS = CrawlSettings(
    allow_hosts=["127.0.0.1"],
    allow_local_sources=True,
    min_domain_interval_s=0,
    max_retries=0,
    browser_mode="never",
)
LOG = logging.getLogger("test_crawling_sources")


@pytest.mark.parametrize(
    ("link", "expected"),
    [
        (AuthorLink(url="https://medium.com/@maya"), MediumCrawler),
        (AuthorLink(url="https://maya.medium.com/"), MediumCrawler),
        (AuthorLink(url="https://retrievalnotebook.substack.com/archive"), SubstackCrawler),
        (AuthorLink(url="https://www.linkedin.com/in/maya/recent-activity/all/"), LinkedInCrawler),
        (AuthorLink(url="https://github.com/maya"), GithubCrawler),
        (AuthorLink(url="https://maya.codes/blog/"), GenericArticleCrawler),
        (AuthorLink(url="https://notmedium.com/@maya"), GenericArticleCrawler),  # not a subdomain
        (
            AuthorLink(url="https://newsletter.maya.codes/archive", platform=Platform.SUBSTACK),
            SubstackCrawler,
        ),
        (AuthorLink(url="http://127.0.0.1:8000/medium/@m/", platform=Platform.MEDIUM), MediumCrawler),
        (AuthorLink(url="/tmp/repo", kind=SourceKind.GIT), GithubCrawler),
        (
            AuthorLink(url="/tmp/x.zip", platform=Platform.LINKEDIN, kind=SourceKind.EXPORT),
            LinkedInExportImporter,
        ),
        (
            AuthorLink(url="/tmp/medium", platform=Platform.MEDIUM, kind=SourceKind.EXPORT),
            MediumExportImporter,
        ),
    ],
)
def test_dispatcher_picks_the_crawler(link, expected):
    assert type(default_registry().for_link(link)) is expected


def test_dispatcher_refuses_exports_without_an_importer():
    with pytest.raises(ExportError):
        default_registry().for_link(AuthorLink(url="/x", kind=SourceKind.EXPORT))


@pytest.fixture(scope="module")
def sample_repo(tmp_path_factory) -> Path:
    repo = tmp_path_factory.mktemp("git") / "chunkwise"
    shutil.copytree(SAMPLE_DATA_DIR / "repo", repo)
    (repo / "assets" / "logo.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00binary")
    (repo / "src" / "chunkwise" / "crlf.txt").write_bytes(b"line one\r\n\tline two  \r\n")
    (repo / "huge.txt").write_text("x" * 300_000)
    env = {
        "GIT_AUTHOR_NAME": "Maya",
        "GIT_AUTHOR_EMAIL": "m@example.com",
        "GIT_COMMITTER_NAME": "Maya",
        "GIT_COMMITTER_EMAIL": "m@example.com",
        "GIT_COMMITTER_DATE": "2026-03-01T10:00:00Z",
        "GIT_AUTHOR_DATE": "2026-03-01T10:00:00Z",
        "PATH": "/usr/bin:/bin",
        "HOME": str(repo.parent),
    }
    for cmd in (
        ["git", "init", "-q", "-b", "main"],
        ["git", "add", "-A", "-f"],
        ["git", "commit", "-q", "-m", "initial"],
    ):
        subprocess.run(cmd, cwd=repo, check=True, env=env, capture_output=True)
    return repo


def _ctx(fetcher, settings=SETTINGS) -> CrawlContext:
    return CrawlContext(
        author=Author(id="maya", full_name="Maya"), settings=settings, fetcher=fetcher, log=LOG
    )


@pytest.mark.parametrize("as_uri", [False, True])
def test_git_crawler_keeps_own_files_byte_for_byte_and_skips_clutter(sample_repo, as_uri):
    url = sample_repo.as_uri() if as_uri else str(sample_repo)
    crawler = GithubCrawler()
    with PageFetcher(SETTINGS) as fetcher:
        link = AuthorLink(url=url, kind=SourceKind.GIT)
        doc = crawler.crawl(crawler.expand(link, _ctx(fetcher))[0], _ctx(fetcher))
    paths = {f.path for f in doc.files}
    assert "src/chunkwise/splitter.py" in paths and "README.md" in paths and "pyproject.toml" in paths
    for skipped in (
        "vendor/sixlib/six.py",
        "node_modules/left-pad/index.js",
        "package-lock.json",
        "docs/_build/html/index.html",
        "assets/logo.min.js",
        "assets/logo.png",
        "src/chunkwise/_version_generated.py",
        "huge.txt",
        ".gitignore",
    ):
        assert skipped not in paths, skipped
    for f in doc.files:
        assert f.content.encode() == (sample_repo / f.path).read_bytes(), f.path
    assert next(f for f in doc.files if f.path.endswith("crlf.txt")).content == "line one\r\n\tline two  \r\n"
    assert "==> src/chunkwise/splitter.py <==" in doc.content
    assert doc.category == "repositories" and doc.title == "chunkwise" and doc.source == "git"
    assert doc.published_at is not None and doc.published_at.year == 2026


def test_local_git_is_refused_unless_allowed_and_failures_are_recorded(sample_repo, tmp_path):
    strict = SETTINGS.model_copy(update={"allow_local_sources": False})
    export = str(SAMPLE_DATA_DIR / "exports" / "linkedin")
    author = Author(
        id="maya",
        full_name="Maya",
        links=[
            AuthorLink(url=str(sample_repo), kind=SourceKind.GIT),
            AuthorLink(url=export, platform=Platform.LINKEDIN, kind=SourceKind.EXPORT),
        ],
    )
    report = crawl_author(author, strict, LOG)  # exports are local files too: both refused
    assert [(f.link, f.kind) for f in report.failures] == [
        (str(sample_repo), "unsupported_scheme"),
        (export, "unsupported_scheme"),
    ]
    assert report.documents == []
    rooted = strict.model_copy(update={"export_roots": [str(SAMPLE_DATA_DIR / "exports")]})
    report = crawl_author(author, rooted, LOG)
    assert [f.kind for f in report.failures] == ["unsupported_scheme"]
    assert len(report.documents) >= 3  # an export inside an export root comes through
    assert {d.source_link for d in report.documents} == {export}  # for pruning removed links
    not_a_repo = tmp_path / "empty"
    not_a_repo.mkdir()
    report = crawl_author(
        Author(id="maya", full_name="M", links=[AuthorLink(url=str(not_a_repo), kind=SourceKind.GIT)]),
        SETTINGS,
        LOG,
    )
    assert [f.kind for f in report.failures] == ["git_error"]
    assert "fatal:" in report.failures[0].reason  # git's own message, not the tail of its last line


def test_github_user_expands_to_own_non_fork_repos_via_the_api(tmp_path):
    api = tmp_path / "api" / "users" / "maya"
    api.mkdir(parents=True)
    site = SampleSite(port=0, root=tmp_path)
    site.start()
    try:
        base = site.base_url
        repos = [
            {"name": "chunkwise", "html_url": f"{base}/maya/chunkwise", "fork": False},
            {"name": "evals", "html_url": f"{base}/maya/evals", "fork": False},
            {"name": "forked", "html_url": f"{base}/maya/forked", "fork": True},
            {"name": "other", "html_url": f"{base}/someone-else/other", "fork": False},
            {"name": "elsewhere", "html_url": "https://evil.example/maya/x", "fork": False},
        ]
        (api / "repos").write_text(json.dumps(repos))
        settings = SETTINGS.model_copy(update={"github_api_base": f"{base}/api"})
        with PageFetcher(settings) as fetcher:
            targets = GithubCrawler().expand(
                AuthorLink(url=f"{base}/maya", platform=Platform.GITHUB), _ctx(fetcher, settings)
            )
        assert [t.url for t in targets] == [f"{base}/maya/chunkwise", f"{base}/maya/evals"]
        repo_link = AuthorLink(url="https://github.com/maya/chunkwise/tree/main/src")
        with PageFetcher(settings) as fetcher:
            assert [t.url for t in GithubCrawler().expand(repo_link, _ctx(fetcher, settings))] == [
                "https://github.com/maya/chunkwise"
            ]
    finally:
        site.stop()


def _linkedin_zip(tmp_path: Path) -> Path:
    from twin_assets.sample_data.prepare import build_linkedin_export

    return build_linkedin_export(tmp_path / "Basic_LinkedInDataExport.zip")


def test_linkedin_export_zip_and_directory_give_the_same_posts(tmp_path):
    importer = LinkedInExportImporter()
    results = []
    with PageFetcher(SETTINGS) as fetcher:
        for url in (str(_linkedin_zip(tmp_path)), str(SAMPLE_DATA_DIR / "exports" / "linkedin")):
            link = AuthorLink(url=url, platform=Platform.LINKEDIN, kind=SourceKind.EXPORT)
            targets = importer.expand(link, _ctx(fetcher))
            results.append([importer.crawl(t, _ctx(fetcher)) for t in targets])
    zipped, unpacked = results
    assert [(d.link, d.content) for d in zipped] == [(d.link, d.content) for d in unpacked]
    first = zipped[0]
    assert first.link.startswith("https://www.linkedin.com/feed/update/")
    assert first.category == "posts" and first.source == "export"
    assert first.published_at.isoformat().startswith("2026-02-11T08:14:02")
    assert "Cheapest retrieval win of the quarter: a reranker. 🔥\n\nWe fetch the top 50" in first.content
    assert '""we have no good answer""' not in first.content and '"we have no good answer"' in first.content


def test_posts_csv_variant_is_read(tmp_path):
    (tmp_path / "posts.csv").write_text(
        'date,url,text\n2025-05-01,https://www.linkedin.com/posts/x-1,"Hello\n\nworld"\n'
        "2025-05-02,https://www.linkedin.com/posts/x-2,\n",
        encoding="utf-8",
    )
    importer = LinkedInExportImporter()
    with PageFetcher(SETTINGS) as fetcher:
        link = AuthorLink(url=str(tmp_path), platform=Platform.LINKEDIN, kind=SourceKind.EXPORT)
        targets = importer.expand(link, _ctx(fetcher))
        docs = [importer.crawl(t, _ctx(fetcher)) for t in targets]
    assert [d.link for d in docs] == ["https://www.linkedin.com/posts/x-1"]  # empty row skipped
    assert docs[0].content == "Hello\n\nworld\n" and [b.text for b in docs[0].blocks] == ["Hello", "world"]


def test_medium_export_importer_uses_canonical_links(tmp_path):
    export = tmp_path / "medium"
    shutil.copytree(SAMPLE_DATA_DIR / "exports" / "medium", export)
    (export / "posts" / "draft_Unfinished-123.html").write_text("<article class='h-entry'></article>")
    importer = MediumExportImporter()
    with PageFetcher(SETTINGS) as fetcher:
        link = AuthorLink(url=str(export), platform=Platform.MEDIUM, kind=SourceKind.EXPORT)
        targets = importer.expand(link, _ctx(fetcher))
        docs = {d.title: d for d in (importer.crawl(t, _ctx(fetcher)) for t in targets)}
    assert set(docs) == {"Why Your Retrieval Eval Lies to You", "Embedding Drift Is Real. Pin Your Models."}
    doc = docs["Why Your Retrieval Eval Lies to You"]
    assert doc.link.startswith("https://medium.com/@mayakowalski/why-your-retrieval-eval-lies-to-you")
    assert doc.published_at.isoformat().startswith("2026-01-20")
    assert doc.content.count("Why Your Retrieval Eval Lies to You") == 1  # body's title copy dropped
    assert "### Lie one: the questions were written by looking at the answers" in doc.content
    assert "By Maya Kowalski on" not in doc.content and "Canonical link" not in doc.content
