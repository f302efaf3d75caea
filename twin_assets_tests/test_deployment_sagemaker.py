"""The SageMaker target against a real moto server on 127.0.0.1: model, endpoint configuration
and endpoint created and described, autoscaling registered and read back, the smoke request
through `sagemaker-runtime invoke_endpoint` (moto answers the canned body configured through its
moto-api), promotion only after it, and every failure leaving `production` where it was.

moto does not implement UpdateEndpoint: the update path is exercised up to that call (new model
and endpoint configuration created, the endpoint still on the old one) and the emulator's answer
is reported as such, never faked."""

from __future__ import annotations

import json
from pathlib import Path

import boto3
import dagster as dg
import httpx
import pytest

from resources.artifacts import ArtifactStoreResource
from resources.sagemaker_endpoint import SageMakerEndpointResource
from resources.warehouse import WarehouseResource
from twin_assets.defs.deployment.assets import ArtifactRegistry, deployed_endpoint
from twin_assets.defs.partitions import AUTHORS_PARTITION
from twin_assets.defs.resources import ConfigurationError, deployment_target
from twin_assets.deployment.flow import deploy_version
from twin_assets.deployment.sagemaker import (
    INVOCATIONS_METRIC,
    SageMakerDeployer,
    SageMakerTarget,
    UpdateNotSupported,
)
from twin_assets.deployment.smoke import SmokeFailed
from twin_assets.domain.models import ModelCard
from twin_assets.training import registry

REGION = "us-east-1"
ROLE = "arn:aws:iam::123456789012:role/twin-serving"
IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/llm-twin-serve:1"
INDEX = "idx0001"


@pytest.fixture(autouse=True)
def aws_env(monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)


def _resource(moto_url: str, **overrides) -> SageMakerEndpointResource:
    fields = dict(
        target="sagemaker",
        role_arn=ROLE,
        image_uri=IMAGE,
        instance_type="ml.g4dn.xlarge",  # moto rejects ml.g5.*
        min_capacity=1,
        max_capacity=4,
        target_invocations_per_instance=25.0,
        scale_in_cooldown_s=600,
        scale_out_cooldown_s=45,
        poll_interval_s=0.05,
        wait_timeout_s=10,
        region_name=REGION,
        endpoint_url=moto_url,
        container_env={"TWIN_S3_BUCKET": "twin-artifacts"},
    )
    fields.update(overrides)
    return SageMakerEndpointResource(**fields)


def _register(artifacts: ArtifactStoreResource, tmp_path: Path, author: str, version: str) -> None:
    adapter = tmp_path / f"adapter-{version}"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text("{}")
    card = ModelCard(
        author_id=author,
        kind="dpo",
        version=version,
        base_model="tiny",
        method="lora",
        dataset_kind="preference",
        dataset_version="d1",
        code_version="c1",
    )
    registry.publish_model(artifacts, card, adapter)


def _canned(moto_url: str, body: dict | str) -> None:
    """What moto's invoke_endpoint answers next (its documented moto-api hook)."""
    payload = body if isinstance(body, str) else json.dumps(body)
    response = httpx.post(
        f"{moto_url}/moto-api/static/sagemaker/endpoint-results",
        json={
            "results": [
                {"Body": payload, "ContentType": "application/json", "InvokedProductionVariant": "AllTraffic"}
            ],
            "region": REGION,
        },
    )
    assert response.status_code == 201


def _answer(author: str, version: str, index: str = INDEX) -> dict:
    return {
        "answer": f"I write about queues [1]. ({author})",
        "citations": [{"n": 1, "link": "https://example.com/queues", "author_id": author, "score": 0.8}],
        "model_version": version,
        "index_version": index,
    }


@pytest.fixture
def artifacts(tmp_path) -> ArtifactStoreResource:
    return ArtifactStoreResource(root_dir=str(tmp_path / "artifacts"))


def _deploy(resource: SageMakerEndpointResource, artifacts, author: str, version: str):
    deployer = resource.deployer()
    target = SageMakerTarget(deployer)
    record = deploy_version(
        target,
        artifacts,
        ArtifactRegistry(artifacts),
        author=author,
        kind="dpo",
        version=version,
        question="q?",
    )
    return deployer, record


