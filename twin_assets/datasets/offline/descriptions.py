"""Code described in plain words: what a docstring, a test name or a function name says it does.

A code instruction names the code and says what it should do, in the words a reader would use:
a docstring's first sentence becomes a clause that can follow 'that', 'It should' or ':' (verbs
conjugated, colon prefixes cut), a test name becomes 'tests that chunks respect the budget', a
verb-first function name becomes 'packs blocks'. Every instruction must not share an 8-word run
with the answer (the instruction funnel drops such rows as "instruction_quotes_answer"), so
`_shorter` also offers the clause cut at natural boundaries, longest first.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Literal

from twin_assets.datasets.offline.grammar import (
    _COMMON_VERBS,
    _base_from_third,
    _lower_first,
    third_person,
)
from twin_assets.datasets.offline.nlp import _parse, get_nlp, register_cache
from twin_assets.datasets.offline.text import _RST_ROLE


def _first_sentence(docstring: str) -> str:
    para = docstring.strip().split("\n\n")[0]
    para = " ".join(line.strip() for line in para.splitlines())
    para = _RST_ROLE.sub(r"`\1`", para).replace("``", "`")
    sentence = re.split(r"(?<=[.!?])\s+(?=[A-Z`\"'(])", para, maxsplit=1)[0]
    return sentence.strip().rstrip(".").strip()


@dataclass(frozen=True)
class _Desc:
    """A docstring's first sentence, ready to follow 'that', 'It should' or ':'."""

    mode: Literal["verb", "passive", "noun"]
    clause: str  # 'returns one block per ...' | 'raised when ...' | 'a contiguous slice of ...'
    base: str = ""  # 'return one block per ...' (after 'should')


def _verb_analysis(sentence: str) -> tuple[str, list[int]]:
    """(tag of the first word, word indices of base-form verbs coordinated with it): 'Split x
    and return y' -> ('VB', [3]), so both verbs can be conjugated ('splits x and returns y')."""
    nlp = get_nlp()
    words = sentence.split(" ")
    lw = words[0].lower()
    if nlp is not None:
        doc = _parse([sentence])[0]
        tag = doc[0].tag_
        if tag == "VBD":  # sentence-initial past form: an imperative ("Split") or a passive
            tag = "VB" if lw in _COMMON_VERBS else "VBN"
        starts = {}
        pos = 0
        for i, w in enumerate(words):
            starts[pos] = i
            pos += len(w) + 1
        conj = [
            starts[t.idx]
            for t in doc
            if t.dep_ == "conj" and t.head.i == 0 and t.tag_ in ("VB", "VBP", "VBD") and t.idx in starts
        ]
        return tag, conj
    conj = [
        i for i in range(2, len(words)) if words[i - 1] in ("and", "or") and words[i].lower() in _COMMON_VERBS
    ]
    if lw in _COMMON_VERBS:
        return "VB", conj
    if lw.endswith("s") and _base_from_third(lw) in _COMMON_VERBS:
        return "VBZ", []
    if lw.endswith("ed") and (lw[:-2] in _COMMON_VERBS or lw[:-1] in _COMMON_VERBS):
        return "VBN", []
    return "NN", []


def _as_desc(sentence: str) -> _Desc | None:
    sentence = sentence.strip().rstrip(".:;,").strip()
    if not sentence:
        return None
    tag, conj = _verb_analysis(sentence)
    words = sentence.split(" ")
    if tag in ("VB", "VBP"):
        base = [words[0].lower(), *words[1:]]
        third = list(base)
        for i in [0, *conj]:
            third[i] = third_person(base[i])
        return _Desc("verb", " ".join(third), " ".join(base))
    if tag == "VBZ":
        base = [_base_from_third(words[0]), *words[1:]]
        return _Desc("verb", " ".join([words[0].lower(), *words[1:]]), " ".join(base))
    if tag == "VBN":
        return _Desc("passive", _lower_first(sentence))
    return _Desc("noun", _lower_first(sentence))


@functools.lru_cache(maxsize=4096)
def _doc_desc(docstring: str, owner: str = "") -> _Desc | None:
    """What a docstring says the code does. 'Convenience wrapper: split x' -> the clause after
    the colon; 'chunkwise: token-aware chunking' (module docstrings) -> 'token-aware chunking'."""
    sentence = _first_sentence(docstring)
    if not sentence:
        return None
    head, sep, tail = sentence.partition(": ")
    if sep and len(head.split()) <= 3 and tail.strip():
        after = _as_desc(tail)
        if after is not None and (after.mode == "verb" or head.lower() == owner.lower()):
            return after
    return _as_desc(sentence)


_STRONG_CUT = re.compile(r",|;|:| - | — | \(")
_WEAK_CUT = re.compile(
    r" (?=(?:so|because|which|while|until|unless|and|or|but|per|with|into|on|in|for|from|to|by"
    r"|at|of|not|without|using|via|between) )"
)
_DANGLING = frozenset("a an the and or but not of to in on at by for with from so that than".split())  # noqa: SIM905


