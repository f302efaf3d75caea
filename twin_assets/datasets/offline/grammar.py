"""English grammar helpers the templates need: conjugating verbs and joining phrases.

Instructions are assembled from pieces (a docstring's verb, a list of key phrases, a heading),
and they must still read as one grammatical request: 'return' after 'it' becomes 'returns',
'returns' after 'should' becomes 'return', and lists take an Oxford comma.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

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
    ignore use need reject become lose leak skip""".split()  # noqa: SIM905
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
