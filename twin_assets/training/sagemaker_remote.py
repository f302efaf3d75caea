"""Glue between `train_and_register` and `sagemaker_job`: one remote SFT/DPO run -> TrainingResult."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Callable

from resources.sagemaker import SageMakerResource
from twin_assets.training import sagemaker_job as smj
from twin_assets.training.sft import TrainingResult


def job_name_for(kind: str, author: str, version: str) -> str:
    """<=63 chars, [a-zA-Z0-9-]; deterministic per model version (a rerun reuses a finished job)."""
    slug = re.sub(r"[^a-zA-Z0-9-]", "-", author)[:28].strip("-")
    return f"twin-{kind}-{slug}-{version[:16]}"[:63]


def train_on_sagemaker(
    sm_res: SageMakerResource, *, kind: str, author: str, version: str, base_model: str, config: dict,
    dataset_path: Path, sft_dir: Path | None, work_dir: Path, log: Callable[[str], None],
) -> TrainingResult:
    from twin_assets.training.pipeline import result_from_json

    sm, s3 = sm_res.sagemaker_client(), sm_res.s3_client()
    job = job_name_for(kind, author, version)
    try:
        existing = sm.describe_training_job(TrainingJobName=job)
    except Exception:  # ValidationException "Requested resource not found" (AWS and moto)
        existing = None
    if existing is None or existing["TrainingJobStatus"] in {"Failed", "Stopped"}:
        if existing is not None:  # names are unique forever: retry under a suffixed name
            job = f"{job[:52]}-{int(time.time())}"
        files: dict[str, dict[str, Path]] = {
            "train": {"train.parquet": dataset_path / "train.parquet"}}
        if (dataset_path / "test.parquet").exists():
            files["test"] = {"test.parquet": dataset_path / "test.parquet"}
        if sft_dir is not None:
            files["sft"] = {p.relative_to(sft_dir).as_posix(): p for p in sft_dir.rglob("*") if p.is_file()}
        channels = smj.upload_inputs(s3, sm_res.s3_bucket, sm_res.s3_prefix, job, files)
        request = smj.build_training_job_request(
            job_name=job, role_arn=sm_res.role_arn, image_uri=sm_res.image_uri,
            instance_type=sm_res.instance_type, instance_count=sm_res.instance_count,
            volume_size_gb=sm_res.volume_size_gb, max_runtime_s=sm_res.max_runtime_s,
            channels=channels,
            output_s3_uri=f"s3://{sm_res.s3_bucket}/{sm_res.s3_prefix.strip('/')}/{job}/output",
            hyperparameters={"kind": kind, "base_model": base_model, "config": json.dumps(config)},
            tags={"twin:author": author, "twin:kind": kind, "twin:model-version": version},
            use_spot=sm_res.use_spot,
        )
        sm.create_training_job(**request)
        log(f"created SageMaker training job {job} on {sm_res.instance_type}")
    desc = smj.wait_for_training_job(sm, job, report=log, logs=sm_res.logs_client(),
                                     poll_interval_s=sm_res.poll_interval_s,
                                     timeout_s=sm_res.max_runtime_s + 3600)
    out = work_dir / "sagemaker"
    payload = smj.fetch_model_artifact(s3, desc["ModelArtifacts"]["S3ModelArtifacts"], out)
    return result_from_json(payload, out / "adapter")
