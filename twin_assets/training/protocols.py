"""The services training is written against, besides `domain.stores.ArtifactStore`.

WHY protocols: the training code must run where Dagster is not installed (the SageMaker entry
point) and must not know which resource classes the orchestrator wires in. `resources/`
implements these structurally (`SageMakerResource`, `WandbResource`); tests hand in fakes.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Any, Protocol


class SageMakerLauncher(Protocol):
    """Where a remote training job runs and the boto3 clients to run it (see `sagemaker_job`)."""

    @property
    def enabled(self) -> bool: ...

    @property
    def role_arn(self) -> str: ...

    @property
    def image_uri(self) -> str: ...

    @property
    def instance_type(self) -> str: ...

    @property
    def instance_count(self) -> int: ...

    @property
    def volume_size_gb(self) -> int: ...

    @property
    def max_runtime_s(self) -> int: ...

    @property
    def s3_bucket(self) -> str: ...

    @property
    def s3_prefix(self) -> str: ...

    @property
    def poll_interval_s(self) -> float: ...

    @property
    def use_spot(self) -> bool: ...

    def sagemaker_client(self) -> Any: ...

    def s3_client(self) -> Any: ...

    def logs_client(self) -> Any: ...


class ExperimentRun(Protocol):
    """One tracked run: trl reports steps into it (`report_to`), we add summary and curves."""

    @property
    def report_to(self) -> list[str]: ...

    def log_summary(self, metrics: dict[str, Any]) -> None: ...

    def log_curves(self, curves: dict[str, list[tuple[int, float]]]) -> None: ...

    def as_metadata(self) -> dict[str, str]: ...


class ExperimentTracker(Protocol):
    """Opens a run for the duration of a training; a failed training marks the run failed."""

    def start_run(
        self, *, name: str, group: str, job_type: str, config: dict[str, Any], tags: list[str] | None = None
    ) -> AbstractContextManager[ExperimentRun]: ...
