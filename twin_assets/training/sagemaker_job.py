"""Running `sft`/`dpo` training as a SageMaker training job, reported back to Dagster.

Flow: package this project's source + the dataset files -> upload to S3 -> `CreateTrainingJob`
whose container runs `python -m twin_assets.training.entrypoint sagemaker` (the same functions
`sft_model`/`dpo_model` call locally) -> poll `DescribeTrainingJob`, forwarding status
transitions and CloudWatch log lines -> on Completed download `model.tar.gz` (adapter +
tokenizer + result.json) for registration; Failed/Stopped raise with the job's reason.

Verified against moto (tests): the request is accepted by CreateTrainingJob, input upload,
the describe/poll loop with status transitions, Failed/Stopped handling, and artifact download
and extraction. Verified only on paper (no AWS account here): that a real training image
with this project's dependencies runs the entry point (moto does not run containers), real
CloudWatch log stream names (`<job>/algo-1-<ts>`), spot/checkpoint behaviour, and IAM
permissions for the role (S3 read/write on the prefix, CloudWatch Logs, ECR pull).
"""

from __future__ import annotations

import json
import os
import shutil
import tarfile
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from twin_assets.paths import PROJECT_ROOT

TERMINAL = {"Completed", "Failed", "Stopped"}
LOG_GROUP = "/aws/sagemaker/TrainingJobs"


class TrainingJobError(RuntimeError):
    pass


def package_source(dest: Path) -> Path:
    """Write a tar.gz of the importable project code (`twin_assets`, `resources`) to `dest`.

    Written to a file, not memory, so that `upload_file` can stream it (multipart when big).
    """
    with tarfile.open(dest, mode="w:gz") as tar:
        for pkg in ("twin_assets", "resources"):
            for path in sorted((PROJECT_ROOT / pkg).rglob("*.py")):
                if "__pycache__" in path.parts or "sample_data" in path.parts:
                    continue
                tar.add(path, arcname=path.relative_to(PROJECT_ROOT).as_posix())
    return dest


def upload_inputs(
    s3, bucket: str, prefix: str, job_name: str, files: dict[str, dict[str, Path]]
) -> dict[str, str]:
    """Upload channel files (channel -> {name: local path}) plus the code; channel -> S3 URI.

    Every upload goes through `upload_file` (boto3's managed transfer: streamed from disk,
    multipart above its threshold), so dataset and adapter size never meets process memory.
    """
    uris: dict[str, str] = {}
    base = f"{prefix.strip('/')}/{job_name}/input"
    for channel, named in files.items():
        for name, path in named.items():
            s3.upload_file(str(path), bucket, f"{base}/{channel}/{name}")
        uris[channel] = f"s3://{bucket}/{base}/{channel}/"
    with tempfile.TemporaryDirectory(prefix="twin-src-") as tmp:
        source = package_source(Path(tmp) / "source.tar.gz")
        s3.upload_file(str(source), bucket, f"{base}/code/source.tar.gz")
    uris["code"] = f"s3://{bucket}/{base}/code/"
    return uris


