"""A twin version on a SageMaker real-time endpoint: model, endpoint configuration, endpoint,
a blue/green in-place update for each new version, and autoscaling that is actually applied.

Plain boto3 calls (the clients are passed in; `resources/sagemaker_endpoint.py` builds them).
WHY not the `sagemaker` SDK: it is not installed here (v3 is ~1 GB and its `Endpoint.get()`
fails against the moto emulator); the four boto3 clients do everything this needs.

Names are deterministic, so a re-run after a crash finds what the last run created:
model `<prefix>-<author>-<version>`, endpoint configuration `<model>-<settings hash>`,
endpoint `<prefix>-<author>` (one per author; versions replace each other on it).

The container is the serving image (`deploy/Dockerfile.serve`): `twin serve run` on port 8080
with SageMaker's `/ping` and `/invocations`; its environment pins the twin it serves
(`TWIN_SERVE_MODEL=<author>@<version>`) and points it at the same artifact store as the
pipeline, where it finds the adapter and the author's published index.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Callable, Mapping
from typing import Any

from pydantic import BaseModel, Field, model_validator

from twin_assets.deployment.smoke import DeploymentFailed, SmokeAnswer, SmokeFailed, check_answer

SCALABLE_DIMENSION = "sagemaker:variant:DesiredInstanceCount"
INVOCATIONS_METRIC = "SageMakerVariantInvocationsPerInstance"
_NAME = re.compile(r"[^a-zA-Z0-9-]+")


class UpdateNotSupported(DeploymentFailed):
    """The SageMaker API answered UpdateEndpoint with a server error that is an emulator's
    "not implemented" (moto), not a deployment problem."""


class EndpointSettings(BaseModel):
    """Where and how a twin is served on SageMaker (from TWIN_SAGEMAKER_ENDPOINT_* variables)."""

    role_arn: str
    image_uri: str
    instance_type: str = "ml.g5.xlarge"
    initial_instance_count: int = Field(default=1, ge=1)
    variant_name: str = "AllTraffic"
    name_prefix: str = "twin"
    environment: dict[str, str] = Field(
        default_factory=dict, description="extra container environment (artifact store, serve settings)"
    )
    # autoscaling (Application Auto Scaling, target tracking on invocations per instance)
    min_capacity: int = Field(default=1, ge=1)
    max_capacity: int = Field(default=2, ge=1)
    target_invocations_per_instance: float = Field(default=30.0, gt=0)
    scale_in_cooldown_s: int = Field(default=300, ge=0)
    scale_out_cooldown_s: int = Field(default=60, ge=0)
    # blue/green
    traffic_wait_s: int = Field(default=300, ge=0, description="baking period before the old fleet goes")
    termination_wait_s: int = Field(default=120, ge=0)
    rollback_alarms: list[str] = Field(default_factory=list, description="CloudWatch alarms that roll back")
    # waiting
    wait_timeout_s: float = Field(default=1800.0, gt=0)
    poll_interval_s: float = Field(default=15.0, gt=0)

    @model_validator(mode="after")
    def _capacity(self) -> EndpointSettings:
        if self.min_capacity > self.max_capacity:
            raise ValueError(f"min_capacity ({self.min_capacity}) exceeds max_capacity ({self.max_capacity})")
        if not self.role_arn or not self.image_uri:
            raise ValueError("a SageMaker deployment needs an execution role and a serving image")
        return self

    def fingerprint(self) -> str:
        """What makes an endpoint configuration different (a change -> a new configuration)."""
        fields = ("image_uri", "instance_type", "initial_instance_count", "variant_name", "environment")
        payload = json.dumps({f: getattr(self, f) for f in fields}, sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:8]


def _name(*parts: str, limit: int = 63) -> str:
    """A SageMaker resource name (alphanumerics and hyphens, <= 63 characters)."""
    name = _NAME.sub("-", "-".join(parts)).strip("-")
    if len(name) <= limit:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    return name[: limit - 9].rstrip("-") + "-" + digest


class EndpointState(BaseModel):
    """What a deployment left on SageMaker (for the asset's metadata)."""

    endpoint_name: str
    endpoint_arn: str = ""
    status: str
    endpoint_config: str
    previous_config: str | None = None
    model_name: str
    created: bool  # a new endpoint (True) or an update of an existing one
    autoscaling: dict[str, Any] = Field(default_factory=dict)


def _error_code(exc: Exception) -> tuple[str, int, str]:
    response: Mapping[str, Any] = getattr(exc, "response", None) or {}
    error = response.get("Error", {})
    status = int(response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
    return str(error.get("Code", "")), status, str(error.get("Message", ""))


def _is_missing(exc: Exception) -> bool:
    code, _, message = _error_code(exc)
    return code in ("ValidationException", "ResourceNotFound") and "ould not find" in message


class SageMakerDeployer:
    """Deploys one author's twin versions to that author's endpoint."""

    def __init__(
        self,
        settings: EndpointSettings,
        *,
        sagemaker: Any,
        runtime: Any,
        autoscaling: Any,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.settings = settings
        self._sm = sagemaker
        self._runtime = runtime
        self._aas = autoscaling
        self._sleep = sleep
        self._clock = clock

    # -- names ---------------------------------------------------------------------------------
    def endpoint_name(self, author: str) -> str:
        return _name(self.settings.name_prefix, author)

    def model_name(self, author: str, version: str) -> str:
        return _name(self.settings.name_prefix, author, version)

    def config_name(self, author: str, version: str) -> str:
        return _name(self.settings.name_prefix, author, version, self.settings.fingerprint())

    def resource_id(self, author: str) -> str:
        return f"endpoint/{self.endpoint_name(author)}/variant/{self.settings.variant_name}"

    # -- reads ---------------------------------------------------------------------------------
    def describe(self, author: str) -> dict[str, Any] | None:
        try:
            return self._sm.describe_endpoint(EndpointName=self.endpoint_name(author))
        except Exception as exc:
            if _is_missing(exc):
                return None
            raise

    def autoscaling(self, author: str) -> dict[str, Any]:
        """The scalable target and policies registered for the endpoint's variant, read back."""
        rid = self.resource_id(author)
        targets = self._aas.describe_scalable_targets(
            ServiceNamespace="sagemaker", ResourceIds=[rid], ScalableDimension=SCALABLE_DIMENSION
        )["ScalableTargets"]
        policies = self._aas.describe_scaling_policies(
            ServiceNamespace="sagemaker", ResourceId=rid, ScalableDimension=SCALABLE_DIMENSION
        )["ScalingPolicies"]
        out: dict[str, Any] = {"resource_id": rid, "registered": bool(targets)}
        if targets:
            out.update(min_capacity=targets[0]["MinCapacity"], max_capacity=targets[0]["MaxCapacity"])
        out["policies"] = [
            {
                "name": p["PolicyName"],
                "type": p["PolicyType"],
                "target_value": p.get("TargetTrackingScalingPolicyConfiguration", {}).get("TargetValue"),
                "metric": p.get("TargetTrackingScalingPolicyConfiguration", {})
                .get("PredefinedMetricSpecification", {})
                .get("PredefinedMetricType"),
                "scale_in_cooldown_s": p.get("TargetTrackingScalingPolicyConfiguration", {}).get(
                    "ScaleInCooldown"
                ),
                "scale_out_cooldown_s": p.get("TargetTrackingScalingPolicyConfiguration", {}).get(
                    "ScaleOutCooldown"
                ),
            }
            for p in policies
        ]
        return out

    # -- writes --------------------------------------------------------------------------------
    def _ensure_model(self, author: str, version: str) -> str:
        name = self.model_name(author, version)
        try:
            self._sm.describe_model(ModelName=name)
            return name
        except Exception as exc:
            if not _is_missing(exc):
                raise
        env = {
            **self.settings.environment,
            "TWIN_SERVE_AUTHORS": author,
            "TWIN_SERVE_MODEL": f"{author}@{version}",
        }
        self._sm.create_model(
            ModelName=name,
            ExecutionRoleArn=self.settings.role_arn,
            PrimaryContainer={"Image": self.settings.image_uri, "Environment": env},
            Tags=[{"Key": "twin:author", "Value": author}, {"Key": "twin:version", "Value": version}],
        )
        return name

    def _ensure_config(self, author: str, version: str, model: str) -> str:
        name = self.config_name(author, version)
        try:
            self._sm.describe_endpoint_config(EndpointConfigName=name)
            return name
        except Exception as exc:
            if not _is_missing(exc):
                raise
        self._sm.create_endpoint_config(
            EndpointConfigName=name,
            ProductionVariants=[
                {
                    "VariantName": self.settings.variant_name,
                    "ModelName": model,
                    "InitialInstanceCount": self.settings.initial_instance_count,
                    "InstanceType": self.settings.instance_type,
                }
            ],
        )
        return name

    def _deployment_config(self) -> dict[str, Any]:
        """Blue/green: the new fleet is provisioned beside the old one, all traffic shifts after
        the baking period, and the configured alarms roll it back automatically."""
        cfg: dict[str, Any] = {
            "BlueGreenUpdatePolicy": {
                "TrafficRoutingConfiguration": {
                    "Type": "ALL_AT_ONCE",
                    "WaitIntervalInSeconds": self.settings.traffic_wait_s,
                },
                "TerminationWaitInSeconds": self.settings.termination_wait_s,
            }
        }
        if self.settings.rollback_alarms:
            cfg["AutoRollbackConfiguration"] = {
                "Alarms": [{"AlarmName": a} for a in self.settings.rollback_alarms]
            }
        return cfg

    def _instance_type_of(self, config_name: str) -> str | None:
        variants = self._sm.describe_endpoint_config(EndpointConfigName=config_name)["ProductionVariants"]
        for v in variants:
            if v["VariantName"] == self.settings.variant_name:
                return v.get("InstanceType")
        return None

    def _update(self, author: str, config: str, previous: str) -> None:
        name = self.endpoint_name(author)
        # an update that changes the instance type of an autoscaled variant is refused by
        # SageMaker: deregister first, `apply_autoscaling` registers it again afterwards
        if self._instance_type_of(previous) != self.settings.instance_type:
            self.remove_autoscaling(author)
        try:
            self._sm.update_endpoint(
                EndpointName=name,
                EndpointConfigName=config,
                RetainAllVariantProperties=False,
                DeploymentConfig=self._deployment_config(),
            )
        except Exception as exc:
            code, status, message = _error_code(exc)
            if status >= 500 and (code == str(status) or "<html" in message.lower()):
                raise UpdateNotSupported(
                    f"the SageMaker API answered UpdateEndpoint with HTTP {status} and no AWS error: "
                    "this emulator does not implement it (moto); endpoint "
                    f"{name} still serves {previous}"
                ) from None
            raise

    def wait_in_service(self, author: str, expected_config: str) -> dict[str, Any]:
        """Poll until the endpoint is InService on `expected_config`; fail naming the reason."""
        deadline = self._clock() + self.settings.wait_timeout_s
        while True:
            desc = self.describe(author)
            if desc is None:
                raise DeploymentFailed(f"endpoint {self.endpoint_name(author)} disappeared while deploying")
            status = desc["EndpointStatus"]
            if status == "InService":
                if desc["EndpointConfigName"] != expected_config:
                    raise DeploymentFailed(
                        f"endpoint {desc['EndpointName']} is InService on {desc['EndpointConfigName']}, "
                        f"not {expected_config}: the update was rolled back "
                        f"({desc.get('FailureReason') or 'no reason given'})"
                    )
                return desc
            if status in ("Failed", "OutOfService"):
                raise DeploymentFailed(
                    f"endpoint {desc['EndpointName']} is {status}: {desc.get('FailureReason') or 'no reason given'}"
                )
            if self._clock() > deadline:
                raise DeploymentFailed(
                    f"endpoint {desc['EndpointName']} still {status} after {self.settings.wait_timeout_s:.0f} s"
                )
            self._sleep(self.settings.poll_interval_s)

    def apply_autoscaling(self, author: str) -> dict[str, Any]:
        """Register the variant as a scalable target and put the target-tracking policy, then
        read both back (a registration that does not read back is an error)."""
        s = self.settings
        rid = self.resource_id(author)
        self._aas.register_scalable_target(
            ServiceNamespace="sagemaker",
            ResourceId=rid,
            ScalableDimension=SCALABLE_DIMENSION,
            MinCapacity=s.min_capacity,
            MaxCapacity=s.max_capacity,
        )
        self._aas.put_scaling_policy(
            PolicyName=_name(self.endpoint_name(author), "invocations"),
            ServiceNamespace="sagemaker",
            ResourceId=rid,
            ScalableDimension=SCALABLE_DIMENSION,
            PolicyType="TargetTrackingScaling",
            TargetTrackingScalingPolicyConfiguration={
                "TargetValue": s.target_invocations_per_instance,
                "PredefinedMetricSpecification": {"PredefinedMetricType": INVOCATIONS_METRIC},
                "ScaleInCooldown": s.scale_in_cooldown_s,
                "ScaleOutCooldown": s.scale_out_cooldown_s,
            },
        )
        applied = self.autoscaling(author)
        policy = next((p for p in applied["policies"] if p["metric"] == INVOCATIONS_METRIC), None)
        if (
            not applied["registered"]
            or applied.get("min_capacity") != s.min_capacity
            or applied.get("max_capacity") != s.max_capacity
            or policy is None
            or policy["target_value"] != s.target_invocations_per_instance
        ):
            raise DeploymentFailed(f"autoscaling did not read back as applied: {applied}")
        return applied

    def remove_autoscaling(self, author: str) -> None:
        try:
            self._aas.deregister_scalable_target(
                ServiceNamespace="sagemaker",
                ResourceId=self.resource_id(author),
                ScalableDimension=SCALABLE_DIMENSION,
            )
        except Exception as exc:
            code, _, _ = _error_code(exc)
            if code != "ObjectNotFoundException":
                raise

    def deploy(self, author: str, version: str) -> EndpointState:
        """Create the endpoint on `version`, or move the existing one to it (blue/green), wait
        for InService, and apply autoscaling. Raises `DeploymentFailed` (the endpoint then
        still serves what it served before, as SageMaker keeps the old fleet on a failed update)."""
        model = self._ensure_model(author, version)
        config = self._ensure_config(author, version, model)
        current = self.describe(author)
        name = self.endpoint_name(author)
        previous: str | None = None
        if current is None:
            self._sm.create_endpoint(
                EndpointName=name,
                EndpointConfigName=config,
                Tags=[{"Key": "twin:author", "Value": author}],
            )
            created = True
        else:
            previous = str(current["EndpointConfigName"])
            created = False
            if current["EndpointStatus"] not in ("InService", "Failed"):
                raise DeploymentFailed(
                    f"endpoint {name} is {current['EndpointStatus']}: another deployment is in progress"
                )
            if previous != config:
                self._update(author, config, previous)
        desc = self.wait_in_service(author, config)
        scaling = self.apply_autoscaling(author)
        return EndpointState(
            endpoint_name=name,
            endpoint_arn=str(desc.get("EndpointArn", "")),
            status=str(desc["EndpointStatus"]),
            endpoint_config=config,
            previous_config=previous,
            model_name=model,
            created=created,
            autoscaling=scaling,
        )

    def roll_back(self, author: str, previous_config: str, failed_config: str) -> None:
        """Move the endpoint back to the configuration it served before (after a failed smoke
        request on an updated endpoint)."""
        self._update(author, previous_config, failed_config)
        self.wait_in_service(author, previous_config)

    def invoke(self, author: str, version: str, question: str, k: int = 3) -> tuple[bytes, float]:
        """One `/invocations` request naming the version explicitly; (body, latency in ms)."""
        payload = {"model": f"{author}@{version}", "question": question, "k": k}
        started = time.perf_counter()
        response = self._runtime.invoke_endpoint(
            EndpointName=self.endpoint_name(author),
            ContentType="application/json",
            Accept="application/json",
            Body=json.dumps(payload).encode(),
        )
        body = response["Body"].read()
        return body, (time.perf_counter() - started) * 1000


class SageMakerTarget:
    """`Target` over a SageMaker endpoint: the endpoint switches to the new version before the
    smoke request can reach it, so a failed smoke request moves it back (`revert`)."""

    name = "sagemaker"

    def __init__(self, deployer: SageMakerDeployer, *, console_url: str = ""):
        self.deployer = deployer
        self.state: EndpointState | None = None
        self._console = console_url

    @property
    def url(self) -> str:
        if self.state is None:
            return ""
        return self._console or self.state.endpoint_arn or self.state.endpoint_name

    def prepare(self, author: str, version: str) -> dict[str, Any]:
        self.state = self.deployer.deploy(author, version)
        return {
            "endpoint": self.state.endpoint_name,
            "endpoint_config": self.state.endpoint_config,
            "previous_config": self.state.previous_config,
            "model_name": self.state.model_name,
            "created": self.state.created,
            "autoscaling": self.state.autoscaling,
        }

    def smoke(self, author: str, version: str, question: str, index_version: str) -> SmokeAnswer:
        try:
            body, ms = self.deployer.invoke(author, version, question)
        except Exception as exc:
            raise SmokeFailed(f"invoke_endpoint failed: {type(exc).__name__}: {exc}") from None
        return check_answer(body, author=author, version=version, latency_ms=ms, index_version=index_version)

    def revert(self, author: str) -> None:
        if self.state is not None and self.state.previous_config and not self.state.created:
            self.deployer.roll_back(author, self.state.previous_config, self.state.endpoint_config)

    def confirm(self, author: str, version: str, question: str) -> dict[str, Any]:
        """The endpoint serves the version pinned in its model: nothing follows the alias."""
        return {}
