"""Versioned dataset artifacts: `datasets/<author>/<kind>/<version>/{train,test}.parquet` plus
`card.json`, and `datasets/<author>/<kind>/aliases/latest.json`.

The version is a hash of the rows' content (and their split), nothing else: the same rows give the
same version, so re-running on unchanged data is a no-op for everything downstream (the Dagster
data version is this hash; training retriggers only when it changes). An existing version is
never rewritten.
"""

from __future__ import annotations

import json
import logging
import tempfile
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

import datasets as hfds
from pydantic import BaseModel

from twin_assets.datasets.splitting import documents_by_split, summarise_split
from twin_assets.domain.datasets import (
    SPLITS,
    DatasetCard,
    DatasetKind,
    DocumentSplit,
    InstructionRow,
    PreferenceRow,
    SplitName,
    dataset_key,
)
from twin_assets.domain.features import DocumentFailure
from twin_assets.domain.stores import ArtifactStore

log = logging.getLogger(__name__)
R = TypeVar("R", bound=BaseModel)

_FEATURES: dict[DatasetKind, hfds.Features] = {
    "instruction": hfds.Features(
        {
            "id": hfds.Value("string"),
            "instruction": hfds.Value("string"),
            "output": hfds.Value("string"),
            "category": hfds.Value("string"),
            "source_document_id": hfds.Value("string"),
            "source_content_hash": hfds.Value("string"),
            "quality": hfds.Value("float64"),
        }
    ),
    "preference": hfds.Features(
        {
            "id": hfds.Value("string"),
            "prompt": hfds.Value("string"),
            "chosen": hfds.Value("string"),
            "rejected": hfds.Value("string"),
            "category": hfds.Value("string"),
            "source_document_id": hfds.Value("string"),
            "source_content_hash": hfds.Value("string"),
        }
    ),
}
ROW_MODELS: dict[DatasetKind, type[BaseModel]] = {"instruction": InstructionRow, "preference": PreferenceRow}


def dataset_version(kind: DatasetKind, splits: Mapping[str, Sequence[BaseModel]]) -> str:
    """sha256 over the canonical JSON of every row, per split, rows sorted by id."""
    import hashlib

    h = hashlib.sha256(kind.encode())
    for split in SPLITS:
        for row in sorted(splits.get(split, []), key=lambda r: r.id):  # type: ignore[attr-defined]
            h.update(split.encode())
            h.update(json.dumps(row.model_dump(mode="json"), sort_keys=True).encode())
    return h.hexdigest()[:16]


def to_hf(kind: DatasetKind, rows: Sequence[BaseModel]) -> hfds.Dataset:
    records = [row.model_dump(mode="json") for row in rows]
    features = _FEATURES[kind]
    if not records:
        return hfds.Dataset.from_dict({k: [] for k in features}, features=features)
    return hfds.Dataset.from_list(records, features=features)


class SaveResult(BaseModel):
    version: str
    uri: str
    written: bool  # False: this version existed already and was left alone
    card: DatasetCard


def save_dataset(
    artifacts: ArtifactStore,
    card: DatasetCard,
    splits: Mapping[str, Sequence[BaseModel]],
    assignment: DocumentSplit | None = None,
) -> SaveResult:
    """Write a version (unless it exists) and point `latest` at it. Counts, documents per split
    and the split summary are derived here from the rows being written, so the card describes
    what is stored (they are not part of the version hash: the rows already determine them);
    `assignment`, the document split the rows were divided by, goes into the summary."""
    key = dataset_key(card.author_id, card.kind, card.version)
    if artifacts.exists(f"{key}/card.json"):
        existing = DatasetCard.model_validate(artifacts.get_json(f"{key}/card.json"))
        artifacts.write_alias(dataset_key(card.author_id, card.kind), "latest", card.version)
        return SaveResult(version=card.version, uri=existing.uri, written=False, card=existing)
    documents = documents_by_split({s: splits.get(s, []) for s in SPLITS})
    card = card.model_copy(
        update={
            "uri": artifacts.uri(key),
            "created_at": card.created_at or datetime.now(UTC).isoformat(),
            "counts": {s: len(splits.get(s, [])) for s in SPLITS},
            "documents": {s: len(documents[s]) for s in SPLITS},
            "split": summarise_split(splits.get("train", []), splits.get("test", []), assignment),
        }
    )
    with tempfile.TemporaryDirectory() as tmp:
        for split in SPLITS:
            to_hf(card.kind, splits.get(split, [])).to_parquet(str(Path(tmp) / f"{split}.parquet"))
        # the card goes last: its presence marks a complete version
        (Path(tmp) / "card.json").write_text(card.model_dump_json(indent=2))
        uri = artifacts.put_dir(key, Path(tmp))
    artifacts.write_alias(dataset_key(card.author_id, card.kind), "latest", card.version)
    return SaveResult(version=card.version, uri=uri, written=True, card=card)


