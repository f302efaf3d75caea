"""Helpers for the training tests: tiny datasets in the artifact-store layout, a tiny model."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from resources.artifacts import ArtifactStoreResource
from twin_assets.domain.datasets import DatasetCard, DatasetKind

AUTHOR = "maya-kowalski"
POSTS = [
    f"Post {i}: when a queue backs up, I measure before I tune. Lesson {i}: latency hides in retries."
    for i in range(24)
]


def instruction_rows(suffix: str = "") -> list[dict]:
    return [
        {
            "id": f"i{i}{suffix}",
            "instruction": f"Write a short post about lesson {i}{suffix}.",
            "output": POSTS[i],
            "category": "posts",
            "source_document_id": f"d{i}",
            "source_content_hash": f"h{i}",
            "quality": 0.9,
        }
        for i in range(len(POSTS))
    ]


def preference_rows() -> list[dict]:
    return [
        {
            "id": f"p{i}",
            "prompt": f"Write a short post about lesson {i}.",
            "chosen": POSTS[i],
            "rejected": "Queues are important. There are many things to consider.",
            "category": "posts",
            "source_document_id": f"d{i}",
            "source_content_hash": f"h{i}",
        }
        for i in range(len(POSTS))
    ]


def write_dataset(
    artifacts: ArtifactStoreResource, kind: DatasetKind, rows: list[dict], author: str = AUTHOR
) -> str:
    """Write rows exactly as the dataset stage does; returns the (content-hash) version."""
    from datasets import Dataset

    version = hashlib.sha256(json.dumps(rows, sort_keys=True).encode()).hexdigest()[:16]
    key = f"datasets/{author}/{kind}/{version}"
    path = artifacts.local_path(key)
    path.mkdir(parents=True, exist_ok=True)
    cut = int(len(rows) * 0.8)
    Dataset.from_list(rows[:cut]).to_parquet(str(path / "train.parquet"))
    Dataset.from_list(rows[cut:]).to_parquet(str(path / "test.parquet"))
    card = DatasetCard(
        author_id=author,
        kind=kind,
        version=version,
        uri=artifacts.uri(key),
        counts={"train": cut, "test": len(rows) - cut},
        generator="test",
    )
    (path / "card.json").write_text(card.model_dump_json())
    artifacts.write_alias(f"datasets/{author}/{kind}", "latest", version)
    return version


def tiny_model(root: Path) -> Path:
    from twin_assets.training.base_model import build_tiny_llama

    return build_tiny_llama(root / "tiny-llama", POSTS + [r["instruction"] for r in instruction_rows()])


def train_sft_and_dpo(root: Path, artifacts: ArtifactStoreResource, base: Path, author: str, sft_steps: int):
    """SFT then DPO of the tiny model for one author, as the assets run them (offline W&B, no
    SageMaker), on a fresh test instance. Returns (result, resources, run_config) so a test can
    run the assets again with the same set-up."""
    import dagster as dg

    from resources.sagemaker import SageMakerResource
    from resources.tracking import WandbResource
    from twin_assets.defs.partitions import AUTHORS_PARTITION
    from twin_assets.defs.training.assets import dpo_model, sft_model

    resources = {
        "artifacts": artifacts,
        "wandb": WandbResource(dir=str(root / "wandb"), mode="offline", project="twin-test"),
        "sagemaker": SageMakerResource(),
    }
    run_config = {
        "ops": {
            "sft_model": {"config": {"base_model": str(base), "max_steps": sft_steps, "max_length": 128}},
            "dpo_model": {"config": {"max_steps": 3, "max_length": 128}},
        }
    }
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(AUTHORS_PARTITION, [author])
        result = dg.materialize(
            [sft_model, dpo_model],
            resources=resources,
            instance=instance,
            partition_key=author,
            run_config=run_config,
        )
        assert result.success
    return result, resources, run_config
