"""The model registry's vocabulary: which kinds of twin model exist and what a version's card holds.

Shared by training (which writes cards) and anything that reads the registry (serving, reports),
so the card is a domain type and not something private to the training code. Storage layout:
`models/<author>/<kind>/<version>/` with `model_card.json` (a `ModelCard`) beside the weights.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal, get_args

from pydantic import BaseModel, Field

from twin_assets.domain.datasets import DatasetKind

ModelKind = Literal["sft", "dpo"]
"""`sft`: supervised fine-tune of the base model; `dpo`: preference-tuned from an SFT version."""

MODEL_KINDS: tuple[ModelKind, ...] = get_args(ModelKind)


def training_dataset_kind(kind: ModelKind) -> DatasetKind:
    """SFT learns from instruction pairs, DPO from chosen/rejected preference pairs."""
    return "instruction" if kind == "sft" else "preference"


class ModelCard(BaseModel):
    """Everything needed to trust, reproduce and serve one registered model version."""

    author_id: str
    kind: ModelKind
    version: str
    uri: str = ""
    base_model: str
    method: str
    dataset_kind: DatasetKind
    dataset_version: str
    parent_model: dict = Field(default_factory=dict)  # dpo: the SFT version it started from
    hyperparameters: dict = Field(default_factory=dict)
    metrics: dict = Field(default_factory=dict)
    code_version: str
    lineage: dict = Field(default_factory=dict)
    chat_template_sha256: str = ""
    smoke_test: bool = False
    label: str = ""
    tracking: dict = Field(default_factory=dict)
    trained_on: str = ""
    created_at: str = Field(default_factory=lambda: datetime.now(UTC).isoformat())
