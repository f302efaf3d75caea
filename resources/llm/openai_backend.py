"""Any server speaking OpenAI chat completions (OpenAI, vLLM, Ollama, TGI, this project's own
endpoint), through the official SDK, with the SDK's errors mapped to transient or permanent."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from resources.llm.backend import RawCompletion
from resources.llm.errors import PermanentError, TransientError
from twin_assets.domain.generation import (
    BAD_JSON,
    CLIENT_ERROR,
    CONNECTION_ERROR,
    RATE_LIMITED,
    SERVER_ERROR,
    TIMEOUT,
    Message,
)


class OpenAIChatBackend:
    """One client per generator; the secret stays in the client, never in a log or metadata."""

    def __init__(self, base_url: str, model: str, api_key: str, timeout_s: float):
        import openai  # imported lazily: no SDK work at import time of the code location

        self._openai = openai
        self.model = model
        # max_retries=0: retries are ours, so each attempt is counted and tested.
        self._client = openai.OpenAI(
            base_url=base_url or None,
            api_key=api_key or "not-needed",
            max_retries=0,
            timeout=timeout_s,
        )

    def complete(
        self,
        messages: Sequence[Message],
        max_tokens: int,
        temperature: float,
        seed: int | None,
        json_mode: bool,
    ) -> RawCompletion:
        oa = self._openai
        kwargs: dict[str, Any] = {}
        if seed is not None:
            kwargs["seed"] = seed
        if json_mode:
            kwargs["response_format"] = {"type": "json_object"}
        try:
            resp = self._client.chat.completions.create(
                model=self.model,
                messages=list(messages),  # type: ignore[arg-type]
                max_tokens=max_tokens,
                temperature=temperature,
                **kwargs,
            )
        except oa.APITimeoutError as exc:  # subclass of APIConnectionError: test it first
            raise TransientError(TIMEOUT, str(exc)) from exc
        except oa.APIConnectionError as exc:
            raise TransientError(CONNECTION_ERROR, str(exc)) from exc
        except oa.RateLimitError as exc:
            raise TransientError(RATE_LIMITED, str(exc), _retry_after(exc)) from exc
        except oa.APIStatusError as exc:
            if exc.status_code >= 500 or exc.status_code in (408, 409):
                raise TransientError(SERVER_ERROR, str(exc), _retry_after(exc)) from exc
            raise PermanentError(CLIENT_ERROR, f"HTTP {exc.status_code}") from exc
        except oa.APIResponseValidationError as exc:
            raise PermanentError(BAD_JSON, str(exc)) from exc
        if not resp.choices:
            return RawCompletion(text=None, finish_reason=None, model=resp.model or self.model)
        choice = resp.choices[0]
        usage = resp.usage
        return RawCompletion(
            text=choice.message.content if choice.message else None,
            finish_reason=choice.finish_reason,
            prompt_tokens=(usage.prompt_tokens or 0) if usage else 0,
            completion_tokens=(usage.completion_tokens or 0) if usage else 0,
            model=resp.model or self.model,
        )


def _retry_after(exc: Exception) -> float | None:
    response = getattr(exc, "response", None)
    if response is None:
        return None
    value = response.headers.get("retry-after")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None
