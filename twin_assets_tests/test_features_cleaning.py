"""Cleaning: unicode, emoji, tracking URLs, boilerplate, code intact, language."""

from __future__ import annotations

import pytest

from twin_assets.domain.documents import Block, Category, Platform, RawDocument, RepoFile
from twin_assets.features.cleaning import (
    CLEANER_VERSION,
    EmptyAfterCleaning,
    clean_document,
    clean_url,
    detect_language,
    normalize_unicode,
)

CODE = 'import os\n\n\nclass Store:\n    """Keeps   things."""\n\n    def get(self,  key):\t# tab\n        return os.environ[key]   \n\n\n\n'


def post(content: str) -> RawDocument:
    return RawDocument(
        author_id="ada",
        platform=Platform.LINKEDIN,
        category=Category.POSTS,
        link="https://www.linkedin.com/posts/ada_1",
        content=content,
    )


def test_mathematical_bold_and_italic_letters_become_ascii():
    assert normalize_unicode("𝗕𝘂𝗶𝗹𝗱𝗶𝗻𝗴 𝘳𝘦𝘭𝘪𝘢𝘣𝘭𝘦 𝑹𝑨𝑮") == "Building reliable RAG"
    cleaned = clean_document(post("𝗧𝗵𝗿𝗲𝗲 𝗹𝗲𝘀𝘀𝗼𝗻𝘀 from shipping RAG to production this year."))
    assert cleaned.content.startswith("Three lessons from shipping RAG")


def test_post_keeps_line_breaks_and_turns_emoji_bullets_into_a_list():
    text = (
        "I rewrote our ingestion pipeline 🚀🔥\n\nHere is what changed:\n"
        "✅ Chunk by structure\n✅ Count tokens with the model's tokenizer\n👉 Re-embed only what changed\n\n"
        "Full write-up 👇\nhttps://blog.example.com/ingestion?utm_source=linkedin&utm_medium=social&page=2&fbclid=IwAR0x\n"
        "Short link: https://lnkd.in/eQ4xZ7bT\n"
        "Thanks @ Grace Hopper for the review!\n…see more\n\n"
        "hashtag#DataEngineering hashtag#RAG\n#rag #MLOps"
    )
    content = clean_document(post(text)).content
    lines = content.split("\n")
    assert lines[0] == "I rewrote our ingestion pipeline"
    assert "- Chunk by structure" in lines and "- Re-embed only what changed" in lines
    assert "https://blog.example.com/ingestion?page=2" in content
    assert "utm_" not in content and "fbclid" not in content and "lnkd.in" not in content
    assert "@Grace Hopper" in content
    assert "see more" not in content
    assert lines[-1] == "#DataEngineering #RAG #MLOps"  # one line, de-duplicated case-insensitively
    assert not any(ch in content for ch in "🚀🔥✅👉👇")


def test_tracking_parameters_removed_and_other_parameters_kept():
    assert (
        clean_url("https://x.io/a?id=7&utm_campaign=z&gclid=1&ref=home#top")
        == "https://x.io/a?id=7&ref=home#top"
    )
    assert (
        clean_url("https://medium.com/@ada/post-1?source=post_page-----abc")
        == "https://medium.com/@ada/post-1"
    )
    assert clean_url("https://lnkd.in/dXyZ") == ""


def test_article_keeps_headings_paragraphs_and_code_verbatim_and_drops_boilerplate():
    doc = RawDocument(
        author_id="ada",
        platform=Platform.MEDIUM,
        category=Category.ARTICLES,
        link="https://medium.com/@ada/vectors",
        title="𝗩𝗲𝗰𝘁𝗼𝗿 search, explained",
        content="ignored when blocks exist",
        blocks=[
            Block(kind="paragraph", text="Member-only story"),
            Block(kind="title", text="Why   cosine works", level=2),
            Block(kind="paragraph", text="5 min read"),
            Block(kind="paragraph", text="Normalised vectors make cosine\nsimilarity a plain dot product."),
            Block(kind="list_item", text="cheap to compute"),
            Block(kind="code", text=CODE, language="python"),
            Block(kind="paragraph", text="Share"),
            Block(kind="paragraph", text="Photo by Someone on Unsplash"),
        ],
    )
    cleaned = clean_document(doc)
    assert cleaned.title == "Vector search, explained"
    assert cleaned.content.split("\n\n")[:3] == [
        "## Why cosine works",
        "Normalised vectors make cosine similarity a plain dot product.",
        "- cheap to compute",
    ]
    assert CODE.rstrip("\n") in cleaned.content  # every space, tab and inner newline kept
    for junk in ("Member-only", "min read", "Share", "Unsplash"):
        assert junk not in cleaned.content


