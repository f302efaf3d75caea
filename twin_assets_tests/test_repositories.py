"""Repositories end to end: cloned, kept clean of credentials, cleaned and chunked once, as code.

Built on a repository shaped like the real public ones that went wrong (a GPT model file, a
training script, a README, requirements.txt, a list of links, a notebook with outputs, and the
credential-like and tool files such repositories carry), as a real git repository in tmp_path.
"""

from __future__ import annotations

import json
import logging
import re
import subprocess
from pathlib import Path

import pytest

from resources.embedder import EmbedderResource
from twin_assets.crawling import crawl_author
from twin_assets.crawling.base import CrawlContext
from twin_assets.crawling.fetch import PageFetcher
from twin_assets.crawling.github import GithubCrawler, git_error_reason, render_repository
from twin_assets.crawling.settings import CrawlSettings
from twin_assets.datasets.splitting import document_words
from twin_assets.domain.documents import (
    Author,
    AuthorLink,
    Category,
    Platform,
    RawDocument,
    RepoFile,
    SourceKind,
)
from twin_assets.features.chunking import chunk_document
from twin_assets.features.cleaning import clean_document
from twin_assets_tests.repo_shapes import (
    CREDENTIAL_FILES,
    MODEL_PY,
    NOT_WRITING_FILES,
    README_MD,
    REQUIREMENTS_TXT,
    TRAIN_PY,
    URLS_TXT,
    notebook_json,
)

SETTINGS = CrawlSettings(
    allow_local_sources=True, min_domain_interval_s=0, max_retries=0, browser_mode="never"
)
LOG = logging.getLogger("test_repositories")
CONTEXT_LINE = re.compile(r"\A# in (?:class|def|async def) [^\n]*\n")
HEADER_ONLY = re.compile(r"(?:\s*(?:@[^\n]*|#[^\n]*)\n)*\s*(?:async def|def|class) [^\n]*:\s*")
OWN_FILES = {
    "model.py": MODEL_PY,
    "train.py": TRAIN_PY,
    "README.md": README_MD,
    "requirements.txt": REQUIREMENTS_TXT,
    "data/urls.txt": URLS_TXT,
}


def _git(repo: Path, *args: str) -> None:
    env = {
        "GIT_AUTHOR_NAME": "Maya",
        "GIT_AUTHOR_EMAIL": "m@example.com",
        "GIT_COMMITTER_NAME": "Maya",
        "GIT_COMMITTER_EMAIL": "m@example.com",
        "PATH": "/usr/bin:/bin",
        "HOME": str(repo.parent),
    }
    subprocess.run(["git", *args], cwd=repo, check=True, env=env, capture_output=True)


@pytest.fixture(scope="module")
def gpt_repo(tmp_path_factory) -> Path:
    repo = tmp_path_factory.mktemp("repos") / "tinygpt"
    files = {**OWN_FILES, "notebooks/sample.ipynb": notebook_json(), **CREDENTIAL_FILES, **NOT_WRITING_FILES}
    for rel, text in files.items():
        path = repo / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    _git(repo, "init", "-q", "-b", "main")
    _git(repo, "add", "-A", "-f")
    _git(repo, "commit", "-q", "-m", "initial")
    return repo


@pytest.fixture(scope="module")
def raw(gpt_repo) -> RawDocument:
    crawler = GithubCrawler()
    with PageFetcher(SETTINGS) as fetcher:
        ctx = CrawlContext(
            author=Author(id="maya", full_name="Maya"), settings=SETTINGS, fetcher=fetcher, log=LOG
        )
        return crawler.crawl(crawler.expand(AuthorLink(url=str(gpt_repo), kind=SourceKind.GIT), ctx)[0], ctx)


@pytest.fixture(scope="module")
def budget():
    return EmbedderResource().token_budget()


def test_credentials_svg_and_dot_files_never_become_data(raw):
    paths = {f.path for f in raw.files}
    assert paths == {*OWN_FILES, "notebooks/sample.ipynb"}
    for secret in (
        "sk-your-key-here",
        "changeme",
        "YOUR_PASSWORD",
        "PRIVATE KEY",
        "hunter2",
        "service_account",
        "b3BlbnNzaC1rZXktdjEAAAAA",
        "<svg",
        "__pycache__/",
    ):
        assert secret not in raw.content
        assert not any(secret in f.content for f in raw.files), secret


def test_notebook_is_read_as_its_code_and_markdown_cells(raw):
    nb = next(f for f in raw.files if f.path.endswith(".ipynb"))
    assert nb.language == "python"
    assert "# # Sampling from a trained model" in nb.content  # Markdown cell, as comments
    assert "def sample(model, n):\n    return model.generate(" in nb.content  # code verbatim
    assert "# %matplotlib inline" in nb.content and "# !pip install tiktoken" in nb.content
    for dropped in ("OUTPUT-STREAM-TEXT", "iVBORw0KGgo", "RAW-CELL-TEXT", '"cell_type"', "execution_count"):
        assert dropped not in nb.content
    assert nb.size == len(nb.content.encode())


def test_repository_is_cleaned_as_its_files_and_its_words_counted_once(raw):
    cleaned = clean_document(raw)
    assert cleaned.content == ""  # the `==> path <==` rendering is never cleaned as Markdown
    assert {f.path: f.content for f in cleaned.files if f.path in OWN_FILES} == OWN_FILES  # byte for byte
    assert document_words(cleaned) == sum(len(f.content.split()) for f in cleaned.files)
    assert cleaned.language == "en"  # from the README


