"""The vocabulary of text generation: what a completion is, what a generator spent, and the
`TextGenerator` protocol the dataset code is written against.

Why a protocol here: dataset generation (instructions, generic answers, quality judging) must not
care whether the words come from an OpenAI-compatible server, a local transformers model or
nothing at all ("offline"), and must not import the Dagster resource that configures them.
`resources/llm/` implements the protocol; tests may hand in any object that satisfies it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal, Protocol, get_args

from pydantic import BaseModel, Field

Message = dict[str, str]
"""One chat message: {"role": "system" | "user" | "assistant", "content": ...}."""

GenerationBackend = Literal["offline", "openai", "transformers"]
"""offline: no LLM (callers fall back to deterministic generators); openai: any server speaking
OpenAI chat completions; transformers: a local causal LM."""

GENERATION_BACKENDS: tuple[GenerationBackend, ...] = get_args(GenerationBackend)

DEFAULT_FREQUENCY_PENALTY = 0.3
"""How a twin decodes unless told otherwise (OpenAI's frequency penalty). The inference service
defaults to it and the evaluation decodes with it, so that the gate measures the answers users
get: a small model decoded greedily without it loops on one phrase."""

SkipReason = Literal[
    "rate_limited",
    "server_error",
    "timeout",
    "connection_error",
    "client_error",
    "empty",
    "truncated",
    "bad_json",
    "missing_keys",
]
"""Why a call gave no usable completion. Counted in `GenerationUsage.skipped`, never raised; the
first four are transient and retried before they are counted."""

RATE_LIMITED: SkipReason = "rate_limited"
SERVER_ERROR: SkipReason = "server_error"
TIMEOUT: SkipReason = "timeout"
CONNECTION_ERROR: SkipReason = "connection_error"
CLIENT_ERROR: SkipReason = "client_error"
EMPTY: SkipReason = "empty"
TRUNCATED: SkipReason = "truncated"
BAD_JSON: SkipReason = "bad_json"
MISSING_KEYS: SkipReason = "missing_keys"


class Generation(BaseModel):
    """One usable completion. `data` is the parsed JSON object when JSON was asked for."""

    text: str
    finish_reason: str = "stop"
    prompt_tokens: int = 0
    completion_tokens: int = 0
    model: str = ""
    attempts: int = 1
    data: dict[str, Any] | None = None


class GenerationUsage(BaseModel):
    """What a generator spent and what it had to skip (asset metadata material)."""

    backend: str = ""
    model: str = ""
    requests: int = 0  # attempts sent to the backend, retries included
    retries: int = 0
    successes: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    skipped: dict[str, int] = Field(default_factory=dict)  # reason (a SkipReason) -> count

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def as_metadata(self, prefix: str = "llm") -> dict[str, Any]:
        out: dict[str, Any] = {
            f"{prefix}_backend": self.backend,
            f"{prefix}_model": self.model,
            f"{prefix}_requests": self.requests,
            f"{prefix}_retries": self.retries,
            f"{prefix}_successes": self.successes,
            f"{prefix}_prompt_tokens": self.prompt_tokens,
            f"{prefix}_completion_tokens": self.completion_tokens,
            f"{prefix}_total_tokens": self.total_tokens,
        }
        out[f"{prefix}_skipped"] = dict(sorted(self.skipped.items()))
        return out


class TextGenerator(Protocol):
    """What dataset generation calls. Contract: an unusable or failed completion is `None` (the
    reason counted in `usage`), never an exception; `generate` on a generator whose `uses_llm`
    is False raises, so callers check `uses_llm` first and use their offline generators."""

    @property
    def uses_llm(self) -> bool: ...

    @property
    def name(self) -> str:
        """Identifies the generator in dataset cards and fingerprints (no URL, no key)."""
        ...

    @property
    def usage(self) -> GenerationUsage: ...

    def generate(
        self,
        messages: Sequence[Message],
        *,
        max_tokens: int | None = None,
        temperature: float | None = None,
        json_keys: Sequence[str] | None = None,
        allow_truncated: bool = False,
    ) -> Generation | None: ...

    def generate_many(
        self,
        batch: Sequence[Sequence[Message]],
        *,
        max_tokens: int | None = None,
        temperature: float | None = None,
        json_keys: Sequence[str] | None = None,
        allow_truncated: bool = False,
    ) -> list[Generation | None]: ...
