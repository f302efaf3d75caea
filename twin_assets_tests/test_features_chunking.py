"""Chunking with the embedding model's real tokenizer: limits, overlap, code structure, ids."""

from __future__ import annotations

import ast
import itertools
import re

import pytest

from resources.embedder import EmbedderResource
from twin_assets.domain.documents import Category, Platform, RepoFile
from twin_assets.domain.features import CleanedDocument
from twin_assets.features.chunking import ChunkingConfig, chunk_document

CONTEXT_LINE = re.compile(r"\A# in (?:class|def|async def) [^\n]*\n")

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
    return CleanedDocument(
        id="doc1",
        author_id="ada",
        platform=Platform.MEDIUM if category != Category.REPOSITORIES else Platform.GITHUB,
        category=category,
        link="https://ada.dev/x",
        title="T",
        content=content,
        files=files or [],
        raw_content_hash="r",
        content_hash="c",
    )


def long_article() -> str:
    paras = []
    for i in range(12):
        sentences = [
            f"Paragraph {i} sentence {j} explains how retrieval quality depends on chunk boundaries and overlap."
            for j in range(9)
        ]
        paras.append(" ".join(sentences))
    return (
        "## Intro\n\n"
        + "\n\n".join(paras[:6])
        + "\n\n## Details\n\n"
        + "\n\n".join(paras[6:])
        + "\n\n"
        + "supercalifragilistic" * 400
    )


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
    for a, b in itertools.pairwise(prose):
        tail_sentence = a.content.rsplit(". ", 1)[-1]
        overlaps += tail_sentence in b.content
    assert overlaps >= len(prose) // 2
    assert chunks[0].content.startswith("## Intro") and chunks[0].section == "Intro"
    assert any(c.content.startswith("## Details") for c in chunks)
    assert {c.section for c in chunks} >= {"Intro", "Details"}


def test_posts_are_small(budget):
    text = "\n\n".join(
        f"Line {i}: small teams ship faster when the feedback loop is short and honest." for i in range(20)
    )
    chunks = chunk_document(doc(Category.POSTS, text), budget, ChunkingConfig(post_max_tokens=64))
    assert len(chunks) > 3 and all(c.token_count <= 64 for c in chunks)


def test_python_code_is_cut_at_top_level_definitions_and_kept_verbatim(budget):
    files = [
        RepoFile(path="pkg/index.py", content=PY, language="python"),
        RepoFile(path="run.sh", content="#!/bin/sh\nset -e\n  echo  'hi'\n"),
    ]
    chunks = chunk_document(doc(Category.REPOSITORIES, "", files), budget)
    py = [c for c in chunks if c.file_path == "pkg/index.py"]
    assert [c.symbol for c in py] == ["module", "def dot", "def norm", "class Index", "module"]
    assert "".join(c.content for c in py) == PY  # never flattened: joined back it is the file
    assert py[1].content.startswith("# distance helpers\ndef dot")
    assert py[2].content.startswith("@staticmethod")
    sh = [c for c in chunks if c.file_path == "run.sh"]
    assert sh[0].content == files[1].content and sh[0].symbol == "lines 1-3"


def test_large_class_split_at_methods_and_unparseable_code_by_lines(budget):
    methods = "\n".join(
        f"    def m{i}(self, value):\n        return value * {i} + self.offset_{i}  # adjust\n"
        for i in range(40)
    )
    big = f"class Big:\n    offset = 1\n\n{methods}"
    broken = "def broken(:\n" + "    x = 1\n" * 300
    chunks = chunk_document(
        doc(
            Category.REPOSITORIES,
            "",
            [RepoFile(path="big.py", content=big), RepoFile(path="broken.py", content=broken)],
        ),
        budget,
    )
    big_chunks = [c for c in chunks if c.file_path == "big.py"]
    n = len(big_chunks)
    assert n > 1 and all(c.token_count <= 256 for c in chunks)
    assert [c.symbol for c in big_chunks] == [f"class Big (part {k}/{n})" for k in range(1, n + 1)]
    assert big_chunks[0].content.startswith("class Big:\n    offset = 1\n\n    def m0(")
    assert all(c.content.startswith("# in class Big:\n    def m") for c in big_chunks[1:])
    assert "".join(without_context(c.content) for c in big_chunks) == big
    broken_chunks = [c for c in chunks if c.file_path == "broken.py"]
    assert len(broken_chunks) > 1 and broken_chunks[0].symbol.startswith("lines 1-")
    assert "".join(c.content for c in broken_chunks) == broken


