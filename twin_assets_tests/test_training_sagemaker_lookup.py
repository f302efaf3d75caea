"""Looking up an earlier training job: only DescribeTrainingJob's "no such job" means "launch one".

A credentials, network or permission error used to be taken for "not found", which launched a
second (paid) training job for a model version whose job may well be running.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError

from resources.sagemaker import SageMakerResource
from twin_assets.training import sagemaker_job as smj
from twin_assets.training.protocols import SageMakerLauncher
from twin_assets.training.sagemaker_remote import is_job_not_found, job_name_for, train_on_sagemaker


def _client_error(code: str, message: str) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": message}}, "DescribeTrainingJob")


class _FakeSageMaker:
    def __init__(self, describe_error: Exception) -> None:
        self.describe_error = describe_error
        self.created: list[dict] = []

    def describe_training_job(self, TrainingJobName: str) -> dict:
        raise self.describe_error

    def create_training_job(self, **request: Any) -> None:
        self.created.append(request)


class _FakeS3:
    def __init__(self) -> None:
        self.uploaded: list[str] = []

    def upload_file(self, path: str, bucket: str, key: str) -> None:
        self.uploaded.append(key)


@dataclass
class _Launcher:
    """Satisfies `SageMakerLauncher` with in-memory clients."""

    sm: Any
    s3: Any = field(default_factory=_FakeS3)
    enabled: bool = True
    role_arn: str = "arn:aws:iam::123456789012:role/twin-train"
    image_uri: str = "123456789012.dkr.ecr.us-east-1.amazonaws.com/twin-train:latest"
    instance_type: str = "ml.g5.2xlarge"
    instance_count: int = 1
    volume_size_gb: int = 50
    max_runtime_s: int = 3600
    s3_bucket: str = "twin-bucket"
    s3_prefix: str = "llm-twin/sagemaker"
    poll_interval_s: float = 0.0
    use_spot: bool = False

    def sagemaker_client(self) -> Any:
        return self.sm

    def s3_client(self) -> Any:
        return self.s3

    def logs_client(self) -> Any:
        return None


def _dataset(tmp_path: Path) -> Path:
    data = tmp_path / "ds"
    data.mkdir()
    (data / "train.parquet").write_bytes(b"PAR1")
    return data


def _train(launcher: SageMakerLauncher, tmp_path: Path):
    return train_on_sagemaker(
        launcher,
        kind="sft",
        author="maya-kowalski",
        version="0123456789abcdef",
        base_model="",
        config={"max_steps": 1},
        dataset_path=_dataset(tmp_path),
        sft_dir=None,
        work_dir=tmp_path / "work",
        log=lambda message: None,
    )


@pytest.mark.parametrize(
    "error",
    [
        NoCredentialsError(),
        EndpointConnectionError(endpoint_url="https://api.sagemaker.us-east-1.amazonaws.com"),
        _client_error("AccessDeniedException", "not authorized to perform sagemaker:DescribeTrainingJob"),
        _client_error("ThrottlingException", "Rate exceeded"),
        _client_error("ValidationException", "1 validation error detected: Value at 'trainingJobName'"),
    ],
    ids=["no-credentials", "no-network", "access-denied", "throttled", "other-validation-error"],
)
def test_a_failed_lookup_propagates_and_launches_nothing(tmp_path, error):
    sm = _FakeSageMaker(error)
    launcher = _Launcher(sm)
    with pytest.raises(type(error)):
        _train(launcher, tmp_path)
    assert sm.created == []  # no second training job
    assert launcher.s3.uploaded == []  # not even its inputs


@pytest.mark.parametrize(
    ("code", "message", "not_found"),
    [
        ("ValidationException", "Requested resource not found.", True),  # AWS
        ("ValidationException", "Could not find training job 'arn:aws:sagemaker:...'.", True),  # moto
        ("ResourceNotFound", "Training job does not exist", True),
        ("ValidationException", "1 validation error detected", False),
        ("AccessDeniedException", "not found in policy", False),
    ],
)
def test_only_describe_not_found_counts_as_not_found(code, message, not_found):
    assert is_job_not_found(_client_error(code, message)) is not_found
    assert is_job_not_found(NoCredentialsError()) is False


def test_a_job_that_does_not_exist_is_created(moto_url, monkeypatch, tmp_path):
    """Against moto's real "not found" answer: the job is created, then waited for and fetched."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    res = SageMakerResource(
        role_arn="arn:aws:iam::123456789012:role/twin-train",
        image_uri="123456789012.dkr.ecr.us-east-1.amazonaws.com/twin-train:latest",
        s3_bucket="twin-lookup-bucket",
        endpoint_url=moto_url,
        poll_interval_s=0,
    )
    res.s3_client().create_bucket(Bucket="twin-lookup-bucket")
    fetched: list[str] = []

    def fake_fetch(s3, uri: str, target: Path) -> dict:  # moto runs no container: no artifact
        fetched.append(uri)
        return {"kind": "sft", "metrics": {"train_loss": 1.0}, "method": "lora"}

    monkeypatch.setattr(smj, "fetch_model_artifact", fake_fetch)
    result = _train(res, tmp_path)
    job = job_name_for("sft", "maya-kowalski", "0123456789abcdef")
    assert (
        res.sagemaker_client().describe_training_job(TrainingJobName=job)["TrainingJobStatus"] == "Completed"
    )
    assert len(fetched) == 1 and result.metrics == {"train_loss": 1.0}
