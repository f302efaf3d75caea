"""BM25 (Okapi) over an author's chunks: the lexical half of hybrid retrieval.

Why a lexical index next to the dense one: the author's writing is full of exact names
(libraries, functions, repositories, product names, numbers) that a small sentence-embedding
model blurs into "something about code"; BM25 ranks an exact identifier match first. The
tokenizer is written for both prose and code: `chunk_text`, `chunkText` and `ChunkText` all
yield `chunk` and `text` (and the whole identifier), so a question in plain words finds the code
that names the same things.

Cost: the index is a sparse term x chunk matrix of precomputed BM25 weights (CSC, one column
per term), so a query touches only the postings of its own terms, O(postings), never all chunks.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Sequence

import numpy as np
from scipy import sparse

# English function words plus the words that only frame a question to the twin ("what do you
# think about ..."): they carry no topic and would only add noise to BM25 and to expansions.
STOP_WORDS: frozenset[str] = frozenset(
    [
        "a",
        "about",
        "above",
        "after",
        "again",
        "against",
        "all",
        "also",
        "am",
        "an",
        "and",
        "any",
        "are",
        "aren",
        "as",
        "at",
        "be",
        "because",
        "been",
        "before",
        "being",
        "below",
        "between",
        "both",
        "but",
        "by",
        "can",
        "cannot",
        "could",
        "couldn",
        "did",
        "didn",
        "do",
        "does",
        "doesn",
        "doing",
        "don",
        "down",
        "during",
        "each",
        "either",
        "else",
        "ever",
        "every",
        "few",
        "for",
        "from",
        "further",
        "get",
        "gets",
        "got",
        "had",
        "hadn",
        "has",
        "hasn",
        "have",
        "haven",
        "having",
        "he",
        "her",
        "here",
        "hers",
        "herself",
        "him",
        "himself",
        "his",
        "how",
        "however",
        "i",
        "if",
        "in",
        "into",
        "is",
        "isn",
        "it",
        "its",
        "itself",
        "just",
        "let",
        "lets",
        "like",
        "ll",
        "may",
        "me",
        "might",
        "more",
        "most",
        "much",
        "must",
        "mustn",
        "my",
        "myself",
        "no",
        "nor",
        "not",
        "now",
        "of",
        "off",
        "on",
        "once",
        "one",
        "only",
        "or",
        "other",
        "ought",
        "our",
        "ours",
        "ourselves",
        "out",
        "over",
        "own",
        "per",
        "quite",
        "rather",
        "re",
        "really",
        "same",
        "say",
        "says",
        "shall",
        "shan",
        "she",
        "should",
        "shouldn",
        "so",
        "some",
        "such",
        "than",
        "that",
        "the",
        "their",
        "theirs",
        "them",
        "themselves",
        "then",
        "there",
        "these",
        "they",
        "this",
        "those",
        "though",
        "through",
        "thus",
        "to",
        "too",
        "under",
        "until",
        "up",
        "upon",
        "us",
        "use",
        "used",
        "using",
        "ve",
        "very",
        "via",
        "was",
        "wasn",
        "way",
        "we",
        "were",
        "weren",
        "what",
        "whatever",
        "when",
        "where",
        "whether",
        "which",
        "while",
        "who",
        "whom",
        "whose",
        "why",
        "will",
        "with",
        "within",
        "without",
        "won",
        "would",
        "wouldn",
        "yet",
        "you",
        "your",
        "yours",
        "yourself",
        "yourselves",
        "tell",
        "explain",
        "describe",
        "think",
        "thought",
        "know",
        "show",
        "give",
        "please",
        "write",
        "wrote",
        "written",
        "said",
        "talk",
        "talked",
        "mention",
        "mentioned",
        "anything",
        "something",
        "thing",
        "things",
    ]
)

_WORD = re.compile(r"[^\W_]+(?:_+[^\W_]+)*", re.UNICODE)  # letters/digits, joined by underscores
_CAMEL = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|\d+|[^\W\d_]+", re.UNICODE)


def _stem(word: str) -> str:
    """Harman's S-stemmer: folds plurals only ("chunks" -> "chunk", "queries" -> "query").

    Why not Porter: it conflates too much for code identifiers ("general", "generate") and its
    stems are not words, which matters because expansion terms are shown back as query text."""
    if len(word) <= 3 or not word.isalpha():
        return word
    if word.endswith("ies") and not word.endswith(("eies", "aies")):
        return word[:-3] + "y"
    if word.endswith("es") and not word.endswith(("aes", "ees", "oes")):
        return word[:-1]
    if word.endswith("s") and not word.endswith(("us", "ss")):
        return word[:-1]
    return word


def _keep(token: str) -> bool:
    return (len(token) > 1 or token.isdigit()) and token not in STOP_WORDS


def tokenize(text: str) -> list[str]:
    """Lowercased, plural-folded terms of prose and code, stop words dropped.

    An identifier contributes its parts and, when it has several, the whole identifier too
    (`chunk_text` -> `chunk_text`, `chunk`, `text`), so an exact identifier match outranks a
    match of its parts. NFKC folds the styled letters LinkedIn posts use (𝗯𝗼𝗹𝗱) to plain ones."""
    text = unicodedata.normalize("NFKC", text)
    out: list[str] = []
    for match in _WORD.finditer(text):
        word = match.group(0)
        parts = [p for piece in word.split("_") for p in _CAMEL.findall(piece)]
        lowered = [p.lower() for p in parts]
        if len(lowered) > 1:
            whole = word.lower()
            if whole not in STOP_WORDS:
                out.append(whole)
        out.extend(_stem(p) for p in lowered if _keep(p))
    return [t for t in out if _keep(t)]


class BM25Index:
    """Okapi BM25 over a fixed list of texts (immutable once built).

    `idf` is the non-negative Lucene variant, log(1 + (N - df + 0.5) / (df + 0.5)), so a term in
    most chunks still scores a little instead of going negative."""

    def __init__(self, texts: Sequence[str], *, k1: float = 1.2, b: float = 0.75):
        if k1 < 0 or not 0.0 <= b <= 1.0:
            raise ValueError(f"BM25 needs k1 >= 0 and 0 <= b <= 1 (got k1={k1}, b={b})")
        self.k1 = k1
        self.b = b
        vocab: dict[str, int] = {}
        rows: list[int] = []
        cols: list[int] = []
        counts: list[int] = []
        lengths = np.zeros(len(texts), dtype=np.float32)
        for row, text in enumerate(texts):
            tokens = tokenize(text)
            lengths[row] = len(tokens)
            for term, count in Counter(tokens).items():
                rows.append(row)
                cols.append(vocab.setdefault(term, len(vocab)))
                counts.append(count)
        n_docs, n_terms = len(texts), len(vocab)
        self.vocabulary = vocab
        self.terms: list[str] = [""] * n_terms
        for term, i in vocab.items():
            self.terms[i] = term
        self.lengths = lengths
        self.n_docs = n_docs
        tf = sparse.csr_matrix((np.asarray(counts, dtype=np.float32), (rows, cols)), shape=(n_docs, n_terms))
        tf.sum_duplicates()
        self.tf = tf  # raw term counts, chunk x term (CSR): what pseudo-relevance feedback reads
        df = np.bincount(np.asarray(cols, dtype=np.int64), minlength=n_terms).astype(np.float32)
        self.idf = np.log1p((n_docs - df + 0.5) / (df + 0.5)).astype(np.float32)
        avgdl = float(lengths.mean()) if n_docs and lengths.mean() > 0 else 1.0
        norm = (k1 * (1.0 - b + b * lengths / avgdl)).astype(np.float32)
        weights = tf.tocoo()
        data = weights.data * (k1 + 1.0) / (weights.data + norm[weights.row]) * self.idf[weights.col]
        # term x chunk in CSC of chunk x term == column slices are the postings of a term
        self._weights = sparse.csc_matrix(
            (data.astype(np.float32), (weights.row, weights.col)), shape=(n_docs, n_terms)
        )

    def __len__(self) -> int:
        return self.n_docs

    def term_ids(self, terms: Iterable[str]) -> dict[int, float]:
        """Known terms' ids with their query-term frequency (unknown terms score nothing)."""
        out: dict[int, float] = {}
        for term in terms:
            i = self.vocabulary.get(term)
            if i is not None:
                out[i] = out.get(i, 0.0) + 1.0
        return out

    def scores(self, query: str | Sequence[str], *, weighted: bool = False) -> np.ndarray:
        """BM25 of every chunk for `query` (text, or already tokenized terms): float32 of length N.

        Each distinct query term counts once (classic Okapi); with `weighted`, a term repeated in
        the query counts that many times (how an expansion's weights are expressed)."""
        terms = tokenize(query) if isinstance(query, str) else list(query)
        ids = self.term_ids(terms)
        if not ids or self.n_docs == 0:
            return np.zeros(self.n_docs, dtype=np.float32)
        cols = np.fromiter(ids.keys(), dtype=np.int64, count=len(ids))
        qw = (
            np.fromiter(ids.values(), dtype=np.float32, count=len(ids))
            if weighted
            else np.ones(len(ids), dtype=np.float32)
        )
        sub = self._weights[:, cols]  # CSC column slice: the postings of the query's terms
        return np.asarray(sub @ qw, dtype=np.float32).reshape(-1)

    def scores_for(self, query: str, rows: np.ndarray) -> np.ndarray:
        """BM25 of the given chunks only (for rescoring a candidate set)."""
        ids = self.term_ids(tokenize(query))
        rows = np.asarray(rows, dtype=np.int64)
        if not ids or rows.size == 0:
            return np.zeros(rows.size, dtype=np.float32)
        cols = np.fromiter(ids.keys(), dtype=np.int64, count=len(ids))
        sub = self._weights[rows][:, cols]
        return np.asarray(sub.sum(axis=1), dtype=np.float32).reshape(-1)

    def feedback_terms(
        self,
        rows: Sequence[int],
        weights: Sequence[float],
        *,
        exclude: Iterable[str] = (),
        n_terms: int = 8,
        min_docs: int = 2,
    ) -> list[tuple[str, float]]:
        """RM3-style relevance model over feedback chunks: P(t|R) ~ sum_d w_d * tf(t,d)/|d|,
        scaled by idf so that the terms distinctive of these chunks win over words that are
        everywhere. Terms must occur in at least `min_docs` feedback chunks (when there are that
        many): a word of one chunk is that chunk's topic, not the question's."""
        rows_arr = np.asarray(list(rows), dtype=np.int64)
        if rows_arr.size == 0 or self.n_docs == 0:
            return []
        w = np.asarray(list(weights), dtype=np.float32)
        w = w / w.sum() if w.sum() > 0 else np.full(rows_arr.size, 1.0 / rows_arr.size, dtype=np.float32)
        tf = self.tf[rows_arr]
        lengths = np.maximum(self.lengths[rows_arr], 1.0)
        rel = np.asarray((sparse.diags(w / lengths) @ tf).sum(axis=0)).reshape(-1)
        presence = np.asarray((tf > 0).sum(axis=0)).reshape(-1)
        need = min(min_docs, rows_arr.size)
        score = rel * self.idf
        score[presence < need] = 0.0
        for term in exclude:
            i = self.vocabulary.get(term)
            if i is not None:
                score[i] = 0.0
        top = np.argsort(-score)[: n_terms * 2]
        out = []
        for i in top:
            if score[i] <= 0 or len(out) >= n_terms:
                break
            term = self.terms[i]
            if "_" in term or term.isdigit():  # whole identifiers / numbers: parts carry them
                continue
            out.append((term, float(score[i])))
        return out


def idf_of(index: BM25Index, term: str) -> float:
    """The idf of a term in the index (0 for a term the author never used)."""
    i = index.vocabulary.get(term)
    return float(index.idf[i]) if i is not None else 0.0