def test_markdown_content_without_blocks_keeps_fenced_code_with_blank_lines():
    content = (
        "# Title\n\nSome   text\nwrapped here.\n\n```python\ndef f():\n\n    return  1\n```\n\nClap\n\nEnd."
    )
    doc = RawDocument(
        author_id="ada",
        platform=Platform.WEB,
        category=Category.ARTICLES,
        link="https://ada.dev/a",
        content=content,
    )
    assert (
        clean_document(doc).content
        == "# Title\n\nSome text wrapped here.\n\n```python\ndef f():\n\n    return  1\n```\n\nEnd."
    )


def test_repository_files_kept_byte_for_byte_and_junk_files_dropped():
    files = [
        RepoFile(path="src/store.py", content=CODE, language="python"),
        RepoFile(path="package-lock.json", content='{"lockfileVersion": 3}'),
        RepoFile(path="LICENSE", content="MIT License ..."),
        RepoFile(path="node_modules/x/index.js", content="module.exports = 1"),
        RepoFile(path="static/app.min.js", content="var a=1;" * 500),
        RepoFile(path="empty.py", content="   \n"),
    ]
    doc = RawDocument(
        author_id="ada",
        platform=Platform.GITHUB,
        category=Category.REPOSITORIES,
        link="https://github.com/ada/store",
        title="store",
        content="# store\n\nA tiny key-value store used in my talks.",
        files=files,
    )
    cleaned = clean_document(doc)
    assert [f.path for f in cleaned.files] == ["src/store.py"]
    assert cleaned.files[0].content == CODE
    assert cleaned.language == "en"


def test_language_detection_is_deterministic_and_ignores_code():
    fr = "Les modèles d'embedding transforment chaque passage en un vecteur que l'on compare ensuite."
    assert {detect_language(fr) for _ in range(5)} == {"fr"}
    assert detect_language("Retrieval works best when every chunk fits the model entirely.") == "en"
    assert detect_language("```\nfor i in range(10): print(i)\n```\nok") == "unknown"


def test_lineage_hashes_and_determinism():
    raw = post("Shipping beats perfect. Every single time, in every team I have worked with.")
    a, b = clean_document(raw), clean_document(raw)
    assert a.raw_content_hash == raw.content_hash and a.id == raw.id
    assert a.content_hash == b.content_hash and a.cleaner_version == CLEANER_VERSION
    changed = clean_document(post("Shipping beats perfect. Almost every time."))
    assert changed.content_hash != a.content_hash


def test_document_with_only_boilerplate_is_rejected_clearly():
    with pytest.raises(EmptyAfterCleaning):
        clean_document(post("🚀🔥\nFollow\n…see more"))


def test_tables_and_quotes_keep_one_line_per_row_in_reading_order():
    """A WordPress post with a table: every row stays a Markdown table row after cleaning."""
    table = "| retriever | recall@10 |\n| --- | --- |\n| BM25 | 0.61 |\n| dense (MiniLM) | 0.72 |"
    doc = RawDocument(
        author_id="ada",
        platform=Platform.WEB,
        category=Category.ARTICLES,
        link="https://ada.dev/bm25",
        title="BM25 against dense",
        content="ignored when blocks exist",
        blocks=[
            Block(kind="paragraph", text="I ran both retrievers over the same tickets."),
            Block(kind="table", text=table),
            Block(kind="paragraph", text="Recall and latency on the ticket set."),
            Block(kind="quote", text="Measure first.\n\nThen tune."),
            Block(kind="paragraph", text="The hybrid wins on recall."),
        ],
    )
    content = clean_document(doc).content
    assert table in content
    assert "> Measure first.\n>\n> Then tune." in content
    assert content.index("same tickets") < content.index("| BM25 |") < content.index("Recall and latency")
    assert content.index("Then tune") < content.index("The hybrid wins")
