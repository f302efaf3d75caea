"""A table extracted from a page stays a Markdown table, one row per line, through cleaning and
chunking (the chunk it lands in holds its rows intact and in order)."""

from __future__ import annotations

import pytest

from resources.embedder import EmbedderResource
from twin_assets.domain.documents import Block, Category, Platform, RawDocument
from twin_assets.features.chunking import chunk_document
from twin_assets.features.cleaning import clean_document

ROWS = ["| retriever | recall@10 | p50 latency |", "| --- | --- | --- |", "| BM25 | 0.61 | 4 ms |",
        "| dense (MiniLM) | 0.72 | 9 ms. |", "| hybrid | 0.79 | 11 ms |"]


@pytest.fixture(scope="module")
def budget():
    return EmbedderResource().token_budget()


def test_table_rows_survive_cleaning_and_chunking(budget):
    raw = RawDocument(
        author_id="ada", platform=Platform.WEB, category=Category.ARTICLES, link="https://ada.dev/bm25",
        title="BM25 against dense", content="ignored when blocks exist",
        blocks=[Block(kind="title", text="BM25 against dense", level=1),
                Block(kind="paragraph", text="I ran both retrievers over the same 40,000 tickets."),
                Block(kind="table", text="\n".join(ROWS)),
                Block(kind="paragraph", text="The hybrid wins on recall and costs two milliseconds.")],
    )
    chunks = chunk_document(clean_document(raw), budget)
    text = "\n\n".join(c.content for c in chunks)
    assert "\n".join(ROWS) in text
