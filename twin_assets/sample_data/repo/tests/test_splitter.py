import pytest

from chunkwise import TextSplitter, split_python, split_sentences, split_text, whitespace_tokens

TEXT = """First paragraph has exactly six words.

Second paragraph is a little bit longer than the first one.

Third. It has two sentences, which matters later."""


def test_blank_input_gives_no_chunks():
    assert split_text("   \n\n  ") == []


def test_small_text_is_one_chunk():
    chunks = split_text(TEXT, max_tokens=100, overlap_tokens=0)
    assert len(chunks) == 1
    assert chunks[0].count("\n\n") == 2


def test_chunks_respect_budget():
    splitter = TextSplitter(max_tokens=12, overlap_tokens=0)
    for chunk in splitter.split(TEXT):
        assert chunk.n_tokens <= 12
        assert whitespace_tokens(chunk.text) == chunk.n_tokens


def test_overlap_repeats_tail_and_always_progresses():
    splitter = TextSplitter(max_tokens=14, overlap_tokens=6)
    chunks = splitter.split(TEXT)
    assert len(chunks) >= 2
    for prev, nxt in zip(chunks, chunks[1:]):
        assert nxt.start_piece > prev.start_piece
        assert nxt.end_piece > prev.end_piece


def test_long_sentence_falls_back_to_words():
    text = " ".join(f"w{i}" for i in range(50))
    chunks = split_text(text, max_tokens=10, overlap_tokens=0)
    assert len(chunks) == 5
    assert chunks[0].split() == [f"w{i}" for i in range(10)]


def test_sentence_splitting():
    assert split_sentences("One. Two! Three? four") == ["One.", "Two!", "Three? four"]


def test_invalid_overlap_rejected():
    with pytest.raises(ValueError):
        TextSplitter(max_tokens=10, overlap_tokens=10)


def test_split_python_top_level_defs():
    source = '''"""Doc."""
import os


@staticmethod
def a():
    return 1


class B:
    def c(self):
        return 2
'''
    blocks = split_python(source)
    assert [(b.name, b.kind) for b in blocks] == [("<module>", "module"), ("a", "function"), ("B", "class")]
    assert blocks[1].source.startswith("@staticmethod")
    assert blocks[2].source.rstrip().endswith("return 2")


def test_overlap_carries_last_sentence():
    text = " ".join(f"Sentence {i} here." for i in range(10))
    chunks = TextSplitter(max_tokens=10, overlap_tokens=3).split(text)
    assert chunks[0].text.endswith("Sentence 2 here.")
    assert chunks[1].text.startswith("Sentence 2 here.")
