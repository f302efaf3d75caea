"""Chunking with the embedding model's real tokenizer: limits, overlap, code structure, ids."""

from __future__ import annotations

import pytest

from resources.embedder import EmbedderResource
from twin_assets.domain.documents import Category, Platform, RepoFile
from twin_assets.domain.features import CleanedDocument
from twin_assets.features.chunking import ChunkingConfig, chunk_document

PY = '''"""Tiny vector index."""
import math

# distance helpers
def dot(a, b):
    return sum(x * y for x, y in zip(a, b))


@staticmethod
def norm(a):
    return math.sqrt(dot(a, a))


class Index:
    """Brute force."""

    def __init__(self):
        self.rows = []

    def add(self, v):
        self.rows.append(v)


LIMIT = 10
'''


@pytest.fixture(scope="module")
def budget():
    return EmbedderResource().token_budget()


def doc(category: Category, content: str = "", files=None) -> CleanedDocument:
    return CleanedDocument(id="doc1", author_id="ada", platform=Platform.MEDIUM if category != Category.REPOSITORIES else Platform.GITHUB,
                           category=category, link="https://ada.dev/x", title="T", content=content, files=files or [],
                           raw_content_hash="r", content_hash="c")


def long_article() -> str:
    paras = []
    for i in range(12):
        sentences = [f"Paragraph {i} sentence {j} explains how retrieval quality depends on chunk boundaries and overlap." for j in range(9)]
        paras.append(" ".join(sentences))
    return "## Intro\n\n" + "\n\n".join(paras[:6]) + "\n\n## Details\n\n" + "\n\n".join(paras[6:]) + "\n\n" + "supercalifragilistic" * 400


def test_no_chunk_exceeds_the_model_limit_measured_with_its_tokenizer(budget):
    chunks = chunk_document(doc(Category.ARTICLES, long_article()), budget)
    assert len(chunks) >= 8
    real = budget.count([c.content for c in chunks])
    assert max(real) <= budget.max_seq_length == 256
    assert [c.token_count for c in chunks] == real  # stored counts are exact, specials included


def test_article_chunks_overlap_and_follow_sections(budget):
    chunks = chunk_document(doc(Category.ARTICLES, long_article()), budget)
    prose = [c for c in chunks if c.content.startswith("Paragraph")]
    overlaps = 0
    for a, b in zip(prose, prose[1:]):
        tail_sentence = a.content.rsplit(". ", 1)[-1]
        overlaps += tail_sentence in b.content
    assert overlaps >= len(prose) // 2
    assert chunks[0].content.startswith("## Intro") and chunks[0].section == "Intro"
    assert any(c.content.startswith("## Details") for c in chunks)
    assert {c.section for c in chunks} >= {"Intro", "Details"}


def test_posts_are_small(budget):
    text = "\n\n".join(f"Line {i}: small teams ship faster when the feedback loop is short and honest." for i in range(20))
    chunks = chunk_document(doc(Category.POSTS, text), budget, ChunkingConfig(post_max_tokens=64))
    assert len(chunks) > 3 and all(c.token_count <= 64 for c in chunks)


def test_python_code_is_cut_at_top_level_definitions_and_kept_verbatim(budget):
    files = [RepoFile(path="pkg/index.py", content=PY, language="python"),
             RepoFile(path="run.sh", content="#!/bin/sh\nset -e\n  echo  'hi'\n")]
    chunks = chunk_document(doc(Category.REPOSITORIES, "", files), budget)
    py = [c for c in chunks if c.file_path == "pkg/index.py"]
    assert [c.symbol for c in py] == ["module", "def dot", "def norm", "class Index", "module"]
    assert "".join(c.content for c in py) == PY  # never flattened: joined back it is the file
    assert py[1].content.startswith("# distance helpers\ndef dot")
    assert py[2].content.startswith("@staticmethod")
    sh = [c for c in chunks if c.file_path == "run.sh"]
    assert sh[0].content == files[1].content and sh[0].symbol == "lines 1-3"


def test_large_class_split_at_methods_and_unparseable_code_by_lines(budget):
    methods = "\n".join(f"    def m{i}(self, value):\n        return value * {i} + self.offset_{i}  # adjust\n" for i in range(40))
    big = f"class Big:\n    offset = 1\n\n{methods}"
    broken = "def broken(:\n" + "    x = 1\n" * 300
    chunks = chunk_document(doc(Category.REPOSITORIES, "", [RepoFile(path="big.py", content=big), RepoFile(path="broken.py", content=broken)]), budget)
    big_chunks = [c for c in chunks if c.file_path == "big.py"]
    assert len(big_chunks) > 1 and all(c.token_count <= 256 for c in chunks)
    assert big_chunks[0].symbol == "class Big" and big_chunks[1].symbol.startswith("def Big.m")
    assert "".join(c.content for c in big_chunks) == big
    broken_chunks = [c for c in chunks if c.file_path == "broken.py"]
    assert len(broken_chunks) > 1 and broken_chunks[0].symbol.startswith("lines 1-")
    assert "".join(c.content for c in broken_chunks) == broken


def test_chunk_ids_are_deterministic_and_content_addressed(budget):
    a = chunk_document(doc(Category.ARTICLES, long_article()), budget)
    b = chunk_document(doc(Category.ARTICLES, long_article()), budget)
    assert [c.id for c in a] == [c.id for c in b]
    assert len({c.id for c in a}) == len(a)
    edited = chunk_document(doc(Category.ARTICLES, long_article().replace("Paragraph 11 sentence 8", "Paragraph 11 sentence eight")), budget)
    same = {c.id for c in a} & {c.id for c in edited}
    assert 0 < len(same) < len(a)  # untouched chunks keep their ids (and vectors)
