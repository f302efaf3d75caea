"""Scores of generated text against the author's: overlap (ROUGE-L, chrF), style profile
distance to the author's corpus, and degeneration. Pure functions over strings.

WHY a style profile and not only overlap: a twin can answer a held-out instruction with other
words than the author did and still sound like them; sentence lengths, vocabulary richness,
function-word habits, emoji/hashtags and line breaks are what makes the voice recognisable.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence

_WORD = re.compile(r"[\w'’]+", re.UNICODE)
_SENTENCE = re.compile(r"(?<=[.!?])\s+|\n+")
_EMOJI = re.compile("[\U0001f300-\U0001faff\U00002600-\U000027bf\U0001f000-\U0001f2ff]")
_HASHTAG = re.compile(r"(?<!\w)#\w+")
_FUNCTION_WORDS = (
    "the a an and or but if then so because of to in on at for with from by as about into over "
    "after before than that this these those it its i me my we our you your he she they them their "
    "is are was were be been not no do does did can could will would should just very"
)
FUNCTION_WORDS = tuple(_FUNCTION_WORDS.split())


def words(text: str) -> list[str]:
    return [w.lower() for w in _WORD.findall(text)]


def rouge_l(candidate: str, reference: str) -> float:
    """ROUGE-L F1 over lower-cased word tokens (longest common subsequence)."""
    c, r = words(candidate), words(reference)
    if not c or not r:
        return 0.0
    prev = [0] * (len(r) + 1)
    for cw in c:
        cur = [0] * (len(r) + 1)
        for j, rw in enumerate(r, 1):
            cur[j] = prev[j - 1] + 1 if cw == rw else max(prev[j], cur[j - 1])
        prev = cur
    lcs = prev[-1]
    if lcs == 0:
        return 0.0
    p, rec = lcs / len(c), lcs / len(r)
    return 2 * p * rec / (p + rec)


def chrf(candidate: str, reference: str) -> float:
    """Character n-gram F-score (sacrebleu's chrF), 0..1."""
    from sacrebleu.metrics.chrf import CHRF

    if not candidate.strip() or not reference.strip():
        return 0.0
    return CHRF().sentence_score(candidate, [reference]).score / 100.0


# -- style ---------------------------------------------------------------------------------


def style_profile(texts: Sequence[str]) -> dict[str, float | dict[str, float]]:
    """Habits of a body of text, comparable across lengths (rates per 100 words, MATTR)."""
    sentence_lengths: list[int] = []
    all_words: list[str] = []
    emoji = hashtags = breaks = 0
    for text in texts:
        for sentence in _SENTENCE.split(text):
            n = len(words(sentence))
            if n:
                sentence_lengths.append(n)
        all_words.extend(words(text))
        emoji += len(_EMOJI.findall(text))
        hashtags += len(_HASHTAG.findall(text))
        breaks += text.strip().count("\n")
    n_words = max(1, len(all_words))
    mean = sum(sentence_lengths) / len(sentence_lengths) if sentence_lengths else 0.0
    std = (
        math.sqrt(sum((x - mean) ** 2 for x in sentence_lengths) / len(sentence_lengths))
        if sentence_lengths
        else 0.0
    )
    counts = Counter(w for w in all_words if w in FUNCTION_WORDS)
    total_fw = sum(counts.values())
    return {
        "sentence_length_mean": mean,
        "sentence_length_std": std,
        "mattr": _mattr(all_words),
        "emoji_per_100w": 100 * emoji / n_words,
        "hashtags_per_100w": 100 * hashtags / n_words,
        "line_breaks_per_100w": 100 * breaks / n_words,
        "function_words": {w: counts[w] / total_fw for w in FUNCTION_WORDS} if total_fw else {},
    }


def _mattr(tokens: Sequence[str], window: int = 50) -> float:
    """Moving-average type-token ratio: vocabulary richness that does not fall with length."""
    if not tokens:
        return 0.0
    if len(tokens) <= window:
        return len(set(tokens)) / len(tokens)
    ratios = [len(set(tokens[i : i + window])) / window for i in range(0, len(tokens) - window + 1, 10)]
    return sum(ratios) / len(ratios)


def style_distance(profile: dict, author: dict) -> float:
    """0 = the author's habits, 1 = nothing alike: the mean of per-feature distances in [0, 1]."""

    def rel(key: str) -> float:
        a, b = float(profile[key]), float(author[key])
        return min(1.0, abs(a - b) / max(abs(b), 1.0))

    parts = [
        rel("sentence_length_mean"),
        rel("sentence_length_std"),
        min(1.0, abs(float(profile["mattr"]) - float(author["mattr"]))),
        rel("emoji_per_100w"),
        rel("hashtags_per_100w"),
        rel("line_breaks_per_100w"),
    ]
    fa, fb = profile["function_words"], author["function_words"]
    if fa and fb:
        parts.append(0.5 * sum(abs(fa.get(w, 0.0) - fb.get(w, 0.0)) for w in FUNCTION_WORDS))
    elif fa or fb:
        parts.append(1.0)
    return sum(parts) / len(parts)


# -- degeneration --------------------------------------------------------------------------


def repeated_ngram_ratio(text: str, n: int = 3) -> float:
    """Share of the text's n-grams that repeat an earlier one (0 = none, ->1 = a loop)."""
    toks = words(text)
    grams = [tuple(toks[i : i + n]) for i in range(len(toks) - n + 1)]
    if not grams:
        return 0.0
    return 1.0 - len(set(grams)) / len(grams)


def distinct_n(texts: Sequence[str], n: int) -> float:
    grams = [tuple(t[i : i + n]) for t in map(words, texts) for i in range(len(t) - n + 1)]
    return len(set(grams)) / len(grams) if grams else 0.0


def degeneration_items(texts: Sequence[str]) -> list[float]:
    """Per answer: 1 for an empty answer, else its repeated-3-gram ratio. Kept per item so the
    gate can pair the candidate's answers with the base model's on the same prompts."""
    return [1.0 if not t.strip() else repeated_ngram_ratio(t, 3) for t in texts]


def degeneration(texts: Sequence[str], finished: Sequence[bool]) -> dict[str, float]:
    """`degeneration` (the gated number): the mean of `degeneration_items`. The rest describes
    it: distinct-1/2, empty and truncated shares."""
    if not texts:
        return {}
    per_item = degeneration_items(texts)
    return {
        "degeneration": sum(per_item) / len(per_item),
        "repeated_3gram": sum(repeated_ngram_ratio(t, 3) for t in texts) / len(texts),
        "distinct_1": distinct_n(texts, 1),
        "distinct_2": distinct_n(texts, 2),
        "empty_rate": sum(not t.strip() for t in texts) / len(texts),
        "truncated_rate": sum(not f for f in finished) / len(finished) if finished else 0.0,
    }
