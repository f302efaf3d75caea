"""The two shapes of backend the generator drives, and the unvalidated completion they return.

Why protocols: the retrying generator is tested and reasoned about without an SDK or torch; a
backend that can run many prompts in one call (a local model) says so by having `complete_batch`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from pydantic import BaseModel

from twin_assets.domain.generation import Message


class RawCompletion(BaseModel):
    """What the backend returned, before the generator decides whether it is usable."""

    text: str | None
    finish_reason: str | None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    model: str = ""


class ChatBackend(Protocol):
    """One chat completion per call; raises `TransientError` / `PermanentError` on failure."""

    def complete(
        self,
        messages: Sequence[Message],
        max_tokens: int,
        temperature: float,
        seed: int | None,
        json_mode: bool,
    ) -> RawCompletion: ...


@runtime_checkable
class BatchChatBackend(ChatBackend, Protocol):
    """A backend that runs a batch of prompts in one call (one padded forward on a local model
    uses the CPU/GPU far better than many small ones, and there is no server to overload)."""

    def complete_batch(
        self,
        batch: Sequence[Sequence[Message]],
        max_tokens: int,
        temperature: float,
        seed: int | None,
    ) -> list[RawCompletion]: ...
