"""The training assets' run config (launchpad / `dagster asset materialize --config`).

Each class is the plain training config (`twin_assets.training.config`) made a Dagster
`Config`, so the launchpad shows exactly the fields the training code reads, and
`training_config()` hands the plain model to the logic below (which never sees Dagster).

WHY the deployment defaults are read here: the launchpad's defaults for the base model and the
quick-demo step/length caps are deployment settings (TWIN_BASE_MODEL, TWIN_SFT_MAX_STEPS, ...).
They are read by `default_factory` when a run's config is built (at run time, not at import),
so the plain configs keep static defaults and a value set in the run config always wins.
"""

from __future__ import annotations

import os

import dagster as dg
from pydantic import Field

from twin_assets.training.config import (
    DPO_MAX_LENGTH,
    DPO_MAX_STEPS,
    SFT_MAX_LENGTH,
    SFT_MAX_STEPS,
    DPOTrainingConfig,
    SFTTrainingConfig,
)

BASE_MODEL_ENV = "TWIN_BASE_MODEL"


def deployment_base_model() -> str:
    """The base model this deployment fine-tunes (TWIN_BASE_MODEL); "" = offline SmolLM2."""
    return os.environ.get(BASE_MODEL_ENV, "")


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    return int(raw) if raw else default


class BaseModelConfig(dg.Config):
    base_model: str = Field(
        default_factory=deployment_base_model,
        description="HF model id or local path; empty = offline SmolLM2-135M-Instruct (TWIN_BASE_MODEL).",
    )


class SFTModelConfig(SFTTrainingConfig, dg.Config):
    base_model: str = Field(
        default_factory=deployment_base_model,
        description="HF model id or local path; empty = offline SmolLM2-135M-Instruct (TWIN_BASE_MODEL).",
    )
    max_steps: int = Field(
        default_factory=lambda: _env_int("TWIN_SFT_MAX_STEPS", SFT_MAX_STEPS),
        description=f">0 caps training steps; -1 = epochs (TWIN_SFT_MAX_STEPS, else {SFT_MAX_STEPS}).",
    )
    max_length: int = Field(
        default_factory=lambda: _env_int("TWIN_SFT_MAX_LENGTH", SFT_MAX_LENGTH),
        description=f"Tokens per sample (TWIN_SFT_MAX_LENGTH, else {SFT_MAX_LENGTH}).",
    )

    def training_config(self) -> SFTTrainingConfig:
        return SFTTrainingConfig.model_validate(self.model_dump())


class DPOModelConfig(DPOTrainingConfig, dg.Config):
    max_steps: int = Field(
        default_factory=lambda: _env_int("TWIN_DPO_MAX_STEPS", DPO_MAX_STEPS),
        description=f">0 caps training steps; -1 = epochs (TWIN_DPO_MAX_STEPS, else {DPO_MAX_STEPS}).",
    )
    max_length: int = Field(
        default_factory=lambda: _env_int("TWIN_DPO_MAX_LENGTH", DPO_MAX_LENGTH),
        description=f"Tokens per pair (TWIN_DPO_MAX_LENGTH, else {DPO_MAX_LENGTH}).",
    )

    def training_config(self) -> DPOTrainingConfig:
        return DPOTrainingConfig.model_validate(self.model_dump())
