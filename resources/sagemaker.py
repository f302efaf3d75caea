"""Amazon SageMaker training jobs through plain boto3 (no Dagster Pipes client exists for it).

Enabled when a role, an image and an S3 bucket are configured (TWIN_SAGEMAKER_ROLE,
TWIN_SAGEMAKER_IMAGE, TWIN_SAGEMAKER_BUCKET); otherwise training runs in the Dagster process.
`endpoint_url` points every client at an emulator (moto) in tests.

Implements `twin_assets.training.protocols.SageMakerLauncher`, the interface the training code
takes (it never imports this class).
"""

from __future__ import annotations

import dagster as dg
from pydantic import Field


class SageMakerResource(dg.ConfigurableResource):
    """Job placement (role, image, instance, S3 prefix) and boto3 clients for training jobs."""

    role_arn: str = Field(default="", description="Execution role ARN (TWIN_SAGEMAKER_ROLE).")
    image_uri: str = Field(
        default="", description="Training image with torch/transformers/trl/peft (TWIN_SAGEMAKER_IMAGE)."
    )
    instance_type: str = Field(default="ml.g5.2xlarge", description="TWIN_SAGEMAKER_INSTANCE_TYPE")
    instance_count: int = 1
    volume_size_gb: int = 100
    max_runtime_s: int = 4 * 3600
    s3_bucket: str = Field(default="", description="Bucket for inputs/outputs (TWIN_SAGEMAKER_BUCKET).")
    s3_prefix: str = Field(default="llm-twin/sagemaker", description="Key prefix for job inputs/outputs.")
    region_name: str = Field(default="us-east-1", description="AWS_REGION")
    endpoint_url: str = Field(default="", description="Override (a local emulator in tests).")
    poll_interval_s: float = 30.0
    use_spot: bool = False

    @property
    def enabled(self) -> bool:
        return bool(self.role_arn and self.image_uri and self.s3_bucket)

    def _client(self, service: str):
        import boto3

        kwargs = {"region_name": self.region_name}
        if self.endpoint_url:
            kwargs["endpoint_url"] = self.endpoint_url
        return boto3.client(service, **kwargs)

    def sagemaker_client(self):
        return self._client("sagemaker")

    def s3_client(self):
        return self._client("s3")

    def logs_client(self):
        return self._client("logs")
