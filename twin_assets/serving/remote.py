"""Any OpenAI-compatible server (vLLM, TGI, Ollama, a SageMaker endpoint behind one) as the
service's generator.

WHY a private event loop on its own thread: `AsyncOpenAI` (httpx) is bound to the loop it first
runs on, while `submit` may be called from FastAPI's loop, a benchmark's threads or a test. Each
request runs as a task on that loop and streams into a `GenerationStream`, which any consumer
loop or thread can read. Whatever the server does (HTTP errors, a broken stream, a hang) ends
the handle with finish_reason "error" or "timeout" and the text so far; nothing is raised out
of a handle.

The remote server owns the weights: `load_adapter` records that the name is servable (the server
must know it, e.g. vLLM `--lora-modules alice@3=/path`), and `model_map` renames it.

Token counts: the server's `usage` is used when it sends it (`stream_options.include_usage`).
Without a tokenizer, `count_tokens` (the context-window check at submit, and completion tokens
when the server sends no usage) is APPROXIMATE: UTF-8 bytes / 4, OpenAI's rule of thumb for
English; it undercounts dense text such as code, and the server rejects what really does not
fit (finish_reason "error" with its message). Pass `tokenizer` (a local tokenizer directory
or id) for exact counts and the model's own chat template in `render_prompt`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import math
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from twin_assets.domain.generation import Message
from twin_assets.serving.engine import BASE_ADAPTER, GenerationStream, GeneratorStats
from twin_assets.serving.sampling import RowText
from twin_assets.serving.types import FinishReason, GenerationParams

_FINISH: dict[str, FinishReason] = {"stop": "stop", "length": "length", "content_filter": "stop"}
MAX_REMOTE_STOPS = 4  # the OpenAI API accepts at most 4 stop strings; all are enforced here too


@dataclass
class _Flight:
    future: concurrent.futures.Future[None] | None = None
    reason: FinishReason | None = None
    error: str | None = None


def _no_decode(_ids: list[int]) -> str:
    return ""


class OpenAIGenerator:
    """`types.Generator` over an OpenAI-compatible chat-completions server, streaming."""

    def __init__(
        self,
        base_url: str,
        api_key: str = "",
        model_map: Mapping[str, str] | None = None,
        default_model: str = "",
        timeout_s: float = 120,
        context_window: int = 8192,
        *,
        tokenizer: str | Path | None = None,
        max_retries: int = 0,
        include_usage: bool = True,
    ):
        from openai import AsyncOpenAI

        if not base_url:
            raise ValueError("base_url is required")
        self.base_url = base_url
        self.model_map = dict(model_map or {})
        self.default_model = default_model
        self._context_window = context_window
        self._include_usage = include_usage
        self._tokenizer: Any = None
        if tokenizer is not None:
            from transformers import AutoTokenizer

            self._tokenizer = AutoTokenizer.from_pretrained(str(tokenizer))
        self._lock = threading.Lock()
        self._adapters: dict[str, Path] = {}
        self._inflight: dict[int, tuple[_Flight, GenerationStream]] = {}
        self._stats = GeneratorStats()
        self._closed = False
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="twin-openai-generator", daemon=True
        )
        self._thread.start()
        # the client is created on its loop (it binds to the loop it is used on)
        self._client: Any = self._call(self._make_client(AsyncOpenAI, api_key, timeout_s, max_retries))

    async def _make_client(self, cls: Any, api_key: str, timeout_s: float, max_retries: int) -> Any:
        # a server without authentication still needs a non-empty key for the client
        return cls(
            api_key=api_key or "none", base_url=self.base_url, timeout=timeout_s, max_retries=max_retries
        )

    def _call(self, coroutine: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result()

    # -- Generator protocol ------------------------------------------------------------------

    @property
    def name(self) -> str:
        return self.default_model or self.model_map.get(BASE_ADAPTER) or urlparse(self.base_url).netloc

    @property
    def context_window(self) -> int:
        return self._context_window

    def count_tokens(self, text: str) -> int:
        if self._tokenizer is not None:
            return len(self._tokenizer.encode(text, add_special_tokens=False))
        return math.ceil(len(text.encode("utf-8")) / 4)

    def render_prompt(self, messages: Sequence[Message]) -> str:
        """The prompt as the server's model sees it when a tokenizer is given; otherwise a
        readable rendering for logs (the server applies its own chat template)."""
        if not messages:
            raise ValueError("no messages")
        for message in messages:
            if not isinstance(message.get("content"), str) or not message.get("role"):
                raise ValueError("every message needs a role and a string content")
        if self._tokenizer is not None and self._tokenizer.chat_template:
            return self._tokenizer.apply_chat_template(
                [dict(m) for m in messages], tokenize=False, add_generation_prompt=True
            )
        return "".join(f"<|{m['role']}|>\n{m['content']}\n" for m in messages) + "<|assistant|>\n"

    def load_adapter(self, adapter: str, path: Path) -> None:
        if not adapter or adapter == BASE_ADAPTER:
            raise ValueError(f"invalid adapter name {adapter!r}")
        with self._lock:
            self._adapters[adapter] = Path(path)

    def unload_adapter(self, adapter: str) -> None:
        with self._lock:
            if self._adapters.pop(adapter, None) is None:
                raise ValueError(f"adapter {adapter!r} is not loaded")

    def adapters(self) -> list[str]:
        with self._lock:
            return sorted(self._adapters)

    def resolve_model(self, adapter: str | None) -> str:
        """The `model` sent to the server: model_map[adapter], else default_model, else the
        adapter name itself ("<author>@<version>"). The base model is model_map["__base__"] or
        default_model."""
        key = adapter or BASE_ADAPTER
        with self._lock:
            known = adapter is None or adapter in self._adapters or adapter in self.model_map
        if not known:
            raise ValueError(f"unknown adapter {adapter!r} (loaded: {self.adapters()})")
        model = self.model_map.get(key) or self.default_model or (adapter or "")
        if not model:
            raise ValueError("no model for base-model requests: set default_model or model_map['__base__']")
        return model

    def submit(
        self, adapter: str | None, messages: Sequence[Message], params: GenerationParams
    ) -> GenerationStream:
        prompt_tokens = self.count_tokens(self.render_prompt(messages))
        if prompt_tokens + params.max_tokens > self._context_window:
            raise ValueError(
                f"the prompt is about {prompt_tokens} tokens; with max_tokens={params.max_tokens} it "
                f"exceeds the model's context window of {self._context_window} tokens"
            )
        model = self.resolve_model(adapter)
        flight = _Flight()
        handle = GenerationStream(adapter or self.name, prompt_tokens, time.monotonic() + params.timeout_s)
        handle._on_abort = lambda reason: self._abort(flight, reason)
        payload = [{"role": m["role"], "content": m["content"]} for m in messages]
        with self._lock:
            if self._closed:
                raise RuntimeError("the generator is closed")
            self._stats.requests += 1
            self._inflight[id(handle)] = (flight, handle)
            flight.future = asyncio.run_coroutine_threadsafe(
                self._stream(handle, flight, model, payload, params), self._loop
            )
        return handle

    def close(self) -> None:
        """Requests still running end with finish_reason "error"; the client and loop stop."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            flights = list(self._inflight.values())
        for flight, _handle in flights:
            flight.error = "the generator was closed"
            self._abort(flight, "error")
        deadline = time.monotonic() + 10
        for _flight, handle in flights:
            if not handle.done:
                handle._done.wait(max(0.0, deadline - time.monotonic()))
        try:
            self._call(self._client.close())
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)

    # -- extras ------------------------------------------------------------------------------

    def stats(self) -> GeneratorStats:
        with self._lock:
            snapshot = self._stats.model_copy(deep=True)
            snapshot.running = len(self._inflight)
            snapshot.adapters = len(self._adapters)
        return snapshot

    # -- internals ---------------------------------------------------------------------------

    def _abort(self, flight: _Flight, reason: FinishReason) -> None:
        if reason == "timeout" and flight.reason is not None:
            return
        if flight.reason is None:
            flight.reason = reason
        if flight.future is not None:
            flight.future.cancel()  # thread-safe: cancels the task on the client's loop

    async def _stream(
        self,
        handle: GenerationStream,
        flight: _Flight,
        model: str,
        messages: list[dict[str, str]],
        params: GenerationParams,
    ) -> None:
        import openai

        text = RowText(_no_decode, params.stop)
        finish: FinishReason | None = None
        error: str | None = None
        prompt_tokens: int | None = None
        completion_tokens: int | None = None
        request: dict[str, Any] = {
            "model": model,
            "messages": messages,
            "max_tokens": params.max_tokens,
            "temperature": params.temperature,
            "top_p": params.top_p,
            "stream": True,
        }
        if params.stop:
            request["stop"] = params.stop[:MAX_REMOTE_STOPS]
        if params.seed is not None:
            request["seed"] = params.seed
        if params.frequency_penalty:
            request["frequency_penalty"] = params.frequency_penalty
        if params.presence_penalty:
            request["presence_penalty"] = params.presence_penalty
        if self._include_usage:
            request["stream_options"] = {"include_usage": True}
        try:
            async with asyncio.timeout(max(0.0, handle.deadline - time.monotonic())):
                stream = await self._client.chat.completions.create(**request)
                async with stream:
                    async for chunk in stream:
                        usage = getattr(chunk, "usage", None)
                        if usage is not None:
                            prompt_tokens = usage.prompt_tokens
                            completion_tokens = usage.completion_tokens
                        for choice in (chunk.choices or [])[:1]:
                            content = choice.delta.content if choice.delta is not None else None
                            if content:
                                handle.push(text.add_text(content))
                            if choice.finish_reason:
                                finish = _FINISH.get(choice.finish_reason, "stop")
                        if text.stopped:
                            finish = "stop"
                            break  # leaving `async with` closes the response: the server stops
            finish = finish or "stop"
        except asyncio.CancelledError:
            finish = flight.reason or "cancelled"
            error = flight.error
        except TimeoutError:
            finish = "timeout"
        except openai.APITimeoutError:
            finish = "timeout"
        except openai.APIStatusError as exc:
            finish, error = "error", f"the generation server answered {exc.status_code}: {exc.message}"
        except Exception as exc:  # connection refused, a broken stream, bad JSON...
            finish, error = "error", f"generation failed: {type(exc).__name__}: {exc}"
        handle.push(text.finish())
        if completion_tokens is None or finish in ("cancelled", "timeout", "error") or text.stopped:
            completion_tokens = self.count_tokens(text.text) if text.text else 0
        with self._lock:
            self._inflight.pop(id(handle), None)
            self._stats.finished += 1
            self._stats.prompt_tokens += prompt_tokens if prompt_tokens is not None else handle.prompt_tokens
            self._stats.completion_tokens += completion_tokens
            self._stats.finish_reasons[finish] = self._stats.finish_reasons.get(finish, 0) + 1
        handle.finish(finish, completion_tokens, error, prompt_tokens=prompt_tokens)