def test_repository_is_chunked_once_as_code(raw, budget):
    cleaned = clean_document(raw)
    chunks = chunk_document(cleaned, budget)
    assert chunks and all(c.file_path for c in chunks)  # no chunk from a prose copy
    assert not any("==> " in c.content for c in chunks)
    assert all(c.token_count <= budget.max_seq_length for c in chunks)
    by_file: dict[str, list] = {}
    for c in chunks:
        by_file.setdefault(c.file_path, []).append(c)
    for path in ("model.py", "train.py", "data/urls.txt", "requirements.txt", "notebooks/sample.ipynb"):
        text = next(f.content for f in cleaned.files if f.path == path)
        assert "".join(CONTEXT_LINE.sub("", c.content, count=1) for c in by_file[path]) == text, path
    assert not [c.symbol for c in chunks if HEADER_ONLY.fullmatch(CONTEXT_LINE.sub("", c.content, count=1))]
    gpt_parts = [
        c
        for c in by_file["model.py"]
        if "GPT." in (c.symbol or "") or (c.symbol or "").startswith("class GPT ")
    ]
    assert len(gpt_parts) >= 3  # the class is over the budget, so it is split (never vacuous)
    assert all("(part " in c.symbol for c in gpt_parts)
    assert all(c.content.startswith("# in class GPT(nn.Module):") for c in gpt_parts[1:])
    assert all(c.content.endswith("\n") for c in by_file["data/urls.txt"])  # never cut inside a link
    nb = by_file["notebooks/sample.ipynb"]
    assert any(c.symbol == "def sample" for c in nb)  # the notebook's code parsed as Python
    ids = [c.id for c in chunk_document(cleaned, budget)]
    assert ids == [c.id for c in chunks]  # deterministic


def test_a_raw_repository_from_an_older_crawl_is_cleaned_the_same_way():
    """Raw documents stored before these rules: rendered content, notebook JSON, credentials."""
    files = [
        RepoFile(path="model.py", content=MODEL_PY, language="python"),
        RepoFile(path="nb.ipynb", content=notebook_json(), language="json"),
        RepoFile(path=".env", content="OPENAI_API_KEY=sk-your-key-here\n"),
        RepoFile(path="config/credentials.json", content='{"password": "x"}\n', language="json"),
        RepoFile(
            path="deploy/key.json", content=CREDENTIAL_FILES["deploy/project-4d2f1.json"], language="json"
        ),
        RepoFile(path="logo.svg", content="<svg/>\n"),
    ]
    raw = RawDocument(
        author_id="maya",
        platform=Platform.GITHUB,
        category=Category.REPOSITORIES,
        link="https://github.com/maya/tinygpt",
        title="tinygpt",
        content=render_repository(files),
        files=files,
    )
    cleaned = clean_document(raw)
    assert cleaned.content == ""
    assert [f.path for f in cleaned.files] == ["model.py", "nb.ipynb"]
    nb = cleaned.files[1]
    assert (
        nb.language == "python" and "iVBORw0KGgo" not in nb.content and "def sample(model, n):" in nb.content
    )
    # a repository document carrying only the rendering is read back as its files
    only_text = raw.model_copy(update={"files": [], "content": render_repository(files[:1])})
    again = clean_document(only_text)
    assert again.content == "" and [(f.path, f.content) for f in again.files] == [("model.py", MODEL_PY)]


def test_a_failed_clone_keeps_gits_meaningful_lines(tmp_path):
    missing = tmp_path / "nowhere"
    missing.mkdir()
    report = crawl_author(
        Author(id="maya", full_name="M", links=[AuthorLink(url=str(missing), kind=SourceKind.GIT)]),
        SETTINGS,
        LOG,
    )
    [failure] = report.failures
    assert failure.kind == "git_error"
    assert "fatal:" in failure.reason and "does not appear to be a git repository" in failure.reason
    assert "and the repository exists." in failure.reason  # the whole message, not only its tail
    assert not failure.reason.endswith("failed: and the repository exists.")
    stderr = (
        "Cloning into 'x'...\nhint: something\nfatal: unable to access 'https://example.com/x/': "
        + "The requested URL returned error: 403 " * 40
        + "\n"
    )
    reason = git_error_reason(stderr)
    assert reason.startswith("fatal: unable to access") and len(reason) <= 500
    assert git_error_reason("") == "unknown error (git wrote nothing)"


def test_notebook_with_broken_json_is_skipped_with_a_reason(tmp_path, caplog):
    repo = tmp_path / "nbrepo"
    (repo / "nb").mkdir(parents=True)
    (repo / "nb" / "broken.ipynb").write_text('{"cells": [')
    (repo / "nb" / "ok.ipynb").write_text(
        json.dumps({"cells": [{"cell_type": "code", "source": "x = 1"}], "metadata": {}, "nbformat": 4})
    )
    _git(repo, "init", "-q", "-b", "main")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", "nb")
    crawler = GithubCrawler()
    with PageFetcher(SETTINGS) as fetcher, caplog.at_level(logging.INFO, logger=LOG.name):
        ctx = CrawlContext(
            author=Author(id="maya", full_name="Maya"), settings=SETTINGS, fetcher=fetcher, log=LOG
        )
        doc = crawler.crawl(crawler.expand(AuthorLink(url=str(repo), kind=SourceKind.GIT), ctx)[0], ctx)
    assert [(f.path, f.content) for f in doc.files] == [("nb/ok.ipynb", "# %%\nx = 1\n")]
    assert "nb/broken.ipynb: malformed notebook" in caplog.text
