"""`TextGeneratorResource`: the Dagster configuration of text generation. It holds settings only
and builds a fresh `RetryingTextGenerator` per call, so each asset run meters its own usage.
Secrets (`api_key`) are `EnvVar`s, never logged, never part of metadata."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import dagster as dg
from pydantic import Field, PrivateAttr

from resources.llm.backend import ChatBackend
from resources.llm.generator import RetryingTextGenerator
from resources.llm.openai_backend import OpenAIChatBackend
from resources.llm.transformers_backend import TransformersBackend
from twin_assets.domain.generation import GenerationBackend


class TextGeneratorResource(dg.ConfigurableResource):
    """Dagster face of text generation. `get_generator()` gives each asset run its own meter."""

    backend: GenerationBackend = Field(
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

    def _backend_impl(self, backend: GenerationBackend, model: str) -> ChatBackend | None:
        """The backend for `model` (not necessarily this resource's `model`: the base model is
        served by the same settings), or None for offline."""
        if backend == "openai":
            if not model:
                raise ValueError("backend 'openai' needs a model name (TWIN_LLM_MODEL)")
            return OpenAIChatBackend(self.base_url, model, self.api_key, self.timeout_s)
        if backend == "transformers":
            if not model:
                raise ValueError("backend 'transformers' needs a model id or path (TWIN_LLM_MODEL)")
            return TransformersBackend(model, self.device, self.dtype, self.repetition_penalty)
        return None

    def generator_for(self, backend: GenerationBackend, model: str) -> RetryingTextGenerator:
        """A generator of `model` on `backend` with this resource's retry/decoding settings."""
        impl = self._backend_impl(backend, model)
        return RetryingTextGenerator(
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

    def get_generator(self) -> RetryingTextGenerator:
        return self.generator_for(self.backend, self.model)

    def base_model_available(self) -> bool:
        return bool(self.base_model) and (Path(self.base_model) / "config.json").is_file()

    def get_base_model_generator(self) -> RetryingTextGenerator | None:
        """The local base model as a generator, or None when it is not on disk."""
        if not self.base_model_available():
            return None
        return self.generator_for("transformers", self.base_model)