def build_training_job_request(
    *,
    job_name: str,
    role_arn: str,
    image_uri: str,
    instance_type: str,
    instance_count: int,
    volume_size_gb: int,
    max_runtime_s: int,
    channels: dict[str, str],
    output_s3_uri: str,
    hyperparameters: dict[str, str],
    tags: dict[str, str] | None = None,
    use_spot: bool = False,
) -> dict:
    """The CreateTrainingJob request: the container unpacks the code channel and runs the entry point."""
    command = (
        "set -e; mkdir -p /opt/twin && tar xzf /opt/ml/input/data/code/source.tar.gz -C /opt/twin "
        "&& cd /opt/twin && PYTHONPATH=/opt/twin python -m twin_assets.training.entrypoint sagemaker"
    )
    request = {
        "TrainingJobName": job_name,
        "RoleArn": role_arn,
        "AlgorithmSpecification": {
            "TrainingImage": image_uri,
            "TrainingInputMode": "File",
            "ContainerEntrypoint": ["bash", "-c"],
            "ContainerArguments": [command],
            "EnableSageMakerMetricsTimeSeries": False,
            "MetricDefinitions": [
                {"Name": "train_loss", "Regex": r"'loss': '([0-9.e-]+)'"},
                {"Name": "eval_loss", "Regex": r"'eval_loss': '([0-9.e-]+)'"},
            ],
        },
        "HyperParameters": {k: str(v) for k, v in hyperparameters.items()},
        "InputDataConfig": [
            {
                "ChannelName": name,
                "DataSource": {
                    "S3DataSource": {
                        "S3DataType": "S3Prefix",
                        "S3Uri": uri,
                        "S3DataDistributionType": "FullyReplicated",
                    }
                },
                "InputMode": "File",
            }
            for name, uri in sorted(channels.items())
        ],
        "OutputDataConfig": {"S3OutputPath": output_s3_uri},
        "ResourceConfig": {
            "InstanceType": instance_type,
            "InstanceCount": instance_count,
            "VolumeSizeInGB": volume_size_gb,
        },
        "StoppingCondition": {"MaxRuntimeInSeconds": max_runtime_s},
        "Environment": {"HF_HUB_DISABLE_TELEMETRY": "1", "WANDB_MODE": "offline"},
        "Tags": [{"Key": k, "Value": v} for k, v in sorted((tags or {}).items())],
    }
    if use_spot:
        request["EnableManagedSpotTraining"] = True
        request["StoppingCondition"]["MaxWaitTimeInSeconds"] = max_runtime_s * 2
    return request


@dataclass
class _LogCursor:
    tokens: dict[str, str]


def _new_log_lines(logs, job_name: str, cursor: _LogCursor) -> list[str]:
    """New CloudWatch lines of the job's streams; empty when logs are unavailable."""
    if logs is None:
        return []
    lines: list[str] = []
    try:
        streams = logs.describe_log_streams(logGroupName=LOG_GROUP, logStreamNamePrefix=f"{job_name}/")
    except Exception:  # group not created yet, or no permission: logs are best effort
        return []
    for stream in streams.get("logStreams", []):
        name = stream["logStreamName"]
        kwargs = {"logGroupName": LOG_GROUP, "logStreamName": name, "startFromHead": True}
        if name in cursor.tokens:
            kwargs["nextToken"] = cursor.tokens[name]
        try:
            resp = logs.get_log_events(**kwargs)
        except Exception:
            continue
        cursor.tokens[name] = resp.get("nextForwardToken", cursor.tokens.get(name, ""))
        lines.extend(e["message"] for e in resp.get("events", []))
    return lines


