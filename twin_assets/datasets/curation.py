"""Curation stages of the dataset funnel, each a plain function returning what it kept and why it
dropped the rest (the counts become the funnel in the card and the asset metadata).

Order (see `twin_assets.datasets.instruction.build_instruction_rows`): rule filter -> exact de-dup
-> near de-dup -> instruction generation -> quality -> split -> decontamination. De-duplication
runs on the author's text before any LLM call (no tokens spent on duplicates). Which documents
are held out is decided before all of this, from the cleaned documents alone
(`twin_assets.datasets.splitting`), so that both datasets of an author agree on it; the "split"
stage only puts each surviving row on its document's side. Decontamination comes after it so
that the held-out split stays untouched and only *train* rows that share n-grams with it are
dropped: with whole documents held out, it catches quoting *across* documents.

Stages are generic over the item type: they take a `text` accessor (the field judged) and read
`.id` and `.category` from the items, so extracts, instruction rows and preference rows share them.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections import Counter
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from datasketch import MinHash, MinHashLSH
from pydantic import BaseModel, Field

from twin_assets.domain.documents import Category

T = TypeVar("T")


@dataclass
class StageResult(Generic[T]):
    name: str
    kept: list[T]
    dropped: Counter[str] = field(default_factory=Counter)

    @property
    def n_dropped(self) -> int:
        return sum(self.dropped.values())


class FilterParams(BaseModel):
    min_chars: int = 200
    max_chars: int = 4000
    min_words: int = 30
    languages: list[str] = Field(default_factory=lambda: ["en"])  # empty: any language
    max_boilerplate_ratio: float = 0.3  # share of lines that are boilerplate
    max_code_ratio_prose: float = 0.5  # prose extracts that are mostly code are dropped


# -- normalisation -------------------------------------------------------------------------------

_WS = re.compile(r"\s+")
_NON_WORD = re.compile(r"[^\w\s]")


def normalise(text: str) -> str:
    """Case, accents, punctuation and whitespace folded: formatting changes are not new text."""
    text = unicodedata.normalize("NFKC", text).lower()
    text = _NON_WORD.sub(" ", text)
    return _WS.sub(" ", text).strip()


def content_hash(text: str) -> str:
    return hashlib.sha256(normalise(text).encode()).hexdigest()


def words(text: str) -> list[str]:
    return normalise(text).split()


def ngrams(text: str, n: int) -> set[tuple[str, ...]]:
    w = words(text)
    return {tuple(w[i : i + n]) for i in range(len(w) - n + 1)}


# -- 1. rule-based filtering ---------------------------------------------------------------------

BOILERPLATE = re.compile(
    r"(subscribe (to|now)|sign up for|follow me|click here|all rights reserved|cookie"
    r"|privacy policy|terms of (service|use)|share this|like and share|read more|"
    r"originally published|thanks for reading|newsletter|©|copyright \d{4}|"
    r"#\w+\s+#\w+\s+#\w+)",  # a line of hashtags
    re.IGNORECASE,
)
_CODE_LINE = re.compile(
    r"^\s*(def |class |import |from \S+ import|return\b|if .*:$|for .*:$|[{}();]\s*$|"
    r"[\w.\[\]]+\s*=\s*\S|#include|//|@\w+|\$ |>>> )"
)


def boilerplate_ratio(text: str) -> float:
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if not lines:
        return 1.0
    return sum(1 for ln in lines if BOILERPLATE.search(ln)) / len(lines)


def code_ratio(text: str) -> float:
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if not lines:
        return 0.0
    in_fence = False
    code = 0
    for ln in lines:
        if ln.strip().startswith("```"):
            in_fence = not in_fence
            code += 1
        elif in_fence or _CODE_LINE.match(ln):
            code += 1
    return code / len(lines)


def detect_language(text: str) -> str:
    from langdetect import DetectorFactory, LangDetectException, detect

    DetectorFactory.seed = 0  # langdetect is random by default: make it reproducible
    try:
        return detect(text[:2000])
    except LangDetectException:
        return "unknown"


def rule_filter(
    items: Sequence[T],
    text: Callable[[T], str],
    params: FilterParams | None = None,
) -> StageResult[T]:
    """Length, language, boilerplate and code-only rules. Repositories skip language and
    code rules (code is their point) but keep length rules."""
    params = params or FilterParams()
    kept: list[T] = []
    dropped: Counter[str] = Counter()
    for item in items:
        body = text(item)
        category = getattr(item, "category", None)
        is_code = category == Category.REPOSITORIES and getattr(item, "kind", "") != "readme"
        n_words = len(body.split())
        if not body.strip():
            dropped["empty"] += 1
        elif len(body) < params.min_chars or (not is_code and n_words < params.min_words):
            dropped["too_short"] += 1
        elif len(body) > params.max_chars:
            dropped["too_long"] += 1
        elif boilerplate_ratio(body) > params.max_boilerplate_ratio:
            dropped["boilerplate"] += 1
        elif not is_code and code_ratio(body) > params.max_code_ratio_prose:
            dropped["code_only"] += 1
        elif not is_code and params.languages and detect_language(body) not in params.languages:
            dropped["language"] += 1
        else:
            kept.append(item)
    return StageResult("rule_filter", kept, dropped)


# -- 2. exact de-duplication ---------------------------------------------------------------------


def exact_dedup(items: Sequence[T], text: Callable[[T], str]) -> StageResult[T]:
    """Keep the first item (in the given, stable order) of each normalised text."""
    seen: set[str] = set()
    kept: list[T] = []
    dropped: Counter[str] = Counter()
    for item in items:
        h = content_hash(text(item))
        if h in seen:
            dropped["exact_duplicate"] += 1
            continue
        seen.add(h)
        kept.append(item)
    return StageResult("exact_dedup", kept, dropped)


# -- 3. near-duplicate removal -------------------------------------------------------------------


def minhash(text: str, num_perm: int = 128, shingle: int = 5) -> MinHash:
    w = words(text)
    grams = {" ".join(w[i : i + shingle]) for i in range(max(1, len(w) - shingle + 1))}
    m = MinHash(num_perm=num_perm, seed=1)
    m.update_batch([g.encode() for g in grams])
    return m


def near_dedup(
    items: Sequence[T],
    text: Callable[[T], str],
    threshold: float = 0.7,
    num_perm: int = 128,
    shingle: int = 5,
) -> StageResult[T]:
    """MinHash LSH over word shingles; an item whose estimated Jaccard similarity with an already
    kept item reaches `threshold` is dropped (the first of a cluster wins, order is stable)."""
    if not 0 < threshold <= 1:
        raise ValueError(f"near-duplicate threshold must be in (0, 1], got {threshold}")
    # LSH only proposes candidates (the estimate below decides); a lower LSH threshold means
    # better recall, and datasketch cannot band above ~0.9 anyway
    lsh = MinHashLSH(threshold=min(threshold, 0.85), num_perm=num_perm)
    hashes: dict[Hashable, MinHash] = {}  # keyed as MinHashLSH.query returns them
    kept: list[T] = []
    dropped: Counter[str] = Counter()
    for i, item in enumerate(items):
        m = minhash(text(item), num_perm, shingle)
        # LSH gives candidates; confirm with the estimate so the threshold is what it says
        if any(m.jaccard(hashes[c]) >= threshold for c in lsh.query(m)):
            dropped["near_duplicate"] += 1
            continue
        key = f"{i}"
        lsh.insert(key, m)
        hashes[key] = m
        kept.append(item)
    return StageResult("near_dedup", kept, dropped)


# -- 4. quality scoring --------------------------------------------------------------------------


def heuristic_quality(instruction: str, output: str, category: Category) -> float:
    """0..1 from signals that track usefulness as a training pair without a judge: a length in the
    sweet spot, lexical variety, mostly real words, complete ending, and an instruction that shares
    vocabulary with the answer (it asks for *this* text)."""
    out_words = words(output)
    if not out_words or not instruction.strip():
        return 0.0
    n = len(out_words)
    length = min(1.0, n / 60) if n < 60 else (1.0 if n <= 400 else max(0.3, 400 / n))
    variety = min(1.0, len(set(out_words)) / max(1, n) / 0.5)
    alpha = sum(ch.isalpha() for ch in output) / max(1, len(output.replace(" ", "")))
    wordiness = 1.0 if category == Category.REPOSITORIES else min(1.0, alpha / 0.75)
    stripped = output.rstrip()
    ending = 1.0 if category == Category.REPOSITORIES or stripped[-1:] in ".!?:)\"'`*" else 0.6
    ins = {w for w in words(instruction) if len(w) > 3}
    relevance = min(1.0, len(ins & set(out_words)) / max(1, min(len(ins), 4))) if ins else 0.0
    score = 0.25 * length + 0.2 * variety + 0.15 * wordiness + 0.15 * ending + 0.25 * relevance
    return round(score, 4)


JUDGE_SYSTEM = (
    "You grade instruction-tuning pairs. The answer is an author's own text; judge whether the "
    "instruction is a natural request that this answer fulfils, and whether the answer is "
    "self-contained, coherent writing worth imitating. Reply with JSON only: "
    '{"score": <integer 1-5>, "reason": "<one sentence>"}'
)


def judge_messages(instruction: str, output: str) -> list[dict[str, str]]:
    return [
        {"role": "system", "content": JUDGE_SYSTEM},
        {"role": "user", "content": f"Instruction:\n{instruction}\n\nAnswer:\n{output}"},
    ]


def parse_judge_score(data: dict | None) -> float | None:
    """A 1-5 judge score mapped to 0..1; None when the judge's answer is unusable."""
    if not data:
        return None
    try:
        score = float(data.get("score"))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    if not 1 <= score <= 5:
        return None
    return round((score - 1) / 4, 4)


