"""The HTTP API's request and response bodies.

Chat completions follow OpenAI's shapes exactly, so any OpenAI client works unchanged; the
twin's additions are one request field (`rag`) and a few response fields (`citations`,
`model_version`, `index_version`) that OpenAI clients keep as extra attributes.

WHY strict: a field the service does not know is refused with a message naming it (a typo such
as `max_token` would otherwise be silently ignored), except the fields OpenAI clients send on
their own, which are declared here: those that do not change the answer are accepted and
ignored, those that would (tools, logprobs, penalties, n > 1) are refused with a clear 400.
"""

from __future__ import annotations

import time
import uuid
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, field_validator, model_validator

from twin_assets.serving.types import Citation, ScoredChunk, SearchFilters

MAX_STOP = 4
MAX_STOP_CHARS = 200
MAX_QUESTION_CHARS = 20_000


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False)


class FiltersIn(SearchFilters):
    """Explicit search filters; an unknown field is refused (not silently dropped)."""

    model_config = ConfigDict(extra="forbid")


class RagIn(_Strict):
    """The twin's RAG options in a request. `k`: chunks to cite; `filters`: restrict the search
    (when absent, the self-query extracts filters from the question)."""

    k: int | None = Field(default=None, ge=1, le=200)
    filters: FiltersIn | None = None


# -- chat completions ---------------------------------------------------------------------------


class TextPart(_Strict):
    type: Literal["text"]
    text: str


class ChatMessageIn(BaseModel):
    """One message. Content is a string or OpenAI's list of text parts (joined); `name` is
    accepted and ignored."""

    model_config = ConfigDict(extra="forbid")

    role: Literal["system", "user", "assistant"]
    content: str | list[TextPart]
    name: str | None = None

    @property
    def text(self) -> str:
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text for part in self.content)

    def as_message(self) -> dict[str, str]:
        return {"role": self.role, "content": self.text}


class StreamOptions(_Strict):
    include_usage: StrictBool = False


class ResponseFormat(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: str


class ChatCompletionRequest(_Strict):
    model: str = Field(min_length=1, max_length=200)
    messages: list[ChatMessageIn] = Field(min_length=1)
    stream: StrictBool = False
    stream_options: StreamOptions | None = None
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    top_p: float | None = Field(default=None, gt=0.0, le=1.0)
    frequency_penalty: float | None = Field(default=None, ge=-2.0, le=2.0)
    presence_penalty: float | None = Field(default=None, ge=-2.0, le=2.0)
    stop: str | list[str] | None = None
    seed: int | None = Field(default=None, ge=-(2**63), lt=2**63)
    n: int | None = Field(default=None, ge=1)
    # the twin's extension: retrieval-augmented answer (None: the service's default)
    rag: StrictBool | RagIn | None = None
    # sent by OpenAI clients; accepted, no effect on the answer
    user: str | None = None
    metadata: dict[str, str] | None = None
    store: bool | None = None
    service_tier: str | None = None
    # sent by OpenAI clients; refused unless at their neutral value (they would change the answer)
    logit_bias: dict[str, float] | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = Field(default=None, ge=0, le=20)
    response_format: ResponseFormat | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None

    @field_validator("stop")
    @classmethod
    def _stop(cls, value: str | list[str] | None) -> str | list[str] | None:
        items = [value] if isinstance(value, str) else (value or [])
        if len(items) > MAX_STOP:
            raise ValueError(f"at most {MAX_STOP} stop sequences")
        for item in items:
            if not item:
                raise ValueError("a stop sequence may not be empty")
            if len(item) > MAX_STOP_CHARS:
                raise ValueError(f"a stop sequence has at most {MAX_STOP_CHARS} characters")
        return value

    @model_validator(mode="after")
    def _supported(self) -> ChatCompletionRequest:
        if self.n not in (None, 1):
            raise ValueError("n must be 1: one choice per request")
        unsupported = {
            "logit_bias": bool(self.logit_bias),
            "logprobs": bool(self.logprobs),
            "top_logprobs": bool(self.top_logprobs),
            "tools": bool(self.tools),
            "tool_choice": self.tool_choice not in (None, "none"),
            "response_format": self.response_format is not None and self.response_format.type != "text",
        }
        named = [name for name, used in unsupported.items() if used]
        if named:
            raise ValueError(f"not supported by this service: {', '.join(named)}")
        if (
            self.max_tokens is not None
            and self.max_completion_tokens is not None
            and self.max_tokens != self.max_completion_tokens
        ):
            raise ValueError("max_tokens and max_completion_tokens differ; send one of them")
        if self.stream_options is not None and not self.stream:
            raise ValueError("stream_options is only allowed with stream: true")
        return self

    @property
    def requested_max_tokens(self) -> int | None:
        return self.max_completion_tokens if self.max_completion_tokens is not None else self.max_tokens

    @property
    def stop_list(self) -> list[str]:
        return [self.stop] if isinstance(self.stop, str) else list(self.stop or [])


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str
    refusal: str | None = None


class Choice(BaseModel):
    index: int = 0
    message: AssistantMessage
    finish_reason: str
    logprobs: None = None


def completion_id() -> str:
    return f"chatcmpl-{uuid.uuid4().hex}"


class ChatCompletion(BaseModel):
    id: str = Field(default_factory=completion_id)
    object: Literal["chat.completion"] = "chat.completion"
    created: int = Field(default_factory=lambda: int(time.time()))
    model: str
    choices: list[Choice]
    usage: Usage
    system_fingerprint: str | None = None
    # the twin's additions
    model_version: str | None = None
    index_version: str | None = None
    citations: list[Citation] = Field(default_factory=list)


class Delta(BaseModel):
    role: Literal["assistant"] | None = None
    content: str | None = None


class ChunkChoice(BaseModel):
    index: int = 0
    delta: Delta
    finish_reason: str | None = None
    logprobs: None = None


class ChatCompletionChunk(BaseModel):
    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChunkChoice]
    usage: Usage | None = None
    system_fingerprint: str | None = None
    model_version: str | None = None
    index_version: str | None = None
    citations: list[Citation] | None = None


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int = 0
    owned_by: str = "twin"
    version: str | None = None
    kind: str | None = None


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


