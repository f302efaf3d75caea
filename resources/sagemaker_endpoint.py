"""Where `deployed_endpoint` deploys: the local `twin serve` process (default) or a SageMaker
real-time endpoint with autoscaling (TWIN_DEPLOY_TARGET=sagemaker).

Plain boto3 clients (sagemaker, sagemaker-runtime, application-autoscaling); `endpoint_url`
points all of them at an emulator (moto) in tests. The deployment logic is in
`twin_assets.deployment` (it never imports this class).
"""

from __future__ import annotations

from typing import Literal

import dagster as dg
from pydantic import Field

from twin_assets.deployment.local import LocalServiceSettings
from twin_assets.deployment.sagemaker import EndpointSettings, SageMakerDeployer


class SageMakerEndpointResource(dg.ConfigurableResource):
    """The deployment target and, for SageMaker, the endpoint's placement and autoscaling."""

    target: Literal["local", "sagemaker"] = Field(default="local", description="TWIN_DEPLOY_TARGET")
    # -- local ----------------------------------------------------------------------------------
    service_url: str = Field(
        default="http://127.0.0.1:8008", description="the local service (TWIN_SERVE_HOST/TWIN_SERVE_PORT)"
    )
    start_timeout_s: float = 180.0
    switch_timeout_s: float = Field(
        default=120.0,
        description="until the service serves a new version or index (TWIN_DEPLOY_SWITCH_TIMEOUT_S)",
    )
    # -- SageMaker ------------------------------------------------------------------------------
    role_arn: str = Field(default="", description="Execution role ARN (TWIN_SAGEMAKER_ROLE).")
    image_uri: str = Field(
        default="", description="Serving image, deploy/Dockerfile.serve (TWIN_SAGEMAKER_SERVE_IMAGE)."
    )
    instance_type: str = Field(default="ml.g5.xlarge", description="TWIN_SAGEMAKER_ENDPOINT_INSTANCE_TYPE")
    initial_instance_count: int = 1
    variant_name: str = "AllTraffic"
    name_prefix: str = Field(default="twin", description="endpoint names: <prefix>-<author>")
    container_env: dict[str, str] = Field(
        default_factory=dict, description="artifact store and serve settings for the container (not secrets)"
    )
    min_capacity: int = Field(default=1, description="TWIN_SAGEMAKER_MIN_INSTANCES")
    max_capacity: int = Field(default=2, description="TWIN_SAGEMAKER_MAX_INSTANCES")
    target_invocations_per_instance: float = Field(
        default=30.0, description="TWIN_SAGEMAKER_TARGET_INVOCATIONS"
    )
    scale_in_cooldown_s: int = Field(default=300, description="TWIN_SAGEMAKER_SCALE_IN_COOLDOWN_S")
    scale_out_cooldown_s: int = Field(default=60, description="TWIN_SAGEMAKER_SCALE_OUT_COOLDOWN_S")
    rollback_alarms: list[str] = Field(default_factory=list, description="TWIN_SAGEMAKER_ROLLBACK_ALARMS")
    wait_timeout_s: float = 1800.0
    poll_interval_s: float = 15.0
    region_name: str = Field(default="us-east-1", description="AWS_REGION")
    endpoint_url: str = Field(default="", description="Override (a local emulator in tests).")

    def local_settings(self) -> LocalServiceSettings:
        return LocalServiceSettings(
            url=self.service_url, start_timeout_s=self.start_timeout_s, switch_timeout_s=self.switch_timeout_s
        )

    def endpoint_settings(self) -> EndpointSettings:
        return EndpointSettings(
            role_arn=self.role_arn,
            image_uri=self.image_uri,
            instance_type=self.instance_type,
            initial_instance_count=self.initial_instance_count,
            variant_name=self.variant_name,
            name_prefix=self.name_prefix,
            environment=dict(self.container_env),
            min_capacity=self.min_capacity,
            max_capacity=self.max_capacity,
            target_invocations_per_instance=self.target_invocations_per_instance,
            scale_in_cooldown_s=self.scale_in_cooldown_s,
            scale_out_cooldown_s=self.scale_out_cooldown_s,
            rollback_alarms=list(self.rollback_alarms),
            wait_timeout_s=self.wait_timeout_s,
            poll_interval_s=self.poll_interval_s,
        )

    def _client(self, service: str):
        import boto3

        kwargs = {"region_name": self.region_name}
        if self.endpoint_url:
            kwargs["endpoint_url"] = self.endpoint_url
        return boto3.client(service, **kwargs)

    def deployer(self) -> SageMakerDeployer:
        return SageMakerDeployer(
            self.endpoint_settings(),
            sagemaker=self._client("sagemaker"),
            runtime=self._client("sagemaker-runtime"),
            autoscaling=self._client("application-autoscaling"),
        )

    def console_url(self, endpoint_name: str) -> str:
        if self.endpoint_url:
            return f"{self.endpoint_url.rstrip('/')}/endpoints/{endpoint_name}"
        return (
            f"https://{self.region_name}.console.aws.amazon.com/sagemaker/home"
            f"?region={self.region_name}#/endpoints/{endpoint_name}"
        )
