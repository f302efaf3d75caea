"""Reading the fine-tuning datasets from the artifact store (contract: domain/datasets.py)."""

from __future__ import annotations

from pathlib import Path

from twin_assets.domain.datasets import DatasetCard, DatasetKind, InstructionRow, PreferenceRow, dataset_key
from twin_assets.domain.stores import ArtifactStore


def latest_dataset_version(artifacts: ArtifactStore, author: str, kind: DatasetKind) -> str | None:
    return artifacts.read_alias(dataset_key(author, kind), "latest")


def dataset_uri(artifacts: ArtifactStore, author: str, kind: DatasetKind, version: str) -> str:
    return artifacts.uri(dataset_key(author, kind, version))


def dataset_dir(artifacts: ArtifactStore, author: str, kind: DatasetKind, version: str) -> Path:
    path = artifacts.get_dir(dataset_key(author, kind, version))
    if not (path / "train.parquet").exists():
        raise FileNotFoundError(
            f"{kind} dataset {version} for {author} has no train.parquet at {path}: "
            f"materialize the {kind}_dataset asset for this author first"
        )
    return path


def load_rows(
    artifacts: ArtifactStore, author: str, kind: DatasetKind, version: str
) -> tuple[list[dict], list[dict], DatasetCard | None]:
    """(train rows, test rows, card), each row validated against its pydantic model."""
    import pyarrow.parquet as pq  # direct read: no HF datasets cache written per version

    path = dataset_dir(artifacts, author, kind, version)
    row_model = InstructionRow if kind == "instruction" else PreferenceRow
    splits = {}
    for split in ("train", "test"):
        file = path / f"{split}.parquet"
        rows = pq.read_table(str(file)).to_pylist() if file.exists() else []
        splits[split] = [row_model.model_validate(r).model_dump(mode="json") for r in rows]
    card = None
    if (path / "card.json").exists():
        card = DatasetCard.model_validate_json((path / "card.json").read_text())
    return splits["train"], splits["test"], card
