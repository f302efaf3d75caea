"""What one training run hands back, and its JSON form (the `result.json` next to the adapter).

WHY its own module: the in-process path (`sft.py`/`dpo.py`), the entry point that writes
`result.json` inside a SageMaker job, and the SageMaker glue that reads it back all need the
same shape; keeping it here lets each of them import it without importing the others.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class TrainingResult:
    """What a training run produced: a self-contained model dir plus everything for the card."""

    model_dir: Path  # adapter (or full weights) + tokenizer with its chat template
    chat_template: str
    hyperparameters: dict[str, Any]
    metrics: dict[str, float]
    curves: dict[str, list[tuple[int, float]]]
    smoke_test: bool
    method: str
    extra: dict[str, Any] = field(default_factory=dict)


def result_to_json(result: TrainingResult) -> dict[str, Any]:
    """Everything but the local model directory, which means nothing on another machine."""
    return {k: v for k, v in asdict(result).items() if k != "model_dir"}


def result_from_json(payload: dict, model_dir: Path) -> TrainingResult:
    """The inverse of `result_to_json`, with the model directory where it was unpacked."""
    return TrainingResult(
        model_dir=model_dir,
        chat_template=payload.get("chat_template", ""),
        hyperparameters=payload.get("hyperparameters", {}),
        metrics=payload.get("metrics", {}),
        curves={k: [tuple(p) for p in v] for k, v in payload.get("curves", {}).items()},
        smoke_test=bool(payload.get("smoke_test")),
        method=payload.get("method", "lora"),
        extra=payload.get("extra", {}),
    )
