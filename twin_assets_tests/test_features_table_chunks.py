"""A table extracted from a page stays a Markdown table, one row per line, through cleaning and
chunking: a table that fits lands whole in one chunk; a longer one is cut between rows, never
inside one, and every part repeats the header row and separator so each chunk reads as a table."""

from __future__ import annotations

import pytest

from resources.embedder import EmbedderResource
from twin_assets.domain.documents import Block, Category, Platform, RawDocument, RepoFile
from twin_assets.domain.features import Chunk, CleanedDocument
from twin_assets.features.chunking import ChunkingConfig, chunk_document
from twin_assets.features.cleaning import clean_document

ROWS = [
    "| retriever | recall@10 | p50 latency |",
    "| --- | --- | --- |",
    "| BM25 | 0.61 | 4 ms |",
    "| dense (MiniLM) | 0.72 | 9 ms. |",
    "| hybrid | 0.79 | 11 ms |",
]


@pytest.fixture(scope="module")
def budget():
    return EmbedderResource().token_budget()


def test_table_rows_survive_cleaning_and_chunking(budget):
    raw = RawDocument(
        author_id="ada",
        platform=Platform.WEB,
        category=Category.ARTICLES,
        link="https://ada.dev/bm25",
        title="BM25 against dense",
        content="ignored when blocks exist",
        blocks=[
            Block(kind="title", text="BM25 against dense", level=1),
            Block(kind="paragraph", text="I ran both retrievers over the same 40,000 tickets."),
            Block(kind="table", text="\n".join(ROWS)),
            Block(kind="paragraph", text="The hybrid wins on recall and costs two milliseconds."),
        ],
    )
    chunks = chunk_document(clean_document(raw), budget)
    text = "\n\n".join(c.content for c in chunks)
    assert "\n".join(ROWS) in text


# -- a table longer than one chunk ----------------------------------------------------------------

HEADER = "| run | retriever | recall@10 | p50 latency | notes |"
SEPARATOR = "| --- | :--- | ---: | --- | --- |"


def table_rows(n: int) -> list[str]:
    """Rows shaped like a real results table: numbers, units, a sentence end inside a cell."""
    return [
        f"| {i} | {'BM25' if i % 3 == 0 else 'dense (MiniLM)'} | 0.{60 + i % 40} | {4 + i % 9} ms. | "
        f"Run {i} used shard {i % 7}. Cache warm. |"
        for i in range(n)
    ]


def article(content: str, doc_id: str = "doc-table") -> CleanedDocument:
    return CleanedDocument(
        id=doc_id,
        author_id="ada",
        platform=Platform.WEB,
        category=Category.ARTICLES,
        link="https://ada.dev/runs",
        title="Runs",
        content=content,
        raw_content_hash="r",
        content_hash="c",
    )


def table_parts(chunks: list[Chunk]) -> list[list[str]]:
    """The lines of each chunk that belong to the table (the rows, header included)."""
    return [[line for line in c.content.split("\n") if line.startswith("|")] for c in chunks]


def assert_whole_table(chunks: list[Chunk], rows: list[str]) -> None:
    """Every table line of every chunk is a whole row; every chunk holding rows starts them with
    the header and separator; the rows appear exactly once, in order."""
    whole = {HEADER, SEPARATOR, *rows}
    seen: list[str] = []
    for lines in table_parts(chunks):
        if not lines:
            continue
        assert [line for line in lines if line not in whole] == []  # no row cut or joined
        assert lines[:2] == [HEADER, SEPARATOR]
        assert HEADER not in lines[2:] and SEPARATOR not in lines[2:]
        seen += lines[2:]
    assert seen == rows


def test_a_300_row_table_is_cut_between_rows_and_every_part_repeats_the_header(budget):
    rows = table_rows(300)
    chunks = chunk_document(article("\n".join([HEADER, SEPARATOR, *rows])), budget)
    assert len(chunks) > 5
    assert all(c.content.startswith(f"{HEADER}\n{SEPARATOR}\n| ") for c in chunks)
    assert_whole_table(chunks, rows)
    assert [c.symbol for c in chunks] == [
        f"table (part {k}/{len(chunks)})" for k in range(1, len(chunks) + 1)
    ]
    assert max(budget.count([c.content for c in chunks])) <= budget.max_seq_length
    again = chunk_document(article("\n".join([HEADER, SEPARATOR, *rows])), budget)
    assert [c.id for c in again] == [c.id for c in chunks]  # deterministic ids