def quality_filter(items: Sequence[T], score: Callable[[T], float], threshold: float) -> StageResult[T]:
    kept = [i for i in items if score(i) >= threshold]
    return StageResult("quality", kept, Counter({"low_quality": len(items) - len(kept)}))


# -- 5. decontamination (after the split, see `twin_assets.datasets.splitting`) -------------


def contamination_index(texts: Iterable[str], n: int) -> set[tuple[str, ...]]:
    out: set[tuple[str, ...]] = set()
    for t in texts:
        out |= ngrams(t, n)
    return out


def shared_ngrams(text: str, index: set[tuple[str, ...]], n: int) -> int:
    return len(ngrams(text, n) & index)


def decontaminate(
    train: Sequence[T],
    test: Sequence[T],
    texts: Callable[[T], Sequence[str]],
    n: int = 8,
    max_shared: int = 0,
) -> StageResult[T]:
    """Drop train items sharing more than `max_shared` word n-grams with any test item (the
    held-out split is what evaluation measures; a train row quoting it would inflate scores).
    After a document-level split this catches one document quoting another."""
    index = contamination_index((t for item in test for t in texts(item)), n)
    kept: list[T] = []
    dropped: Counter[str] = Counter()
    for item in train:
        shared = sum(shared_ngrams(t, index, n) for t in texts(item))
        if shared > max_shared:
            dropped["overlaps_test"] += 1
        else:
            kept.append(item)
    return StageResult("decontamination", kept, dropped)