def test_create_applies_autoscaling_smoke_tests_then_promotes(moto_url, artifacts, tmp_path):
    author = "ada-create"
    _register(artifacts, tmp_path, author, "v1")
    artifacts.write_alias(f"indexes/{author}", "latest", INDEX)
    _canned(moto_url, _answer(author, "v1"))
    resource = _resource(moto_url)
    deployer, record = _deploy(resource, artifacts, author, "v1")

    sm = boto3.client("sagemaker", region_name=REGION, endpoint_url=moto_url)
    desc = sm.describe_endpoint(EndpointName="twin-ada-create")
    assert desc["EndpointStatus"] == "InService"
    assert desc["EndpointConfigName"] == deployer.config_name(author, "v1")
    config = sm.describe_endpoint_config(EndpointConfigName=desc["EndpointConfigName"])
    variant = config["ProductionVariants"][0]
    assert variant["ModelName"] == "twin-ada-create-v1" and variant["InstanceType"] == "ml.g4dn.xlarge"
    model = sm.describe_model(ModelName="twin-ada-create-v1")
    env = model["PrimaryContainer"]["Environment"]
    assert env["TWIN_SERVE_MODEL"] == "ada-create@v1" and env["TWIN_S3_BUCKET"] == "twin-artifacts"
    assert model["ExecutionRoleArn"] == ROLE

    # autoscaling read back from Application Auto Scaling itself, not from our return value
    aas = boto3.client("application-autoscaling", region_name=REGION, endpoint_url=moto_url)
    rid = "endpoint/twin-ada-create/variant/AllTraffic"
    (scalable,) = aas.describe_scalable_targets(ServiceNamespace="sagemaker", ResourceIds=[rid])[
        "ScalableTargets"
    ]
    assert (scalable["MinCapacity"], scalable["MaxCapacity"]) == (1, 4)
    assert scalable["ScalableDimension"] == "sagemaker:variant:DesiredInstanceCount"
    (policy,) = aas.describe_scaling_policies(ServiceNamespace="sagemaker", ResourceId=rid)["ScalingPolicies"]
    tt = policy["TargetTrackingScalingPolicyConfiguration"]
    assert policy["PolicyType"] == "TargetTrackingScaling"
    assert tt["PredefinedMetricSpecification"]["PredefinedMetricType"] == INVOCATIONS_METRIC
    assert (tt["TargetValue"], tt["ScaleInCooldown"], tt["ScaleOutCooldown"]) == (25.0, 600, 45)

    assert record.promoted and record.rollback_version is None and record.index_version == INDEX
    assert record.smoke.citations == 1 and record.smoke.model_version == "v1"
    assert record.details["created"] is True and record.details["autoscaling"]["max_capacity"] == 4
    assert registry.production_version(artifacts, author) == ("dpo", "v1")

    # a re-run on the same version: same endpoint configuration, nothing to update, no promotion
    # (moto answers an identical request with the same canned body, so nothing is queued)
    _, again = _deploy(resource, artifacts, author, "v1")
    assert again.promoted is False and again.details["created"] is False
    assert again.details["previous_config"] == desc["EndpointConfigName"]


def test_update_goes_as_far_as_the_emulator_and_leaves_production(moto_url, artifacts, tmp_path):
    author = "ada-update"
    artifacts.write_alias(f"indexes/{author}", "latest", INDEX)
    _register(artifacts, tmp_path, author, "v1")
    _register(artifacts, tmp_path, author, "v2")
    resource = _resource(moto_url)
    _canned(moto_url, _answer(author, "v1"))
    deployer, _ = _deploy(resource, artifacts, author, "v1")
    old_config = deployer.config_name(author, "v1")

    with pytest.raises(UpdateNotSupported, match="does not implement it"):
        _deploy(resource, artifacts, author, "v2")
    sm = boto3.client("sagemaker", region_name=REGION, endpoint_url=moto_url)
    # the new version's model and endpoint configuration exist: the blue/green update was asked
    sm.describe_model(ModelName="twin-ada-update-v2")
    sm.describe_endpoint_config(EndpointConfigName=deployer.config_name(author, "v2"))
    assert sm.describe_endpoint(EndpointName="twin-ada-update")["EndpointConfigName"] == old_config
    assert registry.production_version(artifacts, author) == ("dpo", "v1")


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ("not json", "not JSON"),
        ({"answer": "hi", "citations": [], "model_version": "v1", "index_version": INDEX}, "cites nothing"),
        (
            {"answer": "hi", "citations": [{"n": 1}], "model_version": "v0", "index_version": INDEX},
            "not the deployed",
        ),
        (
            {"answer": "hi", "citations": [{"n": 1}], "model_version": "v1", "index_version": "old"},
            "index version",
        ),
    ],
)
def test_failed_smoke_request_never_promotes(moto_url, artifacts, tmp_path, body, reason):
    author = "ada-smoke-" + str(abs(hash(reason)) % 10_000)
    artifacts.write_alias(f"indexes/{author}", "latest", INDEX)
    _register(artifacts, tmp_path, author, "v1")
    _canned(moto_url, body)
    with pytest.raises(SmokeFailed, match=reason):
        _deploy(_resource(moto_url), artifacts, author, "v1")
    assert registry.production_version(artifacts, author) is None


