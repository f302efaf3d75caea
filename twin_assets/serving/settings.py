"""How one `twin serve` process is configured: every knob of the HTTP service in one model.

WHY a plain pydantic model (not read from the environment here): the serving package is plain
logic below the resources layer, so it never reads `os.environ`; `twin_assets.server`
(`settings_from_env`) turns the TWIN_SERVE_* variables into this model, and tests build it
directly with the values they need.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from twin_assets.domain.generation import DEFAULT_FREQUENCY_PENALTY

GeneratorKind = Literal["local", "openai"]


class ServeSettings(BaseModel):
    """The service's configuration. Defaults are the safe, offline, one-laptop ones."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    # -- network ---------------------------------------------------------------------------
    host: str = Field(default="127.0.0.1", description="bind address (loopback unless told otherwise)")
    port: int = Field(default=8008, ge=1, le=65535)
    auth: bool = Field(default=True, description="API keys required (Bearer); off only for local trials")

    # -- which authors --------------------------------------------------------------------
    authors: list[str] | None = Field(
        default=None, description="authors served; None: every author of the registry"
    )

    model: str = Field(
        default="",
        description="the twin SageMaker's /invocations answers as ('<author>' or '<author>@<version>')",
    )

    # -- generation -----------------------------------------------------------------------
    generator: GeneratorKind = "local"
    base_model: str = Field(default="", description="local base model dir ('' : the offline SmolLM2)")
    device: str = "cpu"
    max_batch_size: int = Field(default=16, ge=1, le=256)
    frequency_penalty: float = Field(
        default=DEFAULT_FREQUENCY_PENALTY,
        ge=-2.0,
        le=2.0,
        description="default when a request sets none (OpenAI's meaning); 0.3 keeps a small model out of loops",
    )
    presence_penalty: float = Field(default=0.0, ge=-2.0, le=2.0, description="likewise")
    threads: int = Field(
        default=0,
        ge=0,
        description="torch CPU threads (0: torch's default); 1 on a machine shared with other jobs",
    )
    openai_base_url: str = Field(default="", description="OpenAI-compatible server (generator=openai)")
    openai_api_key: str = Field(default="", repr=False, description="its key; never logged")
    openai_models: dict[str, str] = Field(
        default_factory=dict,
        description="twin adapter ('<author>@<version>' or '<author>') -> model name on that server",
    )
    openai_default_model: str = Field(default="", description="server model for anything unmapped")

    # -- limits ---------------------------------------------------------------------------
    max_body_bytes: int = Field(default=256 * 1024, ge=1024)
    max_messages: int = Field(default=64, ge=1)
    max_tokens: int = Field(default=512, ge=1, description="the largest max_tokens a request may ask")
    default_max_tokens: int = Field(default=256, ge=1)
    max_context_tokens: int = Field(
        default=0, ge=0, description="prompt + completion cap; 0: the model's context window"
    )
    rate_per_minute: float = Field(default=120.0, ge=0, description="per key; 0: unlimited")
    rate_burst: int = Field(default=20, ge=1)
    request_timeout_s: float = Field(default=120.0, gt=0)

    # -- hot swap -------------------------------------------------------------------------
    refresh_interval_s: float = Field(
        default=30.0,
        ge=0,
        validation_alias="polling",
        description="how often new production models and index versions are looked for; 0: never",
    )
    adapter_idle_s: float = Field(
        default=900.0, ge=0, description="a pinned (non-production) version idle this long is unloaded"
    )

    # -- retrieval ------------------------------------------------------------------------
    rag_k: int = Field(default=5, ge=1, le=50, description="chunks cited per answer by default")
    rag_max_k: int = Field(default=20, ge=1, le=200)
    chat_rag: bool = Field(
        default=True, description="chat completions retrieve and cite unless the request says rag: false"
    )
    rag: dict = Field(default_factory=dict, description="extra RagConfig fields (retrieval stages)")
    system_prompt: str = Field(
        default=("You are the digital twin of {author}. Answer in their voice, from their own writing."),
        description="'{author}' is replaced by the author's id",
    )

    # -- prompt monitoring ----------------------------------------------------------------
    prompt_log_sample_rate: float = Field(default=1.0, ge=0.0, le=1.0)
    prompt_log_retention_days: int = Field(default=30, ge=1)

    @model_validator(mode="after")
    def _consistent(self) -> ServeSettings:
        # a lowered cap lowers the default with it (a default above the cap could never be used)
        self.default_max_tokens = min(self.default_max_tokens, self.max_tokens)
        if self.rag_k > self.rag_max_k:
            raise ValueError(f"rag_k ({self.rag_k}) exceeds rag_max_k ({self.rag_max_k})")
        if self.generator == "openai" and not self.openai_base_url:
            raise ValueError("generator 'openai' needs openai_base_url (TWIN_SERVE_OPENAI_BASE_URL)")
        return self

    def system_prompt_for(self, author: str) -> str:
        return self.system_prompt.replace("{author}", author)

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"