def test_a_long_table_between_paragraphs_keeps_reading_order_through_cleaning(budget):
    rows = table_rows(120)
    before = "I ran every retriever over the same 40,000 tickets, one shard at a time."
    after = "The hybrid wins on recall and costs two milliseconds at the median."
    raw = RawDocument(
        author_id="ada",
        platform=Platform.WEB,
        category=Category.ARTICLES,
        link="https://ada.dev/runs",
        title="Runs",
        content="ignored when blocks exist",
        blocks=[
            Block(kind="title", text="Runs", level=1),
            Block(kind="title", text="Setup", level=2),
            Block(kind="paragraph", text=before),
            Block(kind="table", text="\n".join([HEADER, SEPARATOR, *rows])),
            Block(kind="paragraph", text=after),
        ],
    )
    chunks = chunk_document(clean_document(raw), budget)
    assert_whole_table(chunks, rows)
    text = "\n".join(c.content for c in chunks)
    assert text.index(before) < text.index(rows[0]) < text.index(rows[-1]) < text.index(after)
    assert all(c.section == "Setup" for c in chunks)  # the section heading context is kept
    holding = [c for c in chunks if any(r in c.content for r in rows)]
    assert len(holding) > 1 and all(c.symbol and c.symbol.startswith("table (part ") for c in holding)


def test_a_row_over_the_budget_is_cut_at_cell_boundaries_never_mid_word(budget):
    rows = table_rows(6)
    wide = "| 99 | " + " | ".join(f"cell{j} holds several plain words" for j in range(40)) + " |"
    rows.insert(3, wide)
    config = ChunkingConfig(article_max_tokens=96)
    chunks = chunk_document(article("\n".join([HEADER, SEPARATOR, *rows])), budget, config)
    assert max(c.token_count for c in chunks) <= 96
    parts = table_parts(chunks)
    assert all(lines[:2] == [HEADER, SEPARATOR] for lines in parts)
    body = [lines[2:] for lines in parts]
    pieces = [line for lines in body for line in lines if line not in rows]
    assert len(pieces) > 2  # the wide row, in pieces
    assert all(p.startswith("| ") for p in pieces)  # each piece starts at a cell's pipe
    assert " ".join(pieces).split() == wide.split()  # nothing lost, no word cut
    assert [line for lines in body for line in lines if line in rows] == [r for r in rows if r != wide]


def test_a_table_without_header_line_is_still_cut_between_rows(budget):
    rows = [f"| step {i} | Embed shard {i}. Write the vectors. |" for i in range(200)]
    chunks = chunk_document(article("\n".join(rows)), budget)
    assert len(chunks) > 2
    lines = [line for lines in table_parts(chunks) for line in lines]
    assert lines == rows


def test_tables_in_posts_and_markdown_files_are_cut_between_rows(budget):
    rows = table_rows(40)
    table = "\n".join([HEADER, SEPARATOR, *rows])
    post = CleanedDocument(
        id="p",
        author_id="ada",
        platform=Platform.LINKEDIN,
        category=Category.POSTS,
        link="https://l/p",
        content=f"Numbers from last week:\n{table}\nThoughts welcome.",
        raw_content_hash="r",
        content_hash="c",
    )
    chunks = chunk_document(post, budget, ChunkingConfig(post_max_tokens=128))
    assert_whole_table(chunks, rows)
    assert chunks[0].content.startswith("Numbers from last week:\n" + HEADER)
    assert chunks[-1].content.endswith("\nThoughts welcome.")
    repo = CleanedDocument(
        id="r",
        author_id="ada",
        platform=Platform.GITHUB,
        category=Category.REPOSITORIES,
        link="https://github.com/ada/r",
        content="",
        raw_content_hash="r",
        content_hash="c",
        files=[RepoFile(path="BENCHMARKS.md", content=f"# Benchmarks\n\n{table}\n", language="markdown")],
    )
    chunks = chunk_document(repo, budget, ChunkingConfig(article_max_tokens=128))
    assert_whole_table(chunks, rows)
    assert all(c.file_path == "BENCHMARKS.md" and c.section == "Benchmarks" for c in chunks)


def test_a_header_too_long_to_repeat_still_stays_with_its_separator(budget):
    rows = table_rows(20)
    chunks = chunk_document(
        article("\n".join([HEADER, SEPARATOR, *rows])), budget, ChunkingConfig(article_max_tokens=48)
    )  # header+separator: most of 48
    assert chunks[0].content.startswith(f"{HEADER}\n{SEPARATOR}")
    lines = [line for lines in table_parts(chunks) for line in lines]
    assert lines == [HEADER, SEPARATOR, *rows]  # not repeated, no row cut