def load_card(
    artifacts: ArtifactStore, author_id: str, kind: DatasetKind, version: str | None = None
) -> DatasetCard | None:
    version = version or artifacts.read_alias(dataset_key(author_id, kind), "latest")
    if version is None:
        return None
    key = f"{dataset_key(author_id, kind, version)}/card.json"
    if not artifacts.exists(key):
        return None
    return DatasetCard.model_validate(artifacts.get_json(key))


def _failures_key(author_id: str, kind: DatasetKind) -> str:
    return f"{dataset_key(author_id, kind)}/runs/last_failures.json"


def save_failures(
    artifacts: ArtifactStore, author_id: str, kind: DatasetKind, failures: Sequence[DocumentFailure]
) -> None:
    """What the last build skipped (empty when nothing). Kept beside the versions, not in a card:
    a card is never rewritten, and a build that skipped a document must not let the next run
    reuse its version as 'inputs unchanged' - the document is retried until it goes through."""
    artifacts.put_json(_failures_key(author_id, kind), [f.model_dump(mode="json") for f in failures])


def load_failures(artifacts: ArtifactStore, author_id: str, kind: DatasetKind) -> list[DocumentFailure]:
    key = _failures_key(author_id, kind)
    if not artifacts.exists(key):
        return []
    data = artifacts.get_json(key)
    return [DocumentFailure.model_validate(f) for f in data] if isinstance(data, list) else []


def load_split(
    artifacts: ArtifactStore, author_id: str, kind: DatasetKind, version: str, split: SplitName
) -> list[BaseModel]:
    """Rows of one stored split, validated back into their typed model."""
    import pyarrow.parquet as pq

    directory = artifacts.get_dir(dataset_key(author_id, kind, version))
    # pyarrow directly: no HF cache directory, and an empty split reads as zero rows
    table = pq.read_table(directory / f"{split}.parquet")
    model = ROW_MODELS[kind]
    return [model.model_validate(r) for r in table.to_pylist()]


def push_to_hub(
    kind: DatasetKind,
    splits: Mapping[str, Sequence[BaseModel]],
    card: DatasetCard,
    token: str = "",
    repo_id: str = "",
) -> str | None:
    """Optional publication to the Hugging Face Hub (the artifact store's `hf_repo` and
    `hf_token`, from TWIN_HF_REPO and HF_TOKEN): one config per kind, the version in the commit
    message. Returns the repo id, or None when not configured. Failures are logged and
    swallowed: the artifact store is the source of truth."""
    if not token or not repo_id:
        return None
    try:
        dd = hfds.DatasetDict({s: to_hf(kind, splits.get(s, [])) for s in SPLITS})
        dd.push_to_hub(
            repo_id,
            config_name=f"{card.author_id}-{kind}",
            token=token,
            private=True,
            commit_message=f"{card.author_id} {kind} dataset {card.version}",
        )
        return repo_id
    except Exception as exc:  # network/auth problems must not lose the stored dataset
        log.warning("push to the Hugging Face Hub failed: %s", type(exc).__name__)
        return None
