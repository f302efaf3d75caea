"""The smoke request every deployment must pass before `production` moves, and what it returns.

WHY a RAG answer and not a health check: a process can be up and ready while the version it was
given fails to load, answers nothing, or answers from another author's (or no) index. The smoke
request asks the deployed version itself one question and accepts only a non-empty answer with
at least one citation from the author's own documents, produced by exactly that model version.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, Field

DEFAULT_QUESTION = "What have you written about recently? Cite your sources."


class DeploymentFailed(RuntimeError):
    """A deployment that must not be promoted; the message says why (never a secret)."""


class SmokeFailed(DeploymentFailed):
    """The deployed version did not answer the smoke request acceptably."""


class SmokeAnswer(BaseModel):
    """What the smoke request proved: who answered, from which index, with what."""

    answer: str
    citations: int
    cited_links: list[str] = Field(default_factory=list)
    model_version: str
    index_version: str = ""
    latency_ms: float


def check_answer(
    body: bytes | str | dict[str, Any],
    *,
    author: str,
    version: str,
    latency_ms: float,
    index_version: str = "",
) -> SmokeAnswer:
    """Validate a `/v1/twins/{author}/answer`-shaped response; raise `SmokeFailed` naming what
    is wrong. `index_version` "" accepts whichever index the service reports."""
    if isinstance(body, dict):
        payload: Any = body
    else:
        try:
            payload = json.loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise SmokeFailed(f"the answer is not JSON ({exc})") from None
    if not isinstance(payload, dict):
        raise SmokeFailed(f"the answer is a JSON {type(payload).__name__}, not an object")
    answer = payload.get("answer")
    if not isinstance(answer, str) or not answer.strip():
        raise SmokeFailed("the answer text is empty")
    citations = payload.get("citations")
    if not isinstance(citations, list) or not citations:
        raise SmokeFailed("the answer cites nothing: retrieval returned no chunk of the author's index")
    served = str(payload.get("model_version") or "")
    if served != version:
        raise SmokeFailed(f"answered by model version {served or '(none)'}, not the deployed {version}")
    served_index = str(payload.get("index_version") or "")
    if index_version and served_index != index_version:
        raise SmokeFailed(f"answered from index version {served_index or '(none)'}, not {index_version}")
    links = [str(c.get("link", "")) for c in citations if isinstance(c, dict)]
    cited_author = {str(c.get("author_id")) for c in citations if isinstance(c, dict) and c.get("author_id")}
    if cited_author - {author}:
        raise SmokeFailed(f"the answer cites other authors' chunks ({sorted(cited_author - {author})})")
    return SmokeAnswer(
        answer=answer.strip(),
        citations=len(citations),
        cited_links=links,
        model_version=served,
        index_version=served_index,
        latency_ms=round(latency_ms, 1),
    )
