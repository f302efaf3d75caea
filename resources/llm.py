"""Text generation behind one interface: an OpenAI-compatible server, a local transformers model,
or nothing at all ("offline").

Why one interface: dataset generation (instructions, generic answers, quality judging) and later
evaluation (LLM-as-a-judge) must not care whether the words come from OpenAI, vLLM, Ollama, TGI,
this project's own endpoint or a small local model. Why "offline": the pipeline must build its
datasets with no LLM at all (CI, laptops, air-gapped runs); callers check `uses_llm` and fall back
to their deterministic generators.

Robustness contract of `TextGenerator.generate`: transient failures (429, 5xx, timeouts,
connection errors) are retried with exponential backoff by *this* code (the SDK's own retries are
off so that every attempt is counted); anything the model returns that cannot be used (empty,
truncated by the token limit, bad JSON) gives `None` with the reason counted in `usage`, and is
never raised. Secrets (`api_key`) are `EnvVar`s, never logged, never part of metadata.
"""

from __future__ import annotations

import json
import random
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal

import dagster as dg
from pydantic import BaseModel, Field, PrivateAttr

Message = dict[str, str]
Backend = Literal["offline", "openai", "transformers"]

# Skip reasons (counted, never raised). Transient reasons are retried first.
RATE_LIMITED = "rate_limited"
SERVER_ERROR = "server_error"
TIMEOUT = "timeout"
CONNECTION_ERROR = "connection_error"
CLIENT_ERROR = "client_error"
EMPTY = "empty"
TRUNCATED = "truncated"
BAD_JSON = "bad_json"
MISSING_KEYS = "missing_keys"


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
    skipped: dict[str, int] = Field(default_factory=dict)  # reason -> count

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


class _Meter:
    """Thread-safe usage counters (generate_many runs calls in a thread pool)."""

    def __init__(self, backend: str, model: str):
        self._lock = threading.Lock()
        self._usage = GenerationUsage(backend=backend, model=model)
        self._skipped: Counter[str] = Counter()

    def add(self, **deltas: int) -> None:
        with self._lock:
            for name, delta in deltas.items():
                setattr(self._usage, name, getattr(self._usage, name) + delta)

    def skip(self, reason: str) -> None:
        with self._lock:
            self._skipped[reason] += 1

    def snapshot(self) -> GenerationUsage:
        with self._lock:
            return self._usage.model_copy(update={"skipped": dict(self._skipped)})


class TransientError(Exception):
    """Worth retrying (rate limit, server error, timeout, connection)."""

    def __init__(self, reason: str, message: str = "", retry_after: float | None = None):
        super().__init__(message or reason)
        self.reason = reason
        self.retry_after = retry_after


class PermanentError(Exception):
    """Not worth retrying (bad request, auth, not found): the call is skipped."""

    def __init__(self, reason: str, message: str = ""):
        super().__init__(message or reason)
        self.reason = reason


class RawCompletion(BaseModel):
    text: str | None
    finish_reason: str | None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    model: str = ""


# -- backends ------------------------------------------------------------------------------------


class OpenAIChatBackend:
    """Any server speaking OpenAI chat completions, through the official SDK."""

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
        self, messages: Sequence[Message], max_tokens: int, temperature: float, seed: int | None,
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


_MODEL_CACHE: dict[tuple[str, str, str], tuple[Any, Any]] = {}
_MODEL_CACHE_LOCK = threading.Lock()

