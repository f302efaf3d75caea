"""Heading topics: whether a section heading can be slotted into a sentence as its topic.

A noun-phrase heading reads well as a topic ('Clock skew' -> 'Explain clock skew ...'); a
sentence or a question ('Know your noise', 'What about LLM-as-judge?') only reads well quoted.
Telling them apart needs a parse, so results are cached per heading (and `prime` fills the
cache for a whole batch).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from twin_assets.datasets.offline.grammar import _lower_first
from twin_assets.datasets.offline.nlp import _HEAD_POS, _LRU, _parse, get_nlp, register_cache

if TYPE_CHECKING:
    from spacy.tokens import Doc


_HEADINGS = _LRU(20_000)
register_cache(_HEADINGS.clear)


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
