"""LLM-as-judge over the `TextGenerator` protocol (any OpenAI-compatible server, through the
project's LLM resource). Published rubric below; every reply must be a JSON object with an
integer "score" from 1 to 5.

- accuracy: does the answer do what the instruction asks, consistent with the author's reference?
- style: does it sound like the author (reference answer shown as a sample of their voice)?
- pairwise: which of two answers sounds more like the author, asked twice with the positions
  swapped (twin first, then base first) so that a judge's preference for a position cancels out.

A reply that is not usable (bad JSON, missing or out-of-range score, no reply) is counted as an
error with its reason, never as a number and never raised.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from pydantic import BaseModel, Field

from twin_assets.domain.generation import TextGenerator

RUBRIC_ACCURACY = (
    "You grade answers written by a model imitating an author. Rubric for ACCURACY, 1-5: "
    "5 = fully does what the instruction asks and agrees with the author's reference; "
    "3 = partly on topic or partly wrong; 1 = off topic, empty or nonsense. "
    'Reply with a JSON object {"score": <integer 1-5>, "reason": "<one sentence>"}.'
)
RUBRIC_STYLE = (
    "You grade answers written by a model imitating an author. Rubric for STYLE, 1-5: 5 = "
    "indistinguishable from the author's voice in the reference (sentence length, vocabulary, "
    "tone, formatting habits); 3 = generic but not wrong; 1 = nothing like the author. "
    'Reply with a JSON object {"score": <integer 1-5>, "reason": "<one sentence>"}.'
)
RUBRIC_PAIRWISE = (
    "Two answers, A and B, to the same instruction. Which sounds more like the author of the "
    "reference text? 1 = A clearly more, 2 = A somewhat more, 3 = equal, 4 = B somewhat more, "
    '5 = B clearly more. Reply with a JSON object {"score": <integer 1-5>, "reason": "<one sentence>"}.'
)


class JudgeItem(BaseModel):
    instruction: str
    reference: str
    answer: str  # the candidate twin's
    base_answer: str


class JudgeResult(BaseModel):
    configured: bool
    judge: str = ""
    items: int = 0
    accuracy: float | None = None  # mean 1-5
    style: float | None = None
    pairwise_win_rate: float | None = None  # twin over base, positions swapped, ties = 0.5
    position_bias: float | None = None  # share of pairs where the verdict followed the position
    errors: int = 0
    error_reasons: dict[str, int] = Field(default_factory=dict)
    usage: dict = Field(default_factory=dict)


def _score(generator: TextGenerator, system: str, user: str, reasons: Counter[str]) -> int | None:
    before = dict(generator.usage.skipped)
    reply = generator.generate(
        [{"role": "system", "content": system}, {"role": "user", "content": user}],
        json_keys=["score"],
        temperature=0.0,
        max_tokens=200,
    )
    if reply is None or reply.data is None:
        after = generator.usage.skipped
        new = [k for k, v in after.items() if v > before.get(k, 0)]
        reasons[new[0] if new else "no_reply"] += 1
        return None
    raw = reply.data.get("score")
    try:
        value = int(raw)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        reasons["score_not_integer"] += 1
        return None
    if not 1 <= value <= 5 or (isinstance(raw, float) and raw != value):
        reasons["score_out_of_range"] += 1
        return None
    return value


def run_judge(generator: TextGenerator | None, items: Sequence[JudgeItem]) -> JudgeResult:
    if generator is None or not generator.uses_llm:
        return JudgeResult(configured=False)
    reasons: Counter[str] = Counter()
    acc: list[int] = []
    style: list[int] = []
    wins: list[float] = []
    followed_position = 0
    pairs = 0
    for item in items:
        context = f"Instruction: {item.instruction}\n\nAuthor's reference answer:\n{item.reference}\n\n"
        for rubric, sink in ((RUBRIC_ACCURACY, acc), (RUBRIC_STYLE, style)):
            value = _score(generator, rubric, f"{context}Answer to grade:\n{item.answer}", reasons)
            if value is not None:
                sink.append(value)
        twin_first = _score(
            generator,
            RUBRIC_PAIRWISE,
            f"{context}Answer A:\n{item.answer}\n\nAnswer B:\n{item.base_answer}",
            reasons,
        )
        base_first = _score(
            generator,
            RUBRIC_PAIRWISE,
            f"{context}Answer A:\n{item.base_answer}\n\nAnswer B:\n{item.answer}",
            reasons,
        )
        if twin_first is not None and base_first is not None:
            # map both to "twin preference" in [-2, 2]: A=twin in the first, B=twin in the second
            pref = ((3 - twin_first) + (base_first - 3)) / 2
            wins.append(1.0 if pref > 0 else 0.0 if pref < 0 else 0.5)
            pairs += 1
            # the same position won both times (both > 3 or both < 3): the verdict followed position
            followed_position += (twin_first - 3) * (base_first - 3) > 0
    usage = generator.usage
    return JudgeResult(
        configured=True,
        judge=generator.name,
        items=len(items),
        accuracy=sum(acc) / len(acc) if acc else None,
        style=sum(style) / len(style) if style else None,
        pairwise_win_rate=sum(wins) / len(wins) if wins else None,
        position_bias=followed_position / pairs if pairs else None,
        errors=sum(reasons.values()),
        error_reasons=dict(sorted(reasons.items())),
        usage=usage.model_dump(mode="json") if hasattr(usage, "model_dump") else {},
    )
