"""Query expansion: more phrasings of a question, searched together with it.

Why: a question is short and phrased by the reader, the author's chunk is long and phrased by
the author; extra phrasings give both the dense and the lexical search more ways to meet the
author's wording.

Offline (`expand_offline`), no model needed:
- pseudo-relevance feedback, RM3-style: the question's top BM25 chunks (within the filters) are
  taken as relevant, and the terms that are frequent in them but rare in the author's other
  writing are appended to the question's keywords ("chunk size" -> "chunk size overlap token
  boundary recall");
- a keyword-only reformulation (the question without its question words and stop words), which
  is closer to how a chunk reads than a question is.

With an LLM (`expand_llm`): several rewrites asked for as a JSON object, validated and
deduplicated; anything missing or invalid is filled from the offline method.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

from twin_assets.domain.generation import TextGenerator
from twin_assets.serving.lexical import STOP_WORDS, tokenize
from twin_assets.serving.memory_index import AuthorIndex
from twin_assets.serving.types import SearchFilters

MAX_QUERY_CHARS = 300
_FEEDBACK_DOCS = 5
_FEEDBACK_TERMS = 6
_WORD = re.compile(r"[\w][\w'’.-]*[\w]|\w", re.UNICODE)


def _norm(text: str) -> str:
    return " ".join(text.casefold().split())


def keyword_query(question: str) -> str:
    """The question's content words in their order, without question words and stop words."""
    words = [w for w in _WORD.findall(question) if w.casefold() not in STOP_WORDS and tokenize(w)]
    return " ".join(words)


def _feedback(index: AuthorIndex, question: str, filters: SearchFilters | None, docs: int) -> list[str]:
    hits = index.lexical_rows([question], docs, filters)[0]
    if len(hits) == 0:
        return []
    weights = np.exp(hits.scores - hits.scores.max())  # softmax: the best chunks weigh most
    terms = index.bm25.feedback_terms(
        hits.rows.tolist(), weights.tolist(), exclude=tokenize(question), n_terms=_FEEDBACK_TERMS
    )
    return [t for t, _ in terms]


def expand_offline(
    question: str, index: AuthorIndex, n: int, *, filters: SearchFilters | None = None
) -> list[str]:
    """Up to `n` phrasings of `question` (not including it), from the author's own index."""
    if n < 1 or not question.strip():
        return []
    keywords = keyword_query(question)
    candidates: list[str] = []
    terms = _feedback(index, question, filters, _FEEDBACK_DOCS)
    if terms:
        candidates.append(f"{keywords or question} {' '.join(terms)}")
    if keywords:
        candidates.append(keywords)
    deeper = [t for t in _feedback(index, question, filters, 2 * _FEEDBACK_DOCS) if t not in terms]
    if deeper:
        candidates.append(f"{keywords or question} {' '.join(deeper)}")
    return _dedupe(question, candidates, n)


def _dedupe(question: str, candidates: Sequence[str], n: int) -> list[str]:
    seen = {_norm(question)}
    out: list[str] = []
    for text in candidates:
        text = " ".join(text.split())[:MAX_QUERY_CHARS]
        key = _norm(text)
        if not key or key in seen:
            continue
        seen.add(key)
        out.append(text)
        if len(out) >= n:
            break
    return out


def _expansion_messages(question: str, n: int) -> list[dict[str, str]]:
    keys = ", ".join(f'"q{i}"' for i in range(1, n + 1))
    system = (
        "You help search an author's own writing (articles, posts, code). Rewrite the user's "
        f"question as {n} different search queries that would find the passages answering it: "
        "use other words and the technical terms the author would use, keep every constraint "
        f"of the question, do not answer it. Reply with one JSON object with the keys {keys}, "
        "each a query string."
    )
    return [{"role": "system", "content": system}, {"role": "user", "content": question}]


def expand_llm(
    question: str,
    generator: TextGenerator,
    n: int,
    *,
    index: AuthorIndex | None = None,
    filters: SearchFilters | None = None,
) -> list[str]:
    """Up to `n` LLM rewrites of `question`, validated and deduplicated; on failure (no LLM, no
    usable JSON, fewer valid rewrites than asked) the rest comes from `expand_offline` over
    `index` (none when no index is given)."""
    if n < 1 or not question.strip():
        return []
    rewrites: list[str] = []
    if generator.uses_llm:
        try:
            gen = generator.generate(
                _expansion_messages(question, n),
                max_tokens=60 * n + 40,
                temperature=0.0,
                json_keys=[f"q{i}" for i in range(1, n + 1)],
            )
        except Exception:  # the protocol says None on failure; never sink the request
            gen = None
        data = gen.data if gen is not None and gen.data is not None else {}
        for i in range(1, n + 1):
            value = data.get(f"q{i}")
            if isinstance(value, str) and len(value.strip()) >= 3:
                rewrites.append(value.strip())
    out = _dedupe(question, rewrites, n)
    if len(out) < n and index is not None:
        out = _dedupe(question, [*out, *expand_offline(question, index, n, filters=filters)], n)
    return out