def without_context(text: str) -> str:
    """A code chunk without its leading `# in class ...:` context line: a verbatim slice."""
    return CONTEXT_LINE.sub("", text, count=1)


def test_chunk_ids_are_deterministic_and_content_addressed(budget):
    a = chunk_document(doc(Category.ARTICLES, long_article()), budget)
    b = chunk_document(doc(Category.ARTICLES, long_article()), budget)
    assert [c.id for c in a] == [c.id for c in b]
    assert len({c.id for c in a}) == len(a)
    edited = chunk_document(
        doc(
            Category.ARTICLES,
            long_article().replace("Paragraph 11 sentence 8", "Paragraph 11 sentence eight"),
        ),
        budget,
    )
    same = {c.id for c in a} & {c.id for c in edited}
    assert 0 < len(same) < len(a)  # untouched chunks keep their ids (and vectors)


# -- repositories: code cut at statements, parts labelled, context kept -------------------------

HEADER_ONLY = re.compile(r"(?:\s*(?:@[^\n]*|#[^\n]*)\n)*\s*(?:async def|def|class) [^\n]*:\s*")


def repo_doc(*files: RepoFile) -> CleanedDocument:
    return doc(Category.REPOSITORIES, "", list(files))


def statement_starts(source: str) -> set[int]:
    """0-based lines where a statement, an `except`/`else`/`finally` clause or a comment or blank
    line before one begins: the only places a cut may fall between two chunks of Python."""
    tree = ast.parse(source)
    lines = source.splitlines()
    starts = {len(lines)}
    for node in ast.walk(tree):
        if isinstance(node, (ast.stmt, ast.ExceptHandler)):
            first = min([d.lineno for d in getattr(node, "decorator_list", [])] + [node.lineno]) - 1
            starts.add(first)
            j = first  # comments, blank lines and `else:` right above belong with it
            while j > 0 and (
                not lines[j - 1].strip()
                or lines[j - 1].lstrip().startswith("#")
                or lines[j - 1].strip() in ("else:", "finally:", "try:")
            ):
                j -= 1
                starts.add(j)
    return starts


def test_gpt_shaped_class_is_cut_at_statements_with_labelled_parts_and_context(budget):
    from twin_assets_tests.repo_shapes import MODEL_PY

    chunks = chunk_document(repo_doc(RepoFile(path="model.py", content=MODEL_PY, language="python")), budget)
    assert all(c.token_count <= 256 for c in chunks)
    # joined back without their context lines, the chunks are the file: nothing lost or repeated
    assert "".join(without_context(c.content) for c in chunks) == MODEL_PY
    # no chunk is a bare header such as `class GPT(nn.Module):`
    assert not [c.symbol for c in chunks if HEADER_ONLY.fullmatch(without_context(c.content))]
    # every cut falls between statements, never inside one (a call or a dict spanning lines)
    starts = statement_starts(MODEL_PY)
    line = 0
    for c in chunks[:-1]:
        line += without_context(c.content).count("\n")
        assert line in starts, (c.symbol, without_context(c.content)[-120:])
    gpt = [
        c
        for c in chunks
        if c.symbol and (c.symbol.startswith(("class GPT ", "def GPT.")) or c.symbol == "class GPT")
    ]
    assert len(gpt) > 3
    # the class starts with its header and its first statement: here a long `__init__`, split on
    # its own and numbered from its first part
    assert gpt[0].content.startswith("class GPT(nn.Module):\n\n    def __init__(self, cfg):\n")
    assert gpt[0].symbol in ("class GPT (part 1/7)", "def GPT.__init__ (part 1/3)")
    own = [c for c in gpt if c.symbol.startswith("class GPT (part ")]
    n = int(own[0].symbol.split("/")[1].rstrip(")"))
    assert all(c.symbol.endswith(f"/{n})") for c in own)
    split_methods = {c.symbol.split(" (part")[0] for c in gpt if c.symbol.startswith("def GPT.")}
    assert n == len(own) + len(split_methods)  # a method split on its own is one part of its class
    for c in gpt[1:]:  # every later part says where it lives
        assert c.content.startswith("# in class GPT(nn.Module):"), c.content[:80]
    assert "def GPT.from_checkpoint" in split_methods  # a method over the budget: split on its own
    fp = [c for c in gpt if c.symbol.startswith("def GPT.from_checkpoint")]
    m = len(fp)
    assert [c.symbol for c in fp] == [f"def GPT.from_checkpoint (part {k}/{m})" for k in range(1, m + 1)]
    assert "@classmethod\n    def from_checkpoint(cls, path, preset=None, overrides=None):" in fp[0].content
    assert all(
        c.content.startswith(
            "# in class GPT(nn.Module): > def from_checkpoint(cls, path, preset=None, overrides=None):\n"
        )
        for c in fp[1:]
    )
    # the class's own parts are numbered in order, a split method counting as one part
    assert [int(c.symbol.split("part ")[1].split("/")[0]) for c in own] == sorted(
        int(c.symbol.split("part ")[1].split("/")[0]) for c in own
    )


