"""The model registry: versioned models in the artifact store, with cards and aliases.

Layout: `models/<author>/<sft|dpo>/<version>/` holding `adapter/` (adapter or full weights +
tokenizer with its chat template), optional `merged/`, `model_card.json` and `README.md`;
aliases at `models/<author>/<kind>/aliases/{latest,approved,production}.json`.

WHO moves which alias: training moves `latest` (the newest registered version), the evaluation's
deploy gate moves `approved` (a version that passed it), and only a deployment moves
`production` (`set_production`), after the approved version answered a smoke request on the
serving target. The service serves `production`, so a model goes live only through that path.

WHY content-addressed versions: version = hash(dataset version, base model, resolved config,
code version [, parent model version]); identical inputs give the identical version, so a
re-run finds the version already registered and does not train again.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from twin_assets.domain.models import ModelCard, ModelKind
from twin_assets.domain.stores import ArtifactStore

LATEST_ALIAS = "latest"
APPROVED_ALIAS = "approved"
PRODUCTION_ALIAS = "production"

_CODE_FILES = ("base_model.py", "chat.py", "config.py", "runtime.py", "sft.py", "dpo.py")


def training_code_version() -> str:
    """Hash of the training code itself: a code change yields a new model version."""
    h = hashlib.sha256()
    here = Path(__file__).parent
    for name in _CODE_FILES:
        h.update(name.encode())
        h.update((here / name).read_bytes())
    return h.hexdigest()[:12]


def model_version(
    *, dataset_version: str, base_model: str, config: dict, code_version: str, parent: str = ""
) -> str:
    payload = json.dumps(
        {
            "dataset": dataset_version,
            "base": base_model,
            "config": config,
            "code": code_version,
            "parent": parent,
        },
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


LOSS_CURVE_FILE = "loss_curve.png"  # in the version directory, next to model_card.json


def model_key(author: str, kind: ModelKind, version: str | None = None) -> str:
    base = f"models/{author}/{kind}"
    return f"{base}/{version}" if version else base


def registered_card(artifacts: ArtifactStore, author: str, kind: ModelKind, version: str) -> ModelCard | None:
    key = f"{model_key(author, kind, version)}/model_card.json"
    if not artifacts.exists(key):
        return None
    return ModelCard.model_validate(artifacts.get_json(key))


def render_readme(card: ModelCard) -> str:
    warn = (
        f"> **{card.label}** - not a usable twin; it exists to exercise the pipeline.\n\n"
        if card.smoke_test
        else ""
    )
    hyper = "\n".join(f"| {k} | {v} |" for k, v in sorted(card.hyperparameters.items()))
    metrics = "\n".join(
        f"| {k} | {v:.4g} |" if isinstance(v, float) else f"| {k} | {v} |"
        for k, v in sorted(card.metrics.items())
    )
    return (
        f"# {card.author_id} twin - {card.kind.upper()} {card.version}\n\n{warn}"
        f"- Base model: `{card.base_model}` ({card.method})\n"
        f"- Dataset: {card.dataset_kind} `{card.dataset_version}`\n"
        f"- Parent: {json.dumps(card.parent_model) if card.parent_model else '-'}\n"
        f"- Code version: `{card.code_version}`\n- Trained on: {card.trained_on}\n"
        f"- Chat template sha256: `{card.chat_template_sha256}` (saved in `adapter/`; use it to prompt)\n\n"
        f"## Hyper-parameters\n\n| name | value |\n|---|---|\n{hyper}\n\n"
        f"## Metrics\n\n| name | value |\n|---|---:|\n{metrics}\n\n"
        f"## Lineage\n\n```json\n{json.dumps(card.lineage, indent=2)}\n```\n"
    )


def publish_model(
    artifacts: ArtifactStore,
    card: ModelCard,
    adapter_dir: Path,
    *,
    merged_dir: Path | None = None,
    promote_to_production: bool = False,
    extra_files: dict[str, bytes] | None = None,
) -> ModelCard:
    """Copy the model into the store, write card + README, then move the aliases.

    The card is written last among the version's files, so a version with a card is complete
    (`registered_card` is the "already trained" test). `extra_files` (name -> bytes, e.g. the
    loss-curve plot) are written into the version directory before the card, so they travel
    with the version to S3 and to every worker that downloads it.

    `promote_to_production` exists for tools that seed a registry (tests, a manual restore);
    the pipeline never sets it: its deployment asset moves `production` (`set_production`).
    """
    key = model_key(card.author_id, card.kind, card.version)
    artifacts.put_dir(f"{key}/adapter", adapter_dir)
    if merged_dir is not None:
        artifacts.put_dir(f"{key}/merged", merged_dir)
    for name, data in (extra_files or {}).items():
        artifacts.put_bytes(f"{key}/{name}", data)
    card = card.model_copy(update={"uri": artifacts.uri(key)})
    artifacts.put_bytes(f"{key}/README.md", render_readme(card).encode())
    artifacts.put_json(f"{key}/model_card.json", card.model_dump(mode="json"))
    promote(artifacts, card.author_id, card.kind, card.version, production=promote_to_production)
    return card


def promote(
    artifacts: ArtifactStore, author: str, kind: ModelKind, version: str, *, production: bool = False
) -> None:
    artifacts.write_alias(model_key(author, kind), LATEST_ALIAS, version)
    if production:
        set_production(artifacts, author, kind, version)


def set_production(artifacts: ArtifactStore, author: str, kind: ModelKind, version: str) -> None:
    """Point the author's `production` alias at a registered version: what the service serves.

    The service resolves `production` of dpo before sft, so an SFT version cannot replace a DPO
    one there (the DPO version would keep serving): that is refused rather than half-done.
    """
    if registered_card(artifacts, author, kind, version) is None:
        raise ValueError(f"{kind} version {version!r} is not registered for author {author!r}")
    if kind == "sft" and artifacts.read_alias(model_key(author, "dpo"), PRODUCTION_ALIAS):
        raise ValueError(
            f"author {author!r} serves a DPO version: an SFT version cannot take over production"
        )
    artifacts.write_alias(model_key(author, kind), PRODUCTION_ALIAS, version)


def production_version(artifacts: ArtifactStore, author: str) -> tuple[ModelKind, str] | None:
    """(kind, version) the author's twin serves: `production` of dpo, else of sft; None if none."""
    kinds: tuple[ModelKind, ...] = ("dpo", "sft")
    for kind in kinds:
        version = artifacts.read_alias(model_key(author, kind), PRODUCTION_ALIAS)
        if version:
            return kind, version
    return None


def approved_version(artifacts: ArtifactStore, author: str) -> tuple[ModelKind, str] | None:
    """(kind, version) the deploy gate approved last: `approved` of dpo, else of sft."""
    kinds: tuple[ModelKind, ...] = ("dpo", "sft")
    for kind in kinds:
        version = artifacts.read_alias(model_key(author, kind), APPROVED_ALIAS)
        if version:
            return kind, version
    return None


def model_dir(artifacts: ArtifactStore, author: str, kind: ModelKind, version: str) -> Path:
    """Local directory of a registered version's adapter + tokenizer (downloaded from S3 if needed)."""
    return artifacts.get_dir(f"{model_key(author, kind, version)}/adapter")