def _shorter(clause: str, min_words: int = 3) -> list[str]:
    """The clause, then shorter summaries of it, longest first: prefixes ending at a comma or
    semicolon ('calls `call` until it succeeds, sleeping with ...' -> 'calls `call` until it
    succeeds'), then prefixes of the main part ending before a conjunction or a preposition. A
    summary that shares no 8-word run with the answer is what a reader would write anyway."""
    out = [clause]

    def add(prefix: str) -> None:
        prefix = prefix.rstrip(",;:-—( ")
        words = prefix.split()
        if len(words) >= min_words and words[-1].lower() not in _DANGLING and prefix not in out:
            out.append(prefix)

    strong = sorted((m.start() for m in _STRONG_CUT.finditer(clause)), reverse=True)
    for pos in strong:
        add(clause[:pos])
    main = out[-1]
    for pos in sorted((m.start() for m in _WEAK_CUT.finditer(main)), reverse=True):
        add(main[:pos])
    return out


def _name_words(name: str) -> list[str]:
    name = name.strip("_")
    return [w.lower() for w in re.findall(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|\d+", name)]


_FINITE = ("VBZ", "VBP", "VBD", "MD")
_NOUN_TAGS = ("NN", "NNS", "NNP", "NNPS")
_NP_TAGS = ("JJ", "JJR", "JJS", "NN", "NNS", "NNP", "NNPS", "VBG")


@functools.lru_cache(maxsize=4096)
def _test_clause(words: tuple[str, ...], called: tuple[str, ...] = ()) -> str:
    """What a test checks, from its name: test_chunks_respect_budget -> 'tests that chunks
    respect the budget'; test_invalid_overlap_rejected -> 'tests that the invalid overlap is
    rejected'; test_split_python_top_level_defs -> 'tests `split_python` on top level defs'."""
    for j in range(len(words), 1, -1):  # the function under test, when the name starts with it
        ident = "_".join(words[:j])
        if ident in called:
            rest = " ".join(words[j:])
            return f"tests `{ident}`" + (f" on {rest}" if rest else "")
    nlp = get_nlp()
    if nlp is None or not words:
        finite = any(
            w in ("is", "are", "was", "were", "has", "have", "does")
            or (w.endswith("s") and _base_from_third(w) in _COMMON_VERBS)
            or (w in _COMMON_VERBS and words[i - 1].endswith("s"))  # "chunks respect"
            for i, w in enumerate(words)
            if i > 0
        )
        return ("tests that " if finite else "tests ") + " ".join(words)
    tokens = list(_parse(["the " + " ".join(words)])[0])[1:]  # "the" makes the first noun a subject
    tags = [t.tag_ for t in tokens]
    texts = [t.text for t in tokens]
    finite = next((i for i, tag in enumerate(tags) if tag in _FINITE and i > 0), None)
    passive = finite is None and tags[-1] == "VBN" and len(tags) > 1
    if finite is None and not passive:
        return "tests " + " ".join(texts)
    verb_at = finite if finite is not None else len(tags) - 1
    subject_tags = tags[:verb_at]
    head = next((t for t in reversed(subject_tags) if t in _NOUN_TAGS), None)
    out: list[str] = []
    if head in ("NN", "NNP") and subject_tags[0] in _NP_TAGS:
        out.append("the")
    out.extend(texts[:verb_at])
    if passive:
        out.append("are" if head in ("NNS", "NNPS") else "is")
    # a bare singular noun phrase after the verb or a preposition takes "the"
    i = verb_at
    while i < len(tokens):
        out.append(texts[i])
        if tags[i].startswith("VB") or tags[i] == "IN":
            j = i + 1
            while j < len(tokens) and tags[j] in _NP_TAGS:
                j += 1
            run = tags[i + 1 : j]
            nouns = [t for t in run if t in _NOUN_TAGS]
            if run and nouns and nouns[-1] in ("NN", "NNP") and run[0] != "VBG":
                out.append("the")
        i += 1
    return "tests that " + " ".join(out)


@functools.lru_cache(maxsize=4096)
def _name_verb_clause(words: tuple[str, ...]) -> str | None:
    """pack_blocks -> 'packs blocks' when the name starts with a verb, else None."""
    if len(words) < 2:
        return None
    nlp = get_nlp()
    if nlp is not None:
        is_verb = _parse(["to " + " ".join(words)])[0][1].tag_ == "VB"
    else:
        is_verb = words[0] in _COMMON_VERBS
    if not is_verb:
        return None
    return " ".join([third_person(words[0]), *words[1:]])


register_cache(_doc_desc.cache_clear)
register_cache(_test_clause.cache_clear)
register_cache(_name_verb_clause.cache_clear)