def wait_for_training_job(
    sm,
    job_name: str,
    *,
    report: Callable[[str], None],
    logs=None,
    poll_interval_s: float = 30.0,
    timeout_s: float | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> dict:
    """Poll until terminal; report status/secondary-status transitions and log lines.

    Returns the final description on Completed; raises TrainingJobError on Failed/Stopped or timeout.
    """
    cursor = _LogCursor({})
    last: tuple[str, str] | None = None
    started = time.monotonic()
    while True:
        desc = sm.describe_training_job(TrainingJobName=job_name)
        state = (desc["TrainingJobStatus"], desc.get("SecondaryStatus", ""))
        if state != last:
            report(f"SageMaker job {job_name}: {state[0]} / {state[1]}")
            last = state
        for line in _new_log_lines(logs, job_name, cursor):
            report(f"[{job_name}] {line}")
        if state[0] in TERMINAL:
            break
        if timeout_s is not None and time.monotonic() - started > timeout_s:
            raise TrainingJobError(f"SageMaker job {job_name} still {state[0]} after {timeout_s}s")
        sleep(poll_interval_s)
    if state[0] == "Failed":
        raise TrainingJobError(
            f"SageMaker job {job_name} failed: {desc.get('FailureReason', 'no reason given')}"
        )
    if state[0] == "Stopped":
        raise TrainingJobError(f"SageMaker job {job_name} was stopped before completing")
    return desc


def _check_member(member: tarfile.TarInfo) -> None:
    """Refuse names that could land outside the target, before `filter="data"` sees them.

    The data filter alone would strip a leading "/" and extract `/etc/x` as `etc/x`; an
    artifact carrying such names was not written by our entry point, so it is refused whole.
    """
    name = member.name
    if name.startswith("/") or PurePosixPath(name).is_absolute() or Path(name).is_absolute():
        raise TrainingJobError(f"absolute path {name!r}")
    if ".." in PurePosixPath(name).parts:
        raise TrainingJobError(f"parent-directory path {name!r}")
    if member.issym() or member.islnk():
        link = PurePosixPath(member.linkname)
        if link.is_absolute() or ".." in link.parts:
            raise TrainingJobError(f"link {name!r} -> {member.linkname!r} leaves the artifact")
    if not (member.isreg() or member.isdir() or member.issym() or member.islnk()):
        raise TrainingJobError(f"special file {name!r}")


def extract_tar_safely(archive: Path, target_dir: Path) -> None:
    """Unpack a tar(.gz) from disk, streamed member by member, into `target_dir`.

    Each member is checked (`_check_member`) before it is extracted with tarfile's "data"
    filter (Python >= 3.11.4), which also rejects links resolving outside the target and
    drops ownership and unsafe permission bits. One decompression pass; on a refusal the
    members already written stay, so callers unpack into a staging directory they discard.
    """
    if not hasattr(tarfile, "data_filter"):  # pragma: no cover - Python < 3.11.4
        raise TrainingJobError(
            "unpacking model artifacts safely needs Python >= 3.11.4 (tarfile filter='data')"
        )
    with tarfile.open(archive, mode="r:*") as tar:
        for member in tar:
            _check_member(member)
            tar.extract(member, target_dir, filter="data")


def fetch_model_artifact(s3, s3_uri: str, target_dir: Path) -> dict:
    """Download and unpack the job's model.tar.gz into `target_dir`; return its result.json.

    Streamed end to end: boto3's managed download writes the object to a temp file next to
    the target (ranged GETs, never the whole body in memory), the archive is unpacked from
    disk into a temp directory, and that directory is renamed into place only when complete,
    so a failed or refused artifact leaves `target_dir` as it was.
    """
    if not s3_uri.startswith("s3://") or "/" not in s3_uri[5:]:
        raise TrainingJobError(f"unexpected model artifact URI: {s3_uri}")
    bucket, key = s3_uri[5:].split("/", 1)
    target_dir = Path(target_dir)
    target_dir.parent.mkdir(parents=True, exist_ok=True)
    size = s3.head_object(Bucket=bucket, Key=key)["ContentLength"]
    free = shutil.disk_usage(target_dir.parent).free
    if size > free:
        raise TrainingJobError(
            f"model artifact {s3_uri} is {size} bytes, only {free} free in {target_dir.parent}"
        )
    staging = Path(tempfile.mkdtemp(prefix=f".{target_dir.name}.", dir=target_dir.parent))
    try:
        archive = staging / "model.tar.gz"
        s3.download_file(bucket, key, str(archive))
        unpacked = staging / "unpacked"
        unpacked.mkdir()
        try:
            extract_tar_safely(archive, unpacked)
        except (TrainingJobError, tarfile.TarError, EOFError) as exc:  # EOFError: truncated gzip
            raise TrainingJobError(f"refusing to unpack model artifact {s3_uri}: {exc}") from exc
        archive.unlink()
        result = unpacked / "result.json"
        if not result.is_file():
            raise TrainingJobError(
                f"model artifact {s3_uri} has no result.json: not produced by the twin entry point"
            )
        payload = json.loads(result.read_text())
        if target_dir.exists():  # a previous fetch: swap it out, then drop it
            old = staging / "previous"
            os.replace(target_dir, old)
        os.replace(unpacked, target_dir)
        return payload
    finally:
        shutil.rmtree(staging, ignore_errors=True)