def test_asset_deploys_the_approved_version_to_sagemaker(moto_url, artifacts, tmp_path):
    author = "ada-asset"
    _register(artifacts, tmp_path, author, "v1")
    artifacts.write_alias(f"indexes/{author}", "latest", INDEX)
    resources = {
        "artifacts": artifacts,
        "warehouse": WarehouseResource(),  # not used by the SageMaker target
        "sagemaker_endpoint": _resource(moto_url),
    }
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(AUTHORS_PARTITION, [author])
        # nothing approved yet: the asset refuses, production untouched
        result = dg.materialize(
            [deployed_endpoint],
            resources=resources,
            instance=instance,
            partition_key=author,
            raise_on_error=False,
        )
        assert not result.success
        assert registry.production_version(artifacts, author) is None
        artifacts.write_alias(registry.model_key(author, "dpo"), registry.APPROVED_ALIAS, "v1")
        _canned(moto_url, _answer(author, "v1"))
        result = dg.materialize(
            [deployed_endpoint], resources=resources, instance=instance, partition_key=author
        )
    meta = result.asset_materializations_for_node("deployed_endpoint")[0].metadata
    assert meta["target"].value == "sagemaker" and meta["model_version"].value == "v1"
    assert meta["index_version"].value == INDEX and meta["smoke_citations"].value == 1
    assert meta["rollback_version"].value == "none" and "twin-ada-asset" in str(meta["url"].value)
    assert meta["smoke_latency_ms"].value >= 0
    assert registry.production_version(artifacts, author) == ("dpo", "v1")


def test_environment_selects_and_validates_the_target():
    assert deployment_target({}).target == "local"
    local = deployment_target({"TWIN_SERVE_HOST": "0.0.0.0", "TWIN_SERVE_PORT": "9001"})
    assert local.service_url == "http://127.0.0.1:9001"
    sm = deployment_target(
        {
            "TWIN_DEPLOY_TARGET": "sagemaker",
            "TWIN_SAGEMAKER_ROLE": ROLE,
            "TWIN_SAGEMAKER_SERVE_IMAGE": IMAGE,
            "TWIN_SAGEMAKER_MIN_INSTANCES": "2",
            "TWIN_SAGEMAKER_MAX_INSTANCES": "8",
            "TWIN_SAGEMAKER_TARGET_INVOCATIONS": "12.5",
        }
    )
    assert (sm.min_capacity, sm.max_capacity, sm.target_invocations_per_instance) == (2, 8, 12.5)
    with pytest.raises(ConfigurationError, match="TWIN_DEPLOY_TARGET"):
        deployment_target({"TWIN_DEPLOY_TARGET": "lambda"})
    with pytest.raises(ConfigurationError, match="execution role"):
        deployment_target({"TWIN_DEPLOY_TARGET": "sagemaker"})
    with pytest.raises(ConfigurationError, match="min_capacity"):
        deployment_target(
            {
                "TWIN_DEPLOY_TARGET": "sagemaker",
                "TWIN_SAGEMAKER_ROLE": ROLE,
                "TWIN_SAGEMAKER_SERVE_IMAGE": IMAGE,
                "TWIN_SAGEMAKER_MIN_INSTANCES": "5",
            }
        )


def test_long_names_stay_valid():
    deployer = SageMakerDeployer(
        _resource("http://unused").endpoint_settings(), sagemaker=None, runtime=None, autoscaling=None
    )
    name = deployer.config_name("a-very-long-author-name-" * 3, "0123456789abcdef")
    assert len(name) <= 63 and name.replace("-", "").isalnum()
