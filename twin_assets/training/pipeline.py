"""Train-or-reuse, track and register one model version: what `sft_model`/`dpo_model` do.

Plain functions over the storage/tracking/launcher protocols (`domain.stores`,
`training.protocols`), so the assets stay thin and the flow is testable alone.
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from twin_assets.domain.models import ModelCard, ModelKind, training_dataset_kind
from twin_assets.domain.stores import ArtifactStore
from twin_assets.training import registry
from twin_assets.training.base_model import SMOLLM2_NAME, resolve_base_model
from twin_assets.training.config import DPOTrainingConfig, SFTTrainingConfig
from twin_assets.training.curves import loss_plot_png
from twin_assets.training.data import dataset_dir, dataset_uri, load_rows
from twin_assets.training.protocols import ExperimentTracker, SageMakerLauncher
from twin_assets.training.result import TrainingResult
from twin_assets.training.sagemaker_remote import train_on_sagemaker

SMOKE_LABEL = "smoke-test model"


def base_model_label(configured: str) -> str:
    """Stable identity of the base model for versions/cards (not a machine-specific path)."""
    return configured or SMOLLM2_NAME


@dataclass
class Outcome:
    card: ModelCard
    result: TrainingResult | None  # None when an identical version was already registered
    reused: bool
    tracking: dict


def _base_fingerprint(base_path: str, sagemaker: SageMakerLauncher | None, log: Callable[[str], None]) -> str:
    """Content fingerprint of the base checkpoint ("" where it cannot be had here).

    A hub model that only a SageMaker job will download (not cached here, hub unreachable)
    falls back to its name, and says so; in-process training cannot run without the files
    anyway, so there a missing checkpoint is an error."""
    from twin_assets.training.fingerprints import CheckpointNotFoundError, fingerprint_base_model

    try:
        return fingerprint_base_model(base_path).digest
    except CheckpointNotFoundError as exc:
        if sagemaker is not None and sagemaker.enabled:
            log(f"base model {base_path} not available here ({exc}); versioning by its name only")
            return ""
        raise


def _dpo_base_fingerprint(
    parent: ModelCard, base_path: str, sagemaker: SageMakerLauncher | None, log: Callable[[str], None]
) -> str:
    """The base weights a DPO version stands on, for its lineage (not its version: the SFT
    parent's version already includes them).

    Computed like SFT's, from the weights DPO loads now; where they cannot be had here (a
    SageMaker-only hub model) the SFT parent's record stands in. Weights that differ from the
    ones the parent was trained on are logged: the adapter then sits on another base.
    """
    recorded = str(parent.lineage.get("base_model", {}).get("fingerprint", "") or "")
    current = _base_fingerprint(base_path, sagemaker, log)
    if current and recorded and current != recorded:
        log(
            f"base model {base_path} changed since SFT {parent.version} was trained "
            f"(fingerprint {recorded[:16]} then, {current[:16]} now)"
        )
    return current or recorded


def train_and_register(
    *,
    kind: ModelKind,
    author: str,
    dataset_version: str,
    cfg: SFTTrainingConfig | DPOTrainingConfig,
    artifacts: ArtifactStore,
    tracker: ExperimentTracker,
    sagemaker: SageMakerLauncher | None = None,
    parent: ModelCard | None = None,
    log: Callable[[str], None] = print,
) -> Outcome:
    dataset_kind = training_dataset_kind(kind)
    base_cfg = cfg.base_model if isinstance(cfg, SFTTrainingConfig) else (parent.base_model if parent else "")
    if kind == "dpo" and parent is None:
        raise ValueError("dpo needs a registered SFT model version to start from")
    if (kind == "sft") != isinstance(cfg, SFTTrainingConfig):
        raise TypeError(
            f"{kind} needs a {'SFT' if kind == 'sft' else 'DPO'}TrainingConfig, got {type(cfg).__name__}"
        )
    base_label = base_model_label(base_cfg)
    base_path = resolve_base_model(base_cfg)
    if kind == "sft":
        base_fp = _base_fingerprint(base_path, sagemaker, log)
        # the weights' fingerprint, not just the name: a new checkpoint under the same name
        # or path (a re-export, a fine-tuned base swapped in) is a new model version
        version_base = f"{base_label}@{base_fp}" if base_fp else base_label
    else:
        base_fp = ""  # for the lineage only, computed below when this version is trained
        version_base = base_label  # the parent's version (below) already pins the base weights
    code_version = registry.training_code_version()
    cfg_dict = cfg.model_dump(mode="json")
    version = registry.model_version(
        dataset_version=dataset_version,
        base_model=version_base,
        config=cfg_dict,
        code_version=code_version,
        parent=parent.version if parent else "",
    )
    existing = registry.registered_card(artifacts, author, kind, version)
    if existing is not None:
        log(f"{kind} version {version} already registered for these inputs: not retraining")
        registry.promote(artifacts, author, kind, version, production=cfg.promote_to_production)
        return Outcome(existing, None, True, existing.tracking)

    if parent is not None:
        base_fp = _dpo_base_fingerprint(parent, base_path, sagemaker, log)
    train_rows, eval_rows, dcard = load_rows(artifacts, author, dataset_kind, dataset_version)
    log(
        f"{kind}: {len(train_rows)} train / {len(eval_rows)} eval rows of {dataset_kind} dataset {dataset_version}"
    )
    remote = sagemaker if sagemaker is not None and sagemaker.enabled else None
    work = Path(tempfile.mkdtemp(prefix=f"twin-{kind}-"))
    try:
        with tracker.start_run(
            name=f"{author}-{kind}-{version}",
            group=author,
            job_type=kind,
            config={
                **cfg_dict,
                "dataset_version": dataset_version,
                "base_model": base_label,
                "model_version": version,
                "code_version": code_version,
                "parent_model": parent.version if parent else None,
            },
            tags=[kind, author] + ([SMOKE_LABEL.replace(" ", "-")] if "smoke" in base_path else []),
        ) as run:
            if remote is not None:
                result = train_on_sagemaker(
                    remote,
                    kind=kind,
                    author=author,
                    version=version,
                    base_model=base_cfg,
                    config=cfg_dict
                    | ({"sft_learning_rate": parent.hyperparameters.get("learning_rate")} if parent else {}),
                    dataset_path=dataset_dir(artifacts, author, dataset_kind, dataset_version),
                    sft_dir=registry.model_dir(artifacts, author, "sft", parent.version) if parent else None,
                    work_dir=work,
                    log=log,
                )
            elif isinstance(cfg, SFTTrainingConfig):
                from twin_assets.training.sft import run_sft

                result = run_sft(
                    base_path,
                    train_rows,
                    eval_rows,
                    cfg,
                    work / "adapter",
                    report_to=run.report_to,
                    run_name=f"{author}-sft-{version}",
                )
            else:
                from twin_assets.training.dpo import run_dpo

                assert parent is not None  # checked above: dpo has an SFT parent
                result = run_dpo(
                    base_path,
                    registry.model_dir(artifacts, author, "sft", parent.version),
                    train_rows,
                    eval_rows,
                    cfg,
                    work / "adapter",
                    sft_learning_rate=parent.hyperparameters.get("learning_rate"),
                    report_to=run.report_to,
                    run_name=f"{author}-dpo-{version}",
                )
            run.log_summary({f"final/{k}": v for k, v in result.metrics.items()})
            run.log_curves(result.curves)
            tracking = run.as_metadata()
        merged = None
        if cfg.merge_weights and result.method != "full":
            from twin_assets.training.sft import merge_adapter

            merged = merge_adapter(base_path, result.model_dir, work / "merged")
        card = ModelCard(
            author_id=author,
            kind=kind,
            version=version,
            base_model=base_label,
            method=result.method,
            dataset_kind=dataset_kind,
            dataset_version=dataset_version,
            parent_model={"kind": "sft", "version": parent.version, "uri": parent.uri} if parent else {},
            hyperparameters=result.hyperparameters,
            metrics=result.metrics,
            code_version=code_version,
            lineage={
                "dataset": {
                    "kind": dataset_kind,
                    "version": dataset_version,
                    "uri": dataset_uri(artifacts, author, dataset_kind, dataset_version),
                    "generator": dcard.generator if dcard else "",
                    "source_hashes": len(dcard.source_hashes) if dcard else 0,
                },
                "base_model": {
                    "configured": base_cfg or SMOLLM2_NAME,
                    "resolved": base_path,
                    "fingerprint": base_fp,
                },
                "parent": parent.version if parent else None,
            },
            chat_template_sha256=hashlib.sha256((result.chat_template or "").encode()).hexdigest(),
            smoke_test=result.smoke_test,
            label=f"{SMOKE_LABEL} (tiny random-weights Llama)" if result.smoke_test else "",
            tracking=tracking,
            trained_on="sagemaker" if remote is not None else _device_name(),
            created_at=datetime.now(UTC).isoformat(),
        )
        extra = {}
        if result.curves:
            extra[registry.LOSS_CURVE_FILE] = loss_plot_png(
                result.curves, f"{kind.upper()} {author} {version}"
            )
        card = registry.publish_model(
            artifacts,
            card,
            result.model_dir,
            merged_dir=merged,
            promote_to_production=cfg.promote_to_production,
            extra_files=extra,
        )
        return Outcome(card, result, False, tracking)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _device_name() -> str:
    from twin_assets.training.runtime import device_info

    return device_info().name
