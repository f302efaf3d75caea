"""Glue between `train_and_register` and `sagemaker_job`: one remote SFT/DPO run -> TrainingResult."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from twin_assets.domain.models import ModelKind
from twin_assets.training import sagemaker_job as smj
from twin_assets.training.protocols import SageMakerLauncher
from twin_assets.training.result import TrainingResult, result_from_json

_NOT_FOUND_CODES = {"ResourceNotFound", "ResourceNotFoundException"}
_NOT_FOUND_MESSAGE = re.compile(r"not found|could not find|does not exist", re.IGNORECASE)


def job_name_for(kind: ModelKind, author: str, version: str) -> str:
    """<=63 chars, [a-zA-Z0-9-]; deterministic per model version (a rerun reuses a finished job)."""
    slug = re.sub(r"[^a-zA-Z0-9-]", "-", author)[:28].strip("-")
    return f"twin-{kind}-{slug}-{version[:16]}"[:63]


def is_job_not_found(exc: BaseException) -> bool:
    """True only for DescribeTrainingJob's answer "no such job".

    AWS answers an unknown job with ValidationException "Requested resource not found." (moto:
    "Could not find training job ..."). Anything else (no credentials, an endpoint that cannot
    be reached, throttling, access denied) says nothing about the job: taking it for "not
    found" would launch a second, paid training job for a version that may be running.
    """
    from botocore.exceptions import ClientError

    if not isinstance(exc, ClientError):
        return False
    error = exc.response.get("Error", {})
    code, message = error.get("Code", ""), error.get("Message", "")
    if code in _NOT_FOUND_CODES:
        return True
    return code == "ValidationException" and bool(_NOT_FOUND_MESSAGE.search(message))


def describe_existing_job(sm: Any, job_name: str) -> dict | None:
    """The job's description, None when no job has this name; other errors propagate."""
    try:
        return sm.describe_training_job(TrainingJobName=job_name)
    except Exception as exc:
        if is_job_not_found(exc):
            return None
        raise


def train_on_sagemaker(
    launcher: SageMakerLauncher,
    *,
    kind: ModelKind,
    author: str,
    version: str,
    base_model: str,
    config: dict,
    dataset_path: Path,
    sft_dir: Path | None,
    work_dir: Path,
    log: Callable[[str], None],
) -> TrainingResult:
    sm, s3 = launcher.sagemaker_client(), launcher.s3_client()
    job = job_name_for(kind, author, version)
    existing = describe_existing_job(sm, job)
    if existing is None or existing["TrainingJobStatus"] in {"Failed", "Stopped"}:
        if existing is not None:  # names are unique forever: retry under a suffixed name
            job = f"{job[:52]}-{int(time.time())}"
        files: dict[str, dict[str, Path]] = {"train": {"train.parquet": dataset_path / "train.parquet"}}
        if (dataset_path / "test.parquet").exists():
            files["test"] = {"test.parquet": dataset_path / "test.parquet"}
        if sft_dir is not None:
            files["sft"] = {p.relative_to(sft_dir).as_posix(): p for p in sft_dir.rglob("*") if p.is_file()}
        channels = smj.upload_inputs(s3, launcher.s3_bucket, launcher.s3_prefix, job, files)
        request = smj.build_training_job_request(
            job_name=job,
            role_arn=launcher.role_arn,
            image_uri=launcher.image_uri,
            instance_type=launcher.instance_type,
            instance_count=launcher.instance_count,
            volume_size_gb=launcher.volume_size_gb,
            max_runtime_s=launcher.max_runtime_s,
            channels=channels,
            output_s3_uri=f"s3://{launcher.s3_bucket}/{launcher.s3_prefix.strip('/')}/{job}/output",
            hyperparameters={"kind": kind, "base_model": base_model, "config": json.dumps(config)},
            tags={"twin:author": author, "twin:kind": kind, "twin:model-version": version},
            use_spot=launcher.use_spot,
        )
        sm.create_training_job(**request)
        log(f"created SageMaker training job {job} on {launcher.instance_type}")
    desc = smj.wait_for_training_job(
        sm,
        job,
        report=log,
        logs=launcher.logs_client(),
        poll_interval_s=launcher.poll_interval_s,
        timeout_s=launcher.max_runtime_s + 3600,
    )
    out = work_dir / "sagemaker"
    payload = smj.fetch_model_artifact(s3, desc["ModelArtifacts"]["S3ModelArtifacts"], out)
    return result_from_json(payload, out / "adapter")
