"""Instruction templates, and rendering them into requests the instruction funnel keeps.

Templates are per category and kind; the one used is picked by a hash of the extract and the
seed, so instructions vary yet are reproducible (same data and seed, same instructions, same
dataset version). Every rendered instruction is checked against the extract it asks for: it must
not share an 8-word run with the answer (the funnel drops such rows as
"instruction_quotes_answer"), so phrase lists are shortened and other templates tried until it
does not.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Sequence

from twin_assets.datasets.curation import ngrams
from twin_assets.datasets.offline.grammar import join_phrases

# Each template is (with phrases, without phrases); {P} is an Oxford-comma list of noun phrases.

_T = tuple[str, str]
_SECTION_QUOTED: list[_T] = [
    (
        'Write the section "{heading}" of {article}, covering {P}.',
        'Write the section "{heading}" of {article}.',
    ),
    (
        'For {article}, draft the part headed "{heading}" and discuss {P}.',
        'For {article}, draft the part headed "{heading}".',
    ),
    (
        'I\'m writing {article_called}. Write the section headed "{heading}", bringing in {P}.',
        'I\'m writing {article_called}. Write the section headed "{heading}".',
    ),
    (
        'Draft the section "{heading}" for {blog_post}. It should touch on {P}.',
        'Draft the section "{heading}" for {blog_post}.',
    ),
]
_SECTION_TOPIC: list[_T] = [
    (
        "Explain {topic} for engineers reading {article}. Bring in {P}.",
        "Explain {topic} for engineers reading {article}.",
    ),
    (
        "For {blog_post}, write a few paragraphs on {topic}, touching on {P}.",
        "For {blog_post}, write a few paragraphs on {topic}.",
    ),
]
_INTRO: list[_T] = [
    ("Write the opening of {article}, introducing {P}.", "Write the opening of {article}."),
    ("Write an introduction for {blog_post} that brings up {P}.", "Write an introduction for {blog_post}."),
    ("Draft the first paragraphs of {article} and set up {P}.", "Draft the first paragraphs of {article}."),
]
_POST: list[_T] = [
    ("Write a LinkedIn post about {topic}. Mention {P}.", "Write a LinkedIn post about {topic}."),
    (
        "Draft a short social media post sharing my take on {topic}, touching on {P}.",
        "Draft a short social media post sharing my take on {topic}.",
    ),
    (
        "Write a post for my professional network about {topic_and_P}.",
        "Write a post for my professional network about {topic}.",
    ),
    (
        "Share a lesson I learned about {topic} in a LinkedIn post, and bring up {P}.",
        "Share a lesson I learned about {topic} in a LinkedIn post.",
    ),
]
_README_SECTION: list[_T] = [
    (
        'Write the section "{heading}" of the README for {repo}, covering {P}.',
        'Write the section "{heading}" of the README for {repo}.',
    ),
    (
        'For the README of {repo}, write the section "{heading}" and explain {P}.',
        'For the README of {repo}, write the section "{heading}".',
    ),
]
_README_INTRO: list[_T] = [
    (
        "Write the introduction of the README for {repo}, covering {P}.",
        "Write the introduction of the README for {repo}.",
    ),
    (
        "Write the opening of `{path}` for {repo} and explain {P}.",
        "Write the opening of `{path}` for {repo}.",
    ),
]
_FUNCTION_VERB = [
    "Write a {lang} function `{name}` that {clause}.",
    "Implement `{name}` in {lang}; it {clause}.",
    "In `{path}`, write the {lang} function `{name}`. It should {base}.",
]
_FUNCTION_PASSIVE = ["Write a {lang} function `{name}` that is {clause}."]
_FUNCTION_NOUN = [
    "Write a {lang} function `{name}`: {clause}.",
    "Implement `{name}` in `{path}` ({lang}): {clause}.",
]
_TEST = [
    "Write the {lang} test `{name}` in `{path}`; it {clause}.",
    "In `{path}`, write the {lang} test function `{name}`, which {clause}.",
]
_FUNCTION_BARE = [
    "Write the {lang} function `{name}` in `{path}`.",
    "Implement `{name}`, a {lang} function in `{path}` of {repo}.",
]
_CLASS = {
    "verb": [
        "Write a {lang} class `{name}` that {clause}.",
        "Implement the {lang} class `{name}` in `{path}`; it {clause}.",
    ],
    "passive": [
        "Write a {lang} class `{name}` that is {clause}.",
        "Implement the {lang} class `{name}` in `{path}`, {clause}.",
    ],
    "noun": [
        "Write a {lang} class `{name}` representing {clause}.",
        "Implement the {lang} class `{name}` in `{path}`: {clause}.",
    ],
    "fields": [
        "Write the {lang} class `{name}` in `{path}`, with the fields {fields}.",
        "Implement `{name}`, a {lang} class with the fields {fields}, in `{path}`.",
    ],
    "bare": [
        "Write the {lang} class `{name}` in `{path}`.",
        "Implement the {lang} class `{name}` for {repo}.",
    ],
}
_FILE_DOC = {
    "verb": "Write the {lang} module `{path}` for {repo}; it {clause}.",
    "passive": "Write the {lang} module `{path}` for {repo}, {clause}.",
    "noun": "Write the {lang} module `{path}` for {repo}: {clause}.",
}
_FILE_EXPORTS = "Write `{path}` for {repo}, exposing {names}."
_FILE_CONFIG = "Write the `{path}` ({lang}) for {repo}, with the {sections} {unit}."
_FILE_PHRASES: _T = (
    "Write the {lang} file `{path}` for {repo}, covering {P}.",
    "Write the {lang} file `{path}` for {repo}.",
)


def _pick(key: str, seed: int, n: int) -> int:
    return int(hashlib.sha256(f"{seed}:{key}".encode()).hexdigest(), 16) % n


def _finish(text: str) -> str:
    text = re.sub(r"\s+", " ", text).strip()
    text = re.sub(r"\s+([,.;:])", r"\1", text)
    text = re.sub(r"\.\.+$", ".", text)
    if not text.endswith((".", "?")):
        text += "."
    return text[:1].upper() + text[1:]


def _quotes(instruction: str, answer: str) -> bool:
    """Whether the instruction shares an 8-word run with the answer (the funnel would drop it)."""
    return bool(ngrams(instruction, 8) & ngrams(answer, 8))


def _first_valid(candidates: Iterable[str], answer: str, max_chars: int = 400) -> str | None:
    """The first candidate the instruction funnel would keep; else the last one, else None."""
    last = None
    for c in candidates:
        last = _finish(c)
        if len(last) <= max_chars and not _quotes(last, answer):
            return last
    return last


def _with_phrases(template: _T, phrases: list[str], answer: str, **values: str) -> str:
    """The template with as many phrases as keep it from quoting the answer (3, 2, 1, none)."""

    def render(ps: list[str]) -> str:
        if not ps:
            return template[1].format(**values)
        topic = values.get("topic", "")
        return template[0].format(P=join_phrases(ps), topic_and_P=join_phrases([topic, *ps]), **values)

    attempts = [render(phrases[:n]) for n in range(len(phrases), -1, -1)]
    return _first_valid(attempts, answer) or _finish(attempts[-1])


def _quotable(text: str) -> str:
    """A title or heading to put in double quotes: inner double quotes become single ones, and a
    final full stop goes (the sentence around it ends with its own)."""
    text = re.sub(r"\s+", " ", text.strip().replace('"', "'").replace("“", "'").replace("”", "'"))
    return text[:-1] if text.endswith(".") and not text.endswith("..") else text


def _rotate(templates: Sequence[str], first: int) -> list[str]:
    """The picked template first, then the others (tried when the picked one quotes the answer)."""
    return [*templates[first:], *templates[:first]]
