"""What an evaluation run computes and what the deploy gate demands (a plain pydantic model; the
asset exposes the same fields as a Dagster `Config`)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, field_validator

from twin_assets.domain.generation import DEFAULT_FREQUENCY_PENALTY

Metric = Literal["nll", "preference", "generation", "judge", "rag"]
ALL_METRICS: tuple[Metric, ...] = ("nll", "preference", "generation", "judge", "rag")


class EvaluationConfig(BaseModel):
    """Bounded by default (32 items, 64 new tokens) so a CPU run of SmolLM2-135M takes minutes."""

    metrics: list[str] = Field(
        default_factory=lambda: list(ALL_METRICS),
        description="Which metric families run; judge and rag also need their resources configured.",
    )
    max_items: int = Field(default=32, ge=1, description="Held-out items per metric (instructions, pairs).")
    max_new_tokens: int = Field(default=64, ge=1, description="Generation length for answers.")
    frequency_penalty: float = Field(
        default=DEFAULT_FREQUENCY_PENALTY,
        ge=-2.0,
        le=2.0,
        description="Decoding of answers, as the inference service's default (TWIN_SERVE_FREQUENCY_PENALTY): "
        "the gate judges the answers users get. 0 = plain greedy.",
    )
    presence_penalty: float = Field(default=0.0, ge=-2.0, le=2.0, description="Likewise (OpenAI's meaning).")
    max_length: int = Field(default=512, ge=16, description="Token cap of prompt + answer when scoring.")
    batch_size: int = Field(default=8, ge=1, description="Sequences per forward pass / generate call.")
    dpo_beta: float = Field(default=0.1, gt=0, description="Scale of the implicit DPO reward.")
    samples: int = Field(default=4, ge=0, description="Side-by-side samples kept in the report.")
    judge_items: int = Field(default=8, ge=0, description="Items sent to the judge (it costs tokens).")
    rag_k: int = Field(default=5, ge=1, description="Retrieved chunks per question.")
    rag_judge_items: int = Field(
        default=8,
        ge=0,
        description="RAG questions the candidate answers from its retrieved chunks for ragas' "
        "faithfulness and answer relevancy (only with a judge LLM; each costs ~5 judge calls).",
    )
    rag_max_prompt_tokens: int = Field(
        default=1536,
        ge=64,
        description="Token cap of a RAG prompt; the lowest-ranked chunks are dropped to fit.",
    )
    # -- the gate ---------------------------------------------------------------------------
    nll_margin: float = Field(
        default=0.0,
        description="The candidate must have a held-out NLL at least this much LOWER than the base model's.",
    )
    nll_tolerance: float = Field(
        default=0.05, ge=0, description="Allowed NLL increase over the production model."
    )
    preference_tolerance: float = Field(
        default=0.1, ge=0, description="Allowed drop of preference accuracy against production."
    )
    degeneration_tolerance: float = Field(
        default=0.1,
        ge=0,
        description="Allowed increase of the degeneration score over the base and production models.",
    )
    judge_tolerance: float = Field(
        default=0.5, ge=0, description="Allowed drop of the judge's style score against production."
    )

    @field_validator("metrics")
    @classmethod
    def _known_metrics(cls, value: list[str]) -> list[str]:
        # plain strings (a Dagster Config cannot hold Literal lists), checked here instead
        unknown = sorted(set(value) - set(ALL_METRICS))
        if unknown:
            raise ValueError(f"unknown metrics {unknown}; choose from {list(ALL_METRICS)}")
        return value

    def runs(self, metric: Metric) -> bool:
        return metric in self.metrics
