"""Key phrases: what a text is about, as short noun phrases ("golden set", "embedding model").

They come from spaCy's noun chunks, cleaned (no leading determiners, possessives or vague
modifiers, a noun head, 1-4 words), because a template can only read naturally if what it slots
in is a real noun phrase; RAKE-style word runs ("currently throw", "people actually") cannot be.
When spaCy cannot load, a RAKE-style heuristic takes over so datasets still build. Rankings are
cached per text and `prime` parses a whole batch in one `nlp.pipe` call, so the instruction and
preference builds, which ask about the same extracts, parse each text once.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from twin_assets.datasets.offline.headings import _HEADINGS, _heading_candidate, _topic_of_heading
from twin_assets.datasets.offline.nlp import _HEAD_POS, _LRU, _parse, get_nlp, register_cache
from twin_assets.datasets.offline.text import STOPWORDS, _word_set, prose_text

if TYPE_CHECKING:
    from spacy.tokens import Doc, Span

# -- key phrases: spaCy noun chunks -------------------------------------------------------------

# Leading words that carry no topic: "the/my/this/some/three/only ..." are dropped by POS, these
# adjectives by name ("the same pipeline" -> "pipeline", "a new vector database" -> "vector database").
_VAGUE_MODIFIERS = frozenset(
    """same own other such many much few several more most less least whole entire certain various
    new different next last first second third only main actual specific particular good better
    best bad worse worst great nice fancy fancier real-world typical usual whatever single""".split()  # noqa: SIM905
)
# Nouns too vague to be a topic on their own ("things", "a lot", "people", "time").
_VAGUE_NOUNS = frozenset(
    """thing way lot bit kind sort part stuff time times day week month year minute hour second
    number point case fact reason one people folk someone somebody anyone everyone team work end
    start today yesterday tomorrow place side example percent problem issue question answer
    lesson idea matter version purpose post article thread morning evening night afternoon
    weekend""".split()  # noqa: SIM905
)
# Heads that make any phrase vague ("big ones", "the right way", "the same thing").
_VAGUE_HEADS = frozenset("one thing way lot bit stuff kind sort".split())  # noqa: SIM905
# Uncountable nouns common in technical writing: no article ("dense retrieval", "real usage").
_MASS_NOUNS = frozenset(
    """retrieval search data metadata information evidence code text usage latency traffic quality
    feedback software hardware storage compute memory context advice knowledge progress research
    recall precision noise whitespace deduplication evaluation ingestion tokenization
    documentation infrastructure monitoring observability security privacy math drift
    reasoning throughput accuracy""".split()  # noqa: SIM905
)
_INDEFINITE = frozenset(
    "nothing something anything everything someone somebody anyone anybody everyone everybody "  # noqa: SIM905
    "nobody noone none".split()
)
_STRIP_POS = frozenset(
    {
        "DET",
        "PRON",
        "NUM",
        "ADV",
        "PUNCT",
        "SYM",
        "CCONJ",
        "SCONJ",
        "PART",
        "ADP",
        "INTJ",
        "X",
        "SPACE",
        "AUX",
    }
)
_CODEISH = re.compile(r"[_=(){}\[\]<>/\\@$%^&*|~#+:;\"“”‘’`]|\w\.\w|^'|'$")


@dataclass(frozen=True)
class _Phrase:
    text: str
    key: frozenset[str]  # lemmas: "golden sets" and "golden set" are one phrase
    head_tag: str = ""  # the head noun's tag: NN (singular) reads better with "the" in a sentence

    def as_np(self) -> str:
        """The phrase as a noun phrase in a sentence: 'the golden set', 'real questions', 'MRR'."""
        head = self.text.split()[-1].split("-")[-1]
        if self.head_tag == "NN" and head.islower() and not head.endswith("ing") and head not in _MASS_NOUNS:
            return "the " + self.text
        return self.text


def _case_maps(doc: Doc) -> tuple[set[str], set[str]]:
    """Lowercase forms in the text, and capitalised forms seen mid-sentence (likely names)."""
    lower = {t.text for t in doc if t.text.islower()}
    named = {t.text for t in doc if t.text.istitle() and not _starts_line(t)}
    return lower, named


def _starts_line(token) -> bool:
    """Sentence or line start (list items and 'Label: text' lines have no sentence break)."""
    if token.is_sent_start or token.i == 0:
        return True
    prev = token.doc[token.i - 1]
    return prev.is_space or "\n" in prev.whitespace_ or prev.text in (":", "(", '"', "“", "'")


def _surface(tokens: Sequence, lower: set[str], named: set[str]) -> str:
    """The phrase as it reads mid-sentence: sentence-initial capitals folded ("Answers" ->
    "answers"), names and acronyms kept ("Postgres", "BM25", "LLM")."""
    parts = []
    for t in tokens:
        word = t.text
        if word.istitle() and len(word) > 1 and not (word in named and word.lower() not in lower):
            word = word.lower()
        parts.append(word + t.whitespace_)
    return "".join(parts).strip()


def _clean_chunk(chunk: Span, lower: set[str], named: set[str]) -> _Phrase | None:
    tokens = list(chunk)
    while tokens and (
        tokens[0].pos_ in _STRIP_POS
        or tokens[0].lower_ in _VAGUE_MODIFIERS
        or tokens[0].tag_ in ("PRP$", "WP$", "POS", "CD")
    ):
        tokens.pop(0)
    while tokens and (tokens[-1].pos_ in ("PUNCT", "PART", "SYM", "SPACE") or tokens[-1].tag_ == "POS"):
        tokens.pop()
    if not tokens or chunk.root not in tokens or chunk.root.pos_ not in _HEAD_POS:
        return None
    if chunk.root.lemma_.lower() in _VAGUE_HEADS or chunk.root.lower_ in _VAGUE_HEADS:
        return None
    if any(
        _CODEISH.search(t.text)
        or t.like_num
        or t.like_url
        or t.like_email
        or t.text == ","
        or t.lower_ in _INDEFINITE
        for t in tokens
    ):
        return None
    words = [t for t in tokens if not t.is_punct]
    if not 1 <= len(words) <= 4:
        return None
    if all(t.is_stop or t.lower_ in STOPWORDS for t in words):
        return None
    if len(words) == 1 and (
        words[0].lemma_.lower() in _VAGUE_NOUNS
        or words[0].lower_ in _VAGUE_NOUNS
        or (len(words[0].text) < 4 and words[0].text.islower())
    ):
        return None
    text = _surface(tokens, lower, named)
    if len(text) < 3 or not any(ch.isalpha() for ch in text):
        return None
    key = frozenset((t.lemma_ or t.text).lower() for t in words)
    return _Phrase(text, key, chunk.root.tag_)


def _rank_doc(doc: Doc) -> tuple[_Phrase, ...]:
    """Cleaned noun chunks ranked by frequency in the text, then specificity (among phrases seen
    equally often, "data contract" before "field"), then first position."""
    lower, named = _case_maps(doc)
    counts: Counter[frozenset[str]] = Counter()
    first: dict[frozenset[str], tuple[int, _Phrase]] = {}
    for chunk in doc.noun_chunks:
        phrase = _clean_chunk(chunk, lower, named)
        if phrase is None:
            continue
        counts[phrase.key] += 1
        first.setdefault(phrase.key, (chunk.start, phrase))
    order = sorted(counts, key=lambda key: (-counts[key], len(key) == 1, first[key][0]))
    return tuple(first[key][1] for key in order)


# -- key phrases: the heuristic fallback (RAKE-style runs of content words) ---------------------

_WORD = re.compile(r"[A-Za-z][A-Za-z0-9+#.'-]*[A-Za-z0-9+#]|[A-Za-z]")


def _rake_rank(text: str) -> tuple[_Phrase, ...]:
    """Runs of content words scored by how often their words recur in the text."""
    phrases: list[list[str]] = []
    for fragment in re.split(r"[.,;:!?()\[\]{}\"\n—–]+|\s-\s", text):
        current: list[str] = []
        for token in fragment.split():
            word = token.strip("`*_'\"").lower()
            if not _WORD.fullmatch(word) or word in STOPWORDS or word.isdigit():
                if current:
                    phrases.append(current)
                current = []
            else:
                current.append(word)
        if current:
            phrases.append(current)
    phrases = [p for p in phrases if 1 <= len(p) <= 3]
    freq: Counter[str] = Counter(w for p in phrases for w in p)
    scored: dict[str, float] = {}
    for p in phrases:
        phrase = " ".join(p)
        if len(phrase) < 4:
            continue
        scored[phrase] = max(scored.get(phrase, 0.0), sum(freq[w] for w in p) / len(p) ** 0.5)
    ranked = sorted(scored.items(), key=lambda kv: (-kv[1], kv[0]))
    return tuple(_Phrase(p, _word_set(p)) for p, _ in ranked)


# -- ranking, caching, selection ----------------------------------------------------------------

_RANKED = _LRU(50_000)
register_cache(_RANKED.clear)


def _text_key(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()


def _ranked(text: str) -> tuple[_Phrase, ...]:
    nlp = get_nlp()
    backend = "spacy" if nlp is not None else "heuristic"
    key = (backend, _text_key(text))
    cached = _RANKED.get(key)
    if cached is not None:
        return cached
    prose = prose_text(text)
    ranked = _rake_rank(prose) if nlp is None else _rank_doc(_parse([prose])[0])
    _RANKED.put(key, ranked)
    return ranked


def prime(texts: Iterable[str], headings: Iterable[str] = (), batch_size: int = 32) -> None:
    """Parse many texts (and section headings) in one `nlp.pipe` batch, faster than one by one,
    and cache what is derived from them; later `key_phrases` / `offline_instruction` calls on
    them are lookups."""
    if get_nlp() is None:
        return
    todo: dict[tuple[str, str], str] = {}
    for text in texts:
        key = ("spacy", _text_key(text))
        if key not in todo and _RANKED.get(key) is None:
            todo[key] = prose_text(text)
    heads = sorted({h for h in headings if _heading_candidate(h) and _HEADINGS.get(("spacy", h)) is None})
    if not todo and not heads:
        return
    docs = _parse([*todo.values(), *heads], batch_size)
    for key, doc in zip(todo, docs[: len(todo)], strict=True):
        _RANKED.put(key, _rank_doc(doc))
    for heading, doc in zip(heads, docs[len(todo) :], strict=True):
        _HEADINGS.put(("spacy", heading), (_topic_of_heading(doc, heading),))


def _select(ranked: Sequence[_Phrase], k: int, exclude: frozenset[str]) -> list[_Phrase]:
    """Top k phrases, none inside another: a more specific phrase replaces a vaguer one it
    contains ("model" -> "embedding model"); phrases made only of `exclude` words are skipped."""
    chosen: list[_Phrase] = []
    for phrase in ranked:
        if len(chosen) == k:
            break
        if exclude and _word_set(phrase.text) <= exclude:
            continue
        if any(phrase.key <= c.key for c in chosen):
            continue
        vaguer = [i for i, c in enumerate(chosen) if c.key < phrase.key]
        if vaguer:
            chosen[vaguer[0]] = phrase
            chosen = [c for i, c in enumerate(chosen) if i == vaguer[0] or i not in vaguer]
        else:
            chosen.append(phrase)
    return chosen


def key_phrases(text: str, k: int = 3, *, exclude: Iterable[str] = ()) -> list[str]:
    """The k noun phrases a text is most about (spaCy noun chunks, cleaned: no leading
    determiners/pronouns/possessives/numbers, head a noun, 1-4 words, one per lemma set, ranked by
    frequency in the text, then multi-word before single-word, then first position; none inside
    another). `exclude`: phrases made only of these words are skipped. Deterministic. Without
    spaCy: RAKE-style runs of content words, same selection."""
    return [p.text for p in _phrases(text, k, exclude)]


def _phrases(text: str, k: int, exclude: Iterable[str] = ()) -> list[_Phrase]:
    excluded = frozenset().union(*(_word_set(e) for e in exclude)) if exclude else frozenset()
    return _select(_ranked(text), k, excluded)


def _nps(text: str, k: int, exclude: Iterable[str] = ()) -> list[str]:
    """Key phrases ready for a sentence ('the golden set', 'real questions')."""
    return [p.as_np() for p in _phrases(text, k, exclude)]