# -- the twin's own endpoints ---------------------------------------------------------------------


class HistoryMessage(_Strict):
    role: Literal["user", "assistant"]
    content: str = Field(max_length=MAX_QUESTION_CHARS)


class AnswerRequest(_Strict):
    question: Annotated[str, Field(min_length=1, max_length=MAX_QUESTION_CHARS)]
    history: list[HistoryMessage] = Field(default_factory=list)
    version: str | None = Field(default=None, min_length=1, max_length=64, description="pin a model version")
    stream: StrictBool = False
    k: int | None = Field(default=None, ge=1, le=200)
    filters: FiltersIn | None = None
    max_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    top_p: float | None = Field(default=None, gt=0.0, le=1.0)
    frequency_penalty: float | None = Field(default=None, ge=-2.0, le=2.0)
    presence_penalty: float | None = Field(default=None, ge=-2.0, le=2.0)
    stop: list[str] | None = Field(default=None, max_length=MAX_STOP)
    seed: int | None = Field(default=None, ge=-(2**63), lt=2**63)

    @field_validator("question")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("the question is blank")
        return value

    @field_validator("stop")
    @classmethod
    def _stops(cls, value: list[str] | None) -> list[str] | None:
        for item in value or []:
            if not item or len(item) > MAX_STOP_CHARS:
                raise ValueError(f"a stop sequence has 1 to {MAX_STOP_CHARS} characters")
        return value


class AnswerResponse(BaseModel):
    id: str
    author: str
    question: str
    answer: str
    finish_reason: str
    citations: list[Citation]
    model: str
    model_version: str
    index_version: str | None
    usage: Usage
    timings_ms: dict[str, float]


class InvocationRequest(AnswerRequest):
    """SageMaker's POST /invocations: an answer request naming its twin in `model` ('<author>'
    or '<author>@<version>'); without it, the container's pinned twin (TWIN_SERVE_MODEL)."""

    model: str | None = Field(default=None, min_length=1, max_length=128)


class SearchRequest(_Strict):
    question: Annotated[str, Field(min_length=1, max_length=MAX_QUESTION_CHARS)]
    k: int | None = Field(default=None, ge=1, le=200)
    filters: FiltersIn | None = None

    @field_validator("question")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("the question is blank")
        return value


class SearchResponse(BaseModel):
    author: str
    question: str
    index_version: str
    queries: list[str]
    filters: SearchFilters
    results: list[ScoredChunk]
    timings_ms: dict[str, float]


class ErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorBody(BaseModel):
    error: ErrorDetail
