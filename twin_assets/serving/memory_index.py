"""One author's retrieval index in memory: unit vectors, citation payloads and BM25.

Why in memory and exact: an author's index is small (20,000 chunks x 384 floats is 30 MB), so
one matrix product over the filtered rows is both exact and faster (about a millisecond) than a
local-mode Qdrant query (~400 ms filtered), and it needs no lock on a folder the pipeline is
writing. Everything a query needs is precomputed here once per version: the matrix, integer
codes for category/platform/repository, published days, and a cache of filter masks, so a
query does no Python loop over the rows.

Isolation is structural: an `AuthorIndex` holds the chunks of exactly one author (checked when
it is built), so a twin cannot retrieve another author's writing whatever the filters say.

Immutable once built (arrays are read-only), so a request that holds an index keeps a
consistent view while a newer version is swapped in for later requests.
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any
from urllib.parse import urlsplit

import numpy as np

from twin_assets.domain.documents import Category, Platform
from twin_assets.serving.lexical import BM25Index
from twin_assets.serving.types import ScoredChunk, SearchFilters

_EPOCH = date(1970, 1, 1)
_NO_DATE = np.iinfo(np.int32).min
_MASK_CACHE = 256
_CATEGORIES = list(Category)
_PLATFORMS = list(Platform)
_SCORED_FIELDS = frozenset(ScoredChunk.model_fields) - {"score", "dense_score", "lexical_score"}


class IndexDataError(ValueError):
    """The index data is inconsistent (mixed authors, bad payload, wrong vector shape)."""


def normalize_repository(name: str) -> str:
    """Repository names compared without case and without caring for `-`, `_`, `.` or spaces
    (`LLM_Twin`, `llm-twin` and `llm twin` are the same repository)."""
    return re.sub(r"[\s_.\-]+", "-", name.strip().lower()).strip("-")


def repository_name(payload: dict[str, Any]) -> str | None:
    """The repository a chunk of category `repositories` comes from: its document's title (the
    crawler stores the repository name there), else the last segment of its link."""
    if payload.get("category") != Category.REPOSITORIES.value:
        return None
    title = str(payload.get("title") or "").strip()
    if title and " " not in title:
        return title.rsplit("/", 1)[-1].removesuffix(".git")
    link = str(payload.get("link") or "")
    segments = [s for s in urlsplit(link).path.split("/") if s]
    if segments:
        return segments[-1].removesuffix(".git")
    return title or None


def _to_day(value: Any) -> int:
    if value in (None, ""):
        return _NO_DATE
    when = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    if when.tzinfo is not None:
        when = when.astimezone(UTC)
    return (when.date() - _EPOCH).days


def _day(value: date) -> int:
    return (value - _EPOCH).days


@dataclass(frozen=True)
class Hits:
    """Ranked rows of the index and their scores (best first): the cheap form of a result list,
    turned into `ScoredChunk`s only for what is returned."""

    rows: np.ndarray  # int64
    scores: np.ndarray  # float32

    def __len__(self) -> int:
        return int(self.rows.size)


_EMPTY_HITS = Hits(np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32))


def _top(scores: np.ndarray, rows: np.ndarray | None, k: int) -> Hits:
    """The k best of `scores` (aligned with `rows`, or with all rows when None)."""
    n = scores.size
    if n == 0 or k <= 0:
        return _EMPTY_HITS
    part = np.argpartition(-scores, k - 1)[:k] if k < n else np.arange(n)
    order = part[np.argsort(-scores[part], kind="stable")]
    picked = order if rows is None else rows[order]
    return Hits(picked.astype(np.int64, copy=False), scores[order].astype(np.float32, copy=False))


class AuthorIndex:
    """The searchable, read-only index of one author at one published version."""

    def __init__(
        self,
        *,
        author_id: str,
        version: str,
        embedding_model: str,
        payloads: Sequence[dict[str, Any]],
        vectors: np.ndarray,
        created_at: datetime | None = None,
        bm25_k1: float = 1.2,
        bm25_b: float = 0.75,
    ):
        vectors = np.asarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[0] != len(payloads):
            raise IndexDataError(
                f"index of {author_id}: {len(payloads)} payloads but vectors of shape {vectors.shape}"
            )
        self._author_id = author_id
        self._version = version
        self._embedding_model = embedding_model
        self._created_at = created_at
        records: list[dict[str, Any]] = []
        cat = np.empty(len(payloads), dtype=np.int8)
        plat = np.empty(len(payloads), dtype=np.int8)
        days = np.empty(len(payloads), dtype=np.int32)
        repo_names: dict[str, int] = {}
        repo_display: dict[str, str] = {}
        repo = np.full(len(payloads), -1, dtype=np.int32)
        row_of: dict[str, int] = {}
        for row, payload in enumerate(payloads):
            if payload.get("author_id") != author_id:
                raise IndexDataError(
                    f"chunk {payload.get('chunk_id')!r} belongs to author {payload.get('author_id')!r}, "
                    f"not {author_id!r}: an author index holds one author only"
                )
            try:
                record = ScoredChunk.model_validate(
                    {k: v for k, v in payload.items() if k in _SCORED_FIELDS} | {"score": 0.0}
                ).model_dump(exclude={"score", "dense_score", "lexical_score"})
            except ValueError as exc:
                raise IndexDataError(
                    f"chunk {payload.get('chunk_id')!r} has an invalid payload: {exc}"
                ) from exc
            if record["chunk_id"] in row_of:
                raise IndexDataError(
                    f"chunk {record['chunk_id']!r} appears twice in the index of {author_id}"
                )
            row_of[record["chunk_id"]] = row
            records.append(record)
            cat[row] = _CATEGORIES.index(record["category"])
            plat[row] = _PLATFORMS.index(record["platform"])
            days[row] = _to_day(record["published_at"])
            name = repository_name(payload)
            if name:
                key = normalize_repository(name)
                repo[row] = repo_names.setdefault(key, len(repo_names))
                repo_display.setdefault(key, name)
        norms = np.linalg.norm(vectors, axis=1, keepdims=True) if vectors.size else np.ones((0, 1))
        vectors = np.ascontiguousarray(vectors / np.where(norms > 0, norms, 1.0), dtype=np.float32)
        for array in (vectors, cat, plat, days, repo):
            array.flags.writeable = False
        self._records = records
        self._vectors = vectors
        self._category = cat
        self._platform = plat
        self._days = days
        self._repo = repo
        self._repo_codes = repo_names
        self._repo_display = repo_display
        self._row_of = row_of
        self._bm25 = BM25Index([self._search_text(r) for r in records], k1=bm25_k1, b=bm25_b)
        self._masks: OrderedDict[str, np.ndarray | None] = OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def _search_text(record: dict[str, Any]) -> str:
        """What BM25 indexes: the chunk plus where it sits (title, section, file, symbol), since a
        question often names the article or the file rather than words of the chunk itself."""
        parts = [record.get("title"), record.get("section"), record.get("file_path"), record.get("symbol")]
        return "\n".join([*(str(p) for p in parts if p), record["content"]])

    # -- identity ----------------------------------------------------------------------------
    @property
    def author_id(self) -> str:
        return self._author_id

    @property
    def version(self) -> str:
        return self._version

    @property
    def embedding_model(self) -> str:
        return self._embedding_model

    @property
    def created_at(self) -> datetime | None:
        return self._created_at

    @property
    def size(self) -> int:
        return len(self._records)

    @property
    def dimension(self) -> int:
        return int(self._vectors.shape[1])

    @property
    def vectors(self) -> np.ndarray:
        """Unit vectors, one row per chunk (read-only)."""
        return self._vectors

    @property
    def bm25(self) -> BM25Index:
        return self._bm25

    def repositories(self) -> list[str]:
        """Names of the author's repositories that have chunks in this index."""
        return sorted(self._repo_display.values(), key=str.lower)

    def chunk(self, chunk_id: str) -> ScoredChunk | None:
        """The chunk with this id (score 0), or None when this version does not hold it."""
        row = self._row_of.get(chunk_id)
        return None if row is None else self.scored(row, 0.0)

    def rows_of(self, chunk_ids: Sequence[str]) -> np.ndarray:
        """Rows of the given chunk ids (ids this version does not hold are skipped)."""
        return np.asarray([self._row_of[c] for c in chunk_ids if c in self._row_of], dtype=np.int64)

    def chunk_id(self, row: int) -> str:
        return self._records[row]["chunk_id"]

    def document_id(self, row: int) -> str:
        return self._records[row]["document_id"]

    def scored(
        self, row: int, score: float, *, dense_score: float | None = None, lexical_score: float | None = None
    ) -> ScoredChunk:
        """A citation-ready chunk (payloads were validated once when the index was built)."""
        return ScoredChunk.model_construct(
            **self._records[int(row)],
            score=float(score),
            dense_score=None if dense_score is None else float(dense_score),
            lexical_score=None if lexical_score is None else float(lexical_score),
        )

    # -- filters -----------------------------------------------------------------------------
    def mask(self, filters: SearchFilters | None) -> np.ndarray | None:
        """Boolean row mask of the filters (None: no restriction). Cached per distinct filter.

        A date bound excludes chunks whose date is unknown (one cannot say they match); without
        a date bound they are kept."""
        if filters is None or filters.is_empty():
            return None
        key = filters.model_dump_json()
        with self._lock:
            if key in self._masks:
                self._masks.move_to_end(key)
                return self._masks[key]
        mask = np.ones(self.size, dtype=bool)
        if filters.categories:
            codes = [_CATEGORIES.index(Category(c)) for c in filters.categories]
            mask &= np.isin(self._category, codes)
        if filters.platforms:
            codes = [_PLATFORMS.index(Platform(p)) for p in filters.platforms]
            mask &= np.isin(self._platform, codes)
        if filters.published_after or filters.published_before:
            mask &= self._days != _NO_DATE
            if filters.published_after:
                mask &= self._days >= _day(filters.published_after)
            if filters.published_before:
                mask &= self._days <= _day(filters.published_before)
        if filters.repositories:
            wanted = {normalize_repository(r) for r in filters.repositories}
            codes = [self._repo_codes[w] for w in wanted if w in self._repo_codes]
            mask &= np.isin(self._repo, codes) if codes else False
        mask.flags.writeable = False
        with self._lock:
            self._masks[key] = mask
            while len(self._masks) > _MASK_CACHE:
                self._masks.popitem(last=False)
        return mask

    def count(self, filters: SearchFilters | None = None) -> int:
        """How many chunks the filters leave."""
        mask = self.mask(filters)
        return self.size if mask is None else int(mask.sum())

    # -- search ------------------------------------------------------------------------------
    def _query_matrix(self, query_vectors: np.ndarray) -> np.ndarray:
        q = np.asarray(query_vectors, dtype=np.float32)
        if q.ndim == 1:
            q = q.reshape(1, -1)
        if q.ndim != 2 or (self.size and q.shape[1] != self.dimension):
            raise ValueError(
                f"query vectors of shape {q.shape} do not match the index dimension {self.dimension} "
                f"(model {self._embedding_model})"
            )
        norms = np.linalg.norm(q, axis=1, keepdims=True)
        return q / np.where(norms > 0, norms, 1.0)

    def dense_rows(
        self, query_vectors: np.ndarray, k: int, filters: SearchFilters | None = None
    ) -> list[Hits]:
        """Exact cosine top-k per query over the filtered rows: one matrix product for all queries."""
        q = self._query_matrix(query_vectors)
        mask = self.mask(filters)
        if self.size == 0 or k < 1:
            return [_EMPTY_HITS for _ in range(q.shape[0])]
        if mask is None:
            scores = q @ self._vectors.T
            return [_top(s, None, k) for s in scores]
        rows = np.flatnonzero(mask)
        if rows.size == 0:
            return [_EMPTY_HITS for _ in range(q.shape[0])]
        # a selective filter multiplies only the rows it keeps; a loose one slices the product
        selective = rows.size * 2 < self.size
        scores = q @ self._vectors[rows].T if selective else (q @ self._vectors.T)[:, rows]
        return [_top(s, rows, k) for s in scores]

    def lexical_rows(
        self, queries: Sequence[str], k: int, filters: SearchFilters | None = None
    ) -> list[Hits]:
        """BM25 top-k per query over the filtered rows (chunks sharing no term are not hits)."""
        mask = self.mask(filters)
        out = []
        for query in queries:
            scores = self._bm25.scores(query)
            if mask is not None:
                scores = np.where(mask, scores, 0.0).astype(np.float32)
            rows = np.flatnonzero(scores > 0)
            out.append(_top(scores[rows], rows, k) if k >= 1 else _EMPTY_HITS)
        return out

    def dense_search(
        self, query_vectors: np.ndarray, k: int, filters: SearchFilters | None = None
    ) -> list[list[ScoredChunk]]:
        """Top-k chunks per query vector by cosine similarity, best first."""
        return [
            [self.scored(r, s, dense_score=s) for r, s in zip(h.rows, h.scores, strict=True)]
            for h in self.dense_rows(query_vectors, k, filters)
        ]

    def lexical_search(
        self, queries: Sequence[str], k: int, filters: SearchFilters | None = None
    ) -> list[list[ScoredChunk]]:
        """Top-k chunks per query text by BM25, best first."""
        return [
            [self.scored(r, s, lexical_score=s) for r, s in zip(h.rows, h.scores, strict=True)]
            for h in self.lexical_rows(queries, k, filters)
        ]

    def __repr__(self) -> str:
        return f"AuthorIndex(author={self._author_id!r}, version={self._version!r}, size={self.size})"
