"""SageMaker path against a moto server on 127.0.0.1: request accepted, statuses handled."""

from __future__ import annotations

import io
import json
import tarfile

import pytest

from resources.sagemaker import SageMakerResource
from twin_assets.training import sagemaker_job as smj


@pytest.fixture
def sm_res(moto_url, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    res = SageMakerResource(
        role_arn="arn:aws:iam::123456789012:role/twin-train",
        image_uri="123456789012.dkr.ecr.us-east-1.amazonaws.com/twin-train:latest",
        instance_type="ml.g4dn.xlarge",
        s3_bucket="twin-bucket",
        endpoint_url=moto_url,
        poll_interval_s=0,
    )
    res.s3_client().create_bucket(Bucket="twin-bucket")
    return res


def test_create_training_job_request_and_completion(sm_res, tmp_path):
    from twin_assets.training.sagemaker_remote import job_name_for

    data = tmp_path / "ds"
    data.mkdir()
    (data / "train.parquet").write_bytes(b"PAR1")
    s3, sm = sm_res.s3_client(), sm_res.sagemaker_client()
    job = job_name_for("sft", "maya-kowalski", "0123456789abcdef")
    channels = smj.upload_inputs(
        s3, sm_res.s3_bucket, sm_res.s3_prefix, job, {"train": {"train.parquet": data / "train.parquet"}}
    )
    code = s3.get_object(Bucket="twin-bucket", Key=f"{sm_res.s3_prefix}/{job}/input/code/source.tar.gz")[
        "Body"
    ].read()
    with tarfile.open(fileobj=io.BytesIO(code)) as archive:
        names = archive.getnames()
    assert "twin_assets/training/entrypoint.py" in names and "resources/sagemaker.py" in names
    request = smj.build_training_job_request(
        job_name=job,
        role_arn=sm_res.role_arn,
        image_uri=sm_res.image_uri,
        instance_type=sm_res.instance_type,
        instance_count=1,
        volume_size_gb=50,
        max_runtime_s=3600,
        channels=channels,
        output_s3_uri=f"s3://twin-bucket/{sm_res.s3_prefix}/{job}/output",
        hyperparameters={"kind": "sft", "base_model": "", "config": json.dumps({"max_steps": 3})},
        tags={"twin:author": "maya-kowalski"},
    )
    assert (
        "twin_assets.training.entrypoint sagemaker"
        in request["AlgorithmSpecification"]["ContainerArguments"][0]
    )
    sm.create_training_job(**request)
    desc = sm.describe_training_job(TrainingJobName=job)
    assert desc["AlgorithmSpecification"]["TrainingImage"] == sm_res.image_uri
    assert desc["ResourceConfig"]["InstanceType"] == "ml.g4dn.xlarge"
    assert json.loads(desc["HyperParameters"]["config"]) == {"max_steps": 3}
    assert {c["ChannelName"] for c in desc["InputDataConfig"]} == {"train", "code"}
    reports: list[str] = []
    final = smj.wait_for_training_job(
        sm, job, report=reports.append, logs=sm_res.logs_client(), poll_interval_s=0
    )
    assert final["TrainingJobStatus"] == "Completed"
    assert any("Completed" in r for r in reports)
    # the container's model.tar.gz (as the entry point writes it) is fetched and unpacked
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        payload = json.dumps(
            {
                "kind": "sft",
                "metrics": {"train_loss": 1.5},
                "curves": {"train_loss": [[1, 1.5]]},
                "hyperparameters": {"lora_r": 8},
                "chat_template": "T",
                "smoke_test": False,
                "method": "lora",
            }
        ).encode()
        info = tarfile.TarInfo("result.json")
        info.size = len(payload)
        tar.addfile(info, io.BytesIO(payload))
    artifact = final["ModelArtifacts"]["S3ModelArtifacts"]
    bucket, key = artifact[5:].split("/", 1)
    s3.put_object(Bucket=bucket, Key=key, Body=buf.getvalue())
    result = smj.fetch_model_artifact(s3, artifact, tmp_path / "out")
    assert result["metrics"]["train_loss"] == 1.5


class _FakeSM:
    """Status sequences moto cannot produce (it completes jobs at once)."""

    def __init__(self, states):
        self.states = list(states)

    def describe_training_job(self, TrainingJobName):
        status, secondary, *reason = self.states.pop(0) if len(self.states) > 1 else self.states[0]
        return {
            "TrainingJobName": TrainingJobName,
            "TrainingJobStatus": status,
            "SecondaryStatus": secondary,
            **({"FailureReason": reason[0]} if reason else {}),
        }


def test_status_transitions_failed_and_stopped():
    reports: list[str] = []
    sm = _FakeSM(
        [
            ("InProgress", "Starting"),
            ("InProgress", "Starting"),
            ("InProgress", "Training"),
            ("Failed", "Failed", "AlgorithmError: CUDA out of memory"),
        ]
    )
    with pytest.raises(smj.TrainingJobError, match="CUDA out of memory"):
        smj.wait_for_training_job(sm, "j", report=reports.append, poll_interval_s=0, sleep=lambda s: None)
    assert [r.split(": ", 1)[1] for r in reports] == [
        "InProgress / Starting",
        "InProgress / Training",
        "Failed / Failed",
    ]
    with pytest.raises(smj.TrainingJobError, match="stopped"):
        smj.wait_for_training_job(
            _FakeSM([("Stopped", "Stopped")]), "j", report=reports.append, sleep=lambda s: None
        )


def _targz(members: list[tuple[tarfile.TarInfo, bytes | None]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for info, data in members:
            if data is not None:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def _file(name: str, data: bytes) -> tuple[tarfile.TarInfo, bytes]:
    return tarfile.TarInfo(name), data


RESULT = json.dumps({"kind": "sft", "metrics": {"train_loss": 1.25}, "method": "lora"}).encode()


def test_model_artifact_is_streamed_to_disk_never_read_whole(sm_res, tmp_path, monkeypatch):
    """A 12 MiB artifact (above boto3's multipart threshold) arrives through ranged, chunked
    reads: any read of a whole S3 body (`.read()` with no size) or a big block fails the test."""
    import os

    from botocore.response import StreamingBody

    s3 = sm_res.s3_client()
    weights = os.urandom(12 * 1024 * 1024)  # incompressible: the .tar.gz stays ~12 MiB
    archive = tmp_path / "model.tar.gz"
    archive.write_bytes(
        _targz([_file("result.json", RESULT), _file("adapter/adapter_model.safetensors", weights)])
    )
    s3.upload_file(str(archive), "twin-bucket", "jobs/j1/output/model.tar.gz")

    cap = 8 * 1024 * 1024
    reads: list[int] = []
    real_read = StreamingBody.read

    def capped_read(self, amt=None):
        if amt is None or amt > cap:
            raise AssertionError(f"S3 body read with amt={amt}: the artifact would be held in memory")
        reads.append(amt)
        return real_read(self, amt)

    monkeypatch.setattr(StreamingBody, "read", capped_read)
    target = tmp_path / "out" / "sagemaker"
    result = smj.fetch_model_artifact(s3, "s3://twin-bucket/jobs/j1/output/model.tar.gz", target)
    assert result["metrics"]["train_loss"] == 1.25
    assert (target / "adapter" / "adapter_model.safetensors").read_bytes() == weights
    assert len(reads) > 2  # many bounded chunks, not one body
    assert sorted(p.name for p in target.parent.iterdir()) == ["sagemaker"]  # no staging left behind
    # a second fetch replaces the first whole (no stale files from the previous artifact)
    (target / "stale.txt").write_text("old")
    s3.put_object(
        Bucket="twin-bucket", Key="jobs/j2/output/model.tar.gz", Body=_targz([_file("result.json", RESULT)])
    )
    smj.fetch_model_artifact(s3, "s3://twin-bucket/jobs/j2/output/model.tar.gz", target)
    assert sorted(p.name for p in target.iterdir()) == ["result.json"]


def _link(name: str, target: str, *, hard: bool = False) -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type = tarfile.LNKTYPE if hard else tarfile.SYMTYPE
    info.linkname = target
    return info, None


@pytest.mark.parametrize(
    "evil, why",
    [
        ([_file("../evil", b"pwned")], "parent-directory path '../evil'"),
        ([_file("adapter/../../evil", b"pwned")], "parent-directory path"),
        ([_file("/tmp/evil", b"pwned")], "absolute path '/tmp/evil'"),
        ([_link("adapter/escape", "../../../etc/passwd")], "leaves the artifact"),
        ([_link("adapter/abs", "/etc/passwd", hard=True)], "leaves the artifact"),
    ],
)
def test_malicious_model_artifact_is_refused(sm_res, tmp_path, evil, why):
    s3 = sm_res.s3_client()
    s3.put_object(
        Bucket="twin-bucket", Key="jobs/evil/model.tar.gz", Body=_targz([_file("result.json", RESULT), *evil])
    )
    target = tmp_path / "work" / "sagemaker"
    with pytest.raises(
        smj.TrainingJobError,
        match=f"refusing to unpack model artifact s3://twin-bucket/jobs/evil/model.tar.gz: .*{why}",
    ):
        smj.fetch_model_artifact(s3, "s3://twin-bucket/jobs/evil/model.tar.gz", target)
    assert not target.exists() and list((tmp_path / "work").iterdir()) == []  # staging removed
    assert not (tmp_path / "evil").exists() and not (tmp_path / "work" / "evil").exists()


def test_special_files_refused_internal_links_allowed(tmp_path):
    fifo = tarfile.TarInfo("adapter/pipe")
    fifo.type = tarfile.FIFOTYPE
    archive = tmp_path / "a.tar.gz"
    archive.write_bytes(_targz([_file("result.json", RESULT), (fifo, None)]))
    with pytest.raises(smj.TrainingJobError, match="special file 'adapter/pipe'"):
        smj.extract_tar_safely(archive, tmp_path / "a")
    ok = tmp_path / "b.tar.gz"  # a tokenizer file linked within the artifact is legitimate
    ok.write_bytes(
        _targz([_file("adapter/tokenizer.json", b"{}"), _link("adapter/tok.json", "tokenizer.json")])
    )
    (tmp_path / "b").mkdir()
    smj.extract_tar_safely(ok, tmp_path / "b")
    assert (tmp_path / "b" / "adapter" / "tok.json").read_bytes() == b"{}"
