"""Text preparation for key phrases: the prose of an extract, and word sets to compare phrases by.

Key phrases must come from what the author says, not from `import hashlib` in a code sample or
from markup, URLs and emoji, so extracts are reduced to their prose first. `STOPWORDS` and the
light stemming behind `_word_set` let phrases be matched and excluded regardless of inflection
("golden sets" and "golden set" are one phrase).
"""

from __future__ import annotations

import re
import unicodedata

STOPWORDS = frozenset(
    """a about above after again against all also am an and any are as at be because been before
    being below between both but by can could did do does doing down during each few for from
    further had has have having he her here hers herself him himself his how i if in into is it its
    itself just let me more most my myself no nor not now of off on once only or other our ours
    ourselves out over own same she should so some such than that the their theirs them themselves
    then there these they this those through to too under until up very was we were what when where
    which while who whom why will with would you your yours yourself yourselves one two get got
    make made much many every really thing things way lot like even still may might must us use
    used using new first last well back via per etc it's don't i'm i've you're that's can't won't
    doesn't isn't didn't we're they're let's without anyone everyone nobody somebody always never
    almost less rather whether know three four five ten quite already sure else often usually
    thing start started keep kept took take want wanted need needed said says see seen go going
    come came look looks""".split()  # noqa: SIM905
)

_FENCE = re.compile(r"^\s*(```|~~~)")
_MD_LINE_PREFIX = re.compile(r"^\s*(?:#{1,6}\s+|>\s*|(?:[-*+•▪◦‣–]|\d{1,3}[.)])\s+)+")
_MD_LINK = re.compile(r"!?\[([^\]]*)\]\([^)]*\)")
_URL = re.compile(r"\b(?:https?://|www\.)\S+")
_INLINE_CODE = re.compile(r"``?([^`\n]+?)``?")
_EMPHASIS = re.compile(r"(\*\*|__|\*)(?=\S)(.+?)(?<=\S)\1")
_RST_ROLE = re.compile(r":[a-z]+:`([^`]+)`")


def _strip_symbols(text: str) -> str:
    """Emoji and pictographs out: they are noise to a tagger and never part of a phrase."""
    return "".join(
        ch
        for ch in text
        if unicodedata.category(ch) not in ("So", "Sk", "Cs", "Co", "Cn") and ch not in "\ufe0f\u200d"
    )


def prose_text(text: str) -> str:
    """The prose of a markdown-ish extract: fenced code, tables, URLs and markup removed, so key
    phrases come from what the author says, not from `import hashlib` in a code sample."""
    out: list[str] = []
    in_code = False
    for line in text.splitlines():
        if _FENCE.match(line):
            in_code = not in_code
            out.append("")
            continue
        stripped = line.strip()
        if in_code or stripped.startswith("|"):
            continue
        line = _MD_LINE_PREFIX.sub("", line)
        line = _MD_LINK.sub(r"\1", line)
        line = _URL.sub(" ", line)
        line = _RST_ROLE.sub(r"\1", line)
        # word-like inline code reads as a word ("the `splitter`"); identifiers and calls do not
        line = _INLINE_CODE.sub(
            lambda m: m.group(1) if re.fullmatch(r"[A-Za-z][A-Za-z -]*", m.group(1)) else " ", line
        )
        line = _EMPHASIS.sub(r"\2", line)
        out.append(_strip_symbols(line).strip())
    return re.sub(r"\n{3,}", "\n\n", "\n".join(out)).strip()


def _stem(word: str) -> str:
    w = word.lower()
    if len(w) > 4 and w.endswith("ies"):
        return w[:-3] + "y"
    if len(w) > 3 and w.endswith("s") and not w.endswith(("ss", "us", "is")):
        return w[:-1]
    return w


def _word_set(text: str) -> frozenset[str]:
    return frozenset(_stem(w) for w in re.findall(r"[A-Za-z0-9]+", text))