# Used only when a tokenizer has no chat template of its own (e.g. a bare base model).
_FALLBACK_CHAT_TEMPLATE = (
    "{% for message in messages %}<|{{ message['role'] }}|>\n{{ message['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)


def load_causal_lm(model: str, device: str = "cpu", dtype: str = "auto") -> tuple[Any, Any]:
    """(tokenizer, model), loaded once per process: loading dominates a small model's cost."""
    key = (str(model), device, dtype)
    with _MODEL_CACHE_LOCK:
        if key not in _MODEL_CACHE:
            import torch
            from transformers import AutoModelForCausalLM, AutoTokenizer

            tokenizer = AutoTokenizer.from_pretrained(model)
            if tokenizer.pad_token is None:
                tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
            tokenizer.padding_side = "left"  # decoder-only batching pads on the left
            torch_dtype = getattr(torch, dtype) if dtype != "auto" else "auto"
            lm = AutoModelForCausalLM.from_pretrained(model, dtype=torch_dtype)
            lm.to(device)
            lm.eval()
            _MODEL_CACHE[key] = (tokenizer, lm)
        return _MODEL_CACHE[key]


class TransformersBackend:
    """A local causal LM with its chat template. Calls are serialised: one model, one forward."""

    def __init__(self, model: str, device: str, dtype: str, repetition_penalty: float = 1.2):
        self.model = model
        self.device = device
        self.dtype = dtype
        # Small instruct models decoded greedily loop until the token cap (measured: SmolLM2-135M
        # never reached EOS on 16 of 16 prompts at 256 tokens); a mild penalty lets them finish.
        self.repetition_penalty = repetition_penalty
        self._lock = threading.Lock()

    def _prompt(self, tokenizer: Any, messages: Sequence[Message]) -> str:
        template = tokenizer.chat_template or _FALLBACK_CHAT_TEMPLATE
        return tokenizer.apply_chat_template(
            list(messages), chat_template=template, tokenize=False, add_generation_prompt=True
        )

    def complete(
        self, messages: Sequence[Message], max_tokens: int, temperature: float, seed: int | None,
        json_mode: bool,
    ) -> RawCompletion:
        return self.complete_batch([messages], max_tokens, temperature, seed)[0]

    def complete_batch(
        self, batch: Sequence[Sequence[Message]], max_tokens: int, temperature: float,
        seed: int | None,
    ) -> list[RawCompletion]:
        import torch

        tokenizer, lm = load_causal_lm(self.model, self.device, self.dtype)
        prompts = [self._prompt(tokenizer, m) for m in batch]
        with self._lock, torch.no_grad():
            enc = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
            enc = {k: v.to(self.device) for k, v in enc.items()}
            if seed is not None:
                torch.manual_seed(seed)
            gen_kwargs: dict[str, Any] = {
                "max_new_tokens": max_tokens,
                "pad_token_id": tokenizer.pad_token_id,
                "repetition_penalty": self.repetition_penalty,
            }
            if temperature > 0:
                gen_kwargs.update(do_sample=True, temperature=temperature, top_p=0.95)
            else:
                gen_kwargs.update(do_sample=False)
            out = lm.generate(**enc, **gen_kwargs)
        width = enc["input_ids"].shape[1]
        eos = tokenizer.eos_token_id
        results = []
        for i in range(len(prompts)):
            new = out[i, width:].tolist()
            # strip padding after EOS; "length" when the budget ran out before EOS
            stopped = eos is not None and eos in new
            if stopped:
                new = new[: new.index(eos)]
            new = [t for t in new if t != tokenizer.pad_token_id or t == eos]
            results.append(
                RawCompletion(
                    text=tokenizer.decode(new, skip_special_tokens=True),
                    finish_reason="stop" if stopped or len(new) < max_tokens else "length",
                    prompt_tokens=int(enc["attention_mask"][i].sum()),
                    completion_tokens=len(new),
                    model=Path(self.model).name or self.model,
                )
            )
        return results


# -- the generator -------------------------------------------------------------------------------

_JSON_OBJECT = re.compile(r"\{.*\}", re.DOTALL)


def parse_json_object(text: str) -> dict[str, Any] | None:
    """The first JSON object in a completion (models like to wrap JSON in prose or fences)."""
    text = text.strip()
    if text.startswith("```"):
        text = re.sub(r"^```[a-zA-Z]*\n?|```$", "", text).strip()
    for candidate in (text, *(m.group(0) for m in [_JSON_OBJECT.search(text)] if m)):
        try:
            value = json.loads(candidate)
        except (json.JSONDecodeError, ValueError):
            continue
        if isinstance(value, dict):
            return value
    return None


class TextGenerator:
    """A configured backend plus its own usage meter (one per asset run, so metadata is exact)."""

    def __init__(
        self,
        backend: Backend,
        backend_impl: OpenAIChatBackend | TransformersBackend | None,
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
        self._meter = _Meter(backend, model)

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
        raw: RawCompletion | None = None
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
        self, raw: RawCompletion, attempts: int, json_keys: Sequence[str] | None,
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
            if any(not isinstance(data.get(k), str | int | float) or not str(data.get(k)).strip()
                   for k in json_keys):
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
        """Results in input order. HTTP calls run `max_concurrency` at a time; a local model
        runs batches of `local_batch_size` prompts through one padded `generate` (one big batch
        uses the CPU/GPU far better than many small ones; there is no server to overload)."""
        if not batch:
            return []
        if isinstance(self._impl, TransformersBackend):
            return self._generate_local_batches(
                batch, max_tokens, temperature, json_keys, allow_truncated
            )
        with ThreadPoolExecutor(max_workers=self.max_concurrency) as pool:
            futures = [
                pool.submit(
                    self.generate, m, max_tokens=max_tokens, temperature=temperature,
                    json_keys=json_keys, allow_truncated=allow_truncated,
                )
                for m in batch
            ]
            return [f.result() for f in futures]

    def _generate_local_batches(self, batch, max_tokens, temperature, json_keys, allow_truncated):
        assert isinstance(self._impl, TransformersBackend)
        max_tokens = max_tokens or self.max_tokens
        temperature = self.temperature if temperature is None else temperature
        out: list[Generation | None] = []
        for start in range(0, len(batch), self.local_batch_size):
            chunk = batch[start : start + self.local_batch_size]
            self._meter.add(requests=len(chunk))
            raws = self._impl.complete_batch(chunk, max_tokens, temperature, self.seed)
            for raw in raws:
                self._meter.add(
                    prompt_tokens=raw.prompt_tokens, completion_tokens=raw.completion_tokens
                )
                out.append(self._accept(raw, 1, json_keys, allow_truncated))
        return out


class TextGeneratorResource(dg.ConfigurableResource):
    """Dagster face of text generation. `get_generator()` gives each asset run its own meter."""

    backend: Backend = Field(
        default="offline",
        description="offline (no LLM), openai (any OpenAI-compatible server) or transformers.",
    )
    base_url: str = Field(default="", description="OpenAI-compatible base URL (TWIN_LLM_BASE_URL).")
    model: str = Field(
        default="", description="Model name on the server, or a local model id/path (TWIN_LLM_MODEL)."
    )
    api_key: str = Field(default="", description="API key (TWIN_LLM_API_KEY); never logged.")
    base_model: str = Field(
        default="",
        description="Local base model path (TWIN_BASE_MODEL): the default author of generic "
        "'rejected' answers when no LLM is configured. Used only if it exists.",
    )
    timeout_s: float = Field(default=60.0, description="Per-call timeout in seconds.")
    max_retries: int = Field(default=4, description="Retries on 429/5xx/timeouts.")
    backoff_base_s: float = Field(default=0.5, description="First retry delay; doubles each time.")
    backoff_max_s: float = Field(default=20.0)
    max_concurrency: int = Field(default=4, description="Parallel calls to a server.")
    local_batch_size: int = Field(default=16, description="Prompts per generate() for local models.")
    temperature: float = Field(default=0.0, description="0 = greedy (reproducible datasets).")
    max_tokens: int = Field(default=512)
    seed: int | None = Field(default=0)
    repetition_penalty: float = Field(default=1.2, description="Local models only (1.0 = off).")
    device: str = Field(default="cpu")
    dtype: str = Field(default="auto", description="torch dtype for local models, or auto.")

    _sleep: Callable[[float], None] = PrivateAttr(default=time.sleep)

    @property
    def uses_llm(self) -> bool:
        return self.backend != "offline"

    def _make(self, backend: Backend, model: str) -> TextGenerator:
        impl: OpenAIChatBackend | TransformersBackend | None
        if backend == "openai":
            if not self.model:
                raise ValueError("backend 'openai' needs a model name (TWIN_LLM_MODEL)")
            impl = OpenAIChatBackend(self.base_url, model, self.api_key, self.timeout_s)
        elif backend == "transformers":
            if not model:
                raise ValueError("backend 'transformers' needs a model id or path (TWIN_LLM_MODEL)")
            impl = TransformersBackend(model, self.device, self.dtype, self.repetition_penalty)
        else:
            impl = None
        return TextGenerator(
            backend,
            impl,
            model if impl is not None else "",
            max_retries=self.max_retries,
            backoff_base_s=self.backoff_base_s,
            backoff_max_s=self.backoff_max_s,
            max_concurrency=self.max_concurrency,
            local_batch_size=self.local_batch_size,
            temperature=self.temperature,
            max_tokens=self.max_tokens,
            seed=self.seed,
            sleep=self._sleep,
        )

    def get_generator(self) -> TextGenerator:
        return self._make(self.backend, self.model)

    def base_model_available(self) -> bool:
        return bool(self.base_model) and (Path(self.base_model) / "config.json").is_file()

    def get_base_model_generator(self) -> TextGenerator | None:
        """The local base model as a generator, or None when it is not on disk."""
        if not self.base_model_available():
            return None
        return self._make("transformers", self.base_model)