def test_top_level_script_is_split_at_statements_inside_its_blocks(budget):
    from twin_assets_tests.repo_shapes import TRAIN_PY

    chunks = chunk_document(
        repo_doc(RepoFile(path="train.py", content=TRAIN_PY)), budget, ChunkingConfig(code_max_tokens=96)
    )
    assert len(chunks) > 3 and all(c.token_count <= 96 for c in chunks)
    assert "".join(c.content for c in chunks) == TRAIN_PY  # module level: no signature to repeat
    starts = statement_starts(TRAIN_PY)
    line = 0
    for c in chunks[:-1]:
        line += c.content.count("\n")
        assert line in starts, (c.symbol, c.content[-120:])
    n = len(chunks)
    assert {c.symbol for c in chunks} <= {f"module (part {k}/{n})" for k in range(1, n + 1)}


def test_text_files_are_cut_between_lines_never_inside_a_url(budget):
    from twin_assets_tests.repo_shapes import REQUIREMENTS_TXT, URLS_TXT

    chunks = chunk_document(
        repo_doc(
            RepoFile(path="data/urls.txt", content=URLS_TXT, language="text"),
            RepoFile(path="requirements.txt", content=REQUIREMENTS_TXT, language="text"),
        ),
        budget,
    )
    urls = [c for c in chunks if c.file_path == "data/urls.txt"]
    assert len(urls) > 1 and "".join(c.content for c in urls) == URLS_TXT
    assert all(c.content.endswith("\n") for c in urls)  # whole lines only
    for link in URLS_TXT.split():
        assert sum(link in c.content for c in urls) == 1
    assert urls[0].symbol.startswith("lines 1-")
    req = [c for c in chunks if c.file_path == "requirements.txt"]
    assert [c.content for c in req] == [REQUIREMENTS_TXT]  # one chunk, its lines kept


def test_other_languages_are_cut_at_blank_lines_and_braces_never_mid_line(budget):
    funcs = "\n".join(
        f"export function handler{i}(event, context) {{\n"
        f"  const body = JSON.parse(event.body || '{{}}');\n"
        f"  if (!body.id) {{\n    return {{ statusCode: 400, body: 'missing id {i}' }};\n  }}\n"
        f"  return {{ statusCode: 200, body: JSON.stringify({{ id: body.id, n: {i} }}) }};\n}}\n"
        for i in range(30)
    )
    chunks = chunk_document(
        repo_doc(RepoFile(path="src/handlers.js", content=funcs, language="javascript")), budget
    )
    assert len(chunks) > 1 and "".join(c.content for c in chunks) == funcs
    for c in chunks:  # every chunk is whole functions: starts at one, ends after its brace
        assert c.content.startswith("export function handler"), c.content[:60]
        assert c.content.rstrip().endswith("}")


def test_an_oversized_statement_falls_back_to_whole_lines_with_its_context(budget):
    table = "".join(f"        'token_{i}': {i},  # weight {i}\n" for i in range(120))
    source = f"class Vocab:\n    def table(self):\n        return {{\n{table}        }}\n"
    chunks = chunk_document(repo_doc(RepoFile(path="vocab.py", content=source)), budget)
    assert len(chunks) > 2 and all(c.token_count <= 256 for c in chunks)
    assert "".join(without_context(c.content) for c in chunks) == source
    assert chunks[0].content.startswith("class Vocab:\n    def table(self):\n        return {\n")
    assert all(c.content.startswith("# in class Vocab: > def table(self):\n") for c in chunks[1:])
    assert all(c.content.endswith("\n") for c in chunks)
