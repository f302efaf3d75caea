"""`RetryingTextGenerator`: the `TextGenerator` protocol over any backend.

Robustness contract of `generate`: transient failures (429, 5xx, timeouts, connection errors) are
retried with exponential backoff by *this* code (the SDK's own retries are off so that every
attempt is counted); anything the model returns that cannot be used (empty, truncated by the
token limit, bad JSON) gives `None` with the reason counted in `usage`, and is never raised.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

from resources.llm.backend import BatchChatBackend, ChatBackend, RawCompletion
from resources.llm.errors import PermanentError, TransientError
from resources.llm.json_output import parse_json_object
from resources.llm.metering import UsageMeter
from twin_assets.domain.generation import (
    BAD_JSON,
    EMPTY,
    MISSING_KEYS,
    TRUNCATED,
    Generation,
    GenerationBackend,
    GenerationUsage,
    Message,
)


class RetryingTextGenerator:
    """A configured backend plus its own usage meter (one per asset run, so metadata is exact).
    `backend_impl` None is the offline generator: `uses_llm` is False and `generate` raises."""

    def __init__(
        self,
        backend: GenerationBackend,
        backend_impl: ChatBackend | None,
        model: str,
        *,
        max_retries: int = 4,
        backoff_base_s: float = 0.5,
        backoff_max_s: float = 20.0,
        max_concurrency: int = 4,
        local_batch_size: int = 16,
        temperature: float = 0.0,
        max_tokens: int = 512,
        seed: int | None = 0,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.backend = backend
        self.model = model
        self._impl = backend_impl
        self.max_retries = max_retries
        self.backoff_base_s = backoff_base_s
        self.backoff_max_s = backoff_max_s
        self.max_concurrency = max(1, max_concurrency)
        self.local_batch_size = max(1, local_batch_size)
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.seed = seed
        self._sleep = sleep
        self._meter = UsageMeter(backend, model)

    @property
    def uses_llm(self) -> bool:
        return self._impl is not None

    @property
    def name(self) -> str:
        """Identifies the generator in dataset cards (never includes URLs' secrets or keys)."""
        return f"{self.backend}:{self.model}" if self.uses_llm else "offline"

    @property
    def usage(self) -> GenerationUsage:
        return self._meter.snapshot()

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        delay = min(self.backoff_max_s, self.backoff_base_s * (2**attempt))
        delay *= 0.5 + random.random() / 2  # jitter: retries of parallel calls spread out
        if retry_after is not None:
            delay = max(delay, min(retry_after, self.backoff_max_s))
        return delay

    def generate(
        self,
        messages: Sequence[Message],
        *,
        max_tokens: int | None = None,
        temperature: float | None = None,
        json_keys: Sequence[str] | None = None,
        allow_truncated: bool = False,
    ) -> Generation | None:
        """One completion, or None (reason counted) when it failed or was unusable.

        `json_keys`: ask for a JSON object and require these non-empty string keys in it.
        `allow_truncated`: keep an answer cut by the token cap (fine where only its voice
        matters, e.g. a rejected DPO answer that training truncates anyway).
        """
        if self._impl is None:
            raise RuntimeError(
                "no LLM configured (backend 'offline'): check `uses_llm` and use an offline generator"
            )
        max_tokens = max_tokens or self.max_tokens
        temperature = self.temperature if temperature is None else temperature
        attempt = 0
        while True:
            self._meter.add(requests=1)
            try:
                raw = self._impl.complete(
                    messages, max_tokens, temperature, self.seed, json_mode=bool(json_keys)
                )
                break
            except TransientError as exc:
                if attempt >= self.max_retries:
                    self._meter.skip(exc.reason)
                    return None
                self._meter.add(retries=1)
                self._sleep(self._backoff(attempt, exc.retry_after))
                attempt += 1
            except PermanentError as exc:
                self._meter.skip(exc.reason)
                return None
        self._meter.add(prompt_tokens=raw.prompt_tokens, completion_tokens=raw.completion_tokens)
        return self._accept(raw, attempt + 1, json_keys, allow_truncated)

    def _accept(
        self,
        raw: RawCompletion,
        attempts: int,
        json_keys: Sequence[str] | None,
        allow_truncated: bool = False,
    ) -> Generation | None:
        text = (raw.text or "").strip()
        if raw.finish_reason == "length" and (json_keys or not allow_truncated):
            self._meter.skip(TRUNCATED)
            return None
        if not text:
            self._meter.skip(EMPTY)
            return None
        data = None
        if json_keys:
            data = parse_json_object(text)
            if data is None:
                self._meter.skip(BAD_JSON)
                return None
            if any(
                not isinstance(data.get(k), str | int | float) or not str(data.get(k)).strip()
                for k in json_keys
            ):
                self._meter.skip(MISSING_KEYS)
                return None
        self._meter.add(successes=1)
        return Generation(
            text=text,
            finish_reason=raw.finish_reason or "stop",
            prompt_tokens=raw.prompt_tokens,
            completion_tokens=raw.completion_tokens,
            model=raw.model,
            attempts=attempts,
            data=data,
        )

    def generate_many(
        self,
        batch: Sequence[Sequence[Message]],
        *,
        max_tokens: int | None = None,
        temperature: float | None = None,
        json_keys: Sequence[str] | None = None,
        allow_truncated: bool = False,
    ) -> list[Generation | None]:
        """Results in input order. HTTP calls run `max_concurrency` at a time; a batch backend
        (a local model) runs `local_batch_size` prompts through one padded `generate`."""
        if not batch:
            return []
        if isinstance(self._impl, BatchChatBackend):
            return self._generate_local_batches(
                self._impl, batch, max_tokens, temperature, json_keys, allow_truncated
            )
        with ThreadPoolExecutor(max_workers=self.max_concurrency) as pool:
            futures = [
                pool.submit(
                    self.generate,
                    m,
                    max_tokens=max_tokens,
                    temperature=temperature,
                    json_keys=json_keys,
                    allow_truncated=allow_truncated,
                )
                for m in batch
            ]
            return [f.result() for f in futures]

    def _generate_local_batches(
        self,
        impl: BatchChatBackend,
        batch: Sequence[Sequence[Message]],
        max_tokens: int | None,
        temperature: float | None,
        json_keys: Sequence[str] | None,
        allow_truncated: bool,
    ) -> list[Generation | None]:
        max_tokens = max_tokens or self.max_tokens
        temperature = self.temperature if temperature is None else temperature
        out: list[Generation | None] = []
        for start in range(0, len(batch), self.local_batch_size):
            chunk = batch[start : start + self.local_batch_size]
            self._meter.add(requests=len(chunk))
            raws = impl.complete_batch(chunk, max_tokens, temperature, self.seed)
            for raw in raws:
                self._meter.add(prompt_tokens=raw.prompt_tokens, completion_tokens=raw.completion_tokens)
                out.append(self._accept(raw, 1, json_keys, allow_truncated))
        return out
