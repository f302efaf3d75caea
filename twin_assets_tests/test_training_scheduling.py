"""Training steps ask Kubernetes for one GPU and run in the `gpu` pool, which the production
instance limits to one step at a time (deploy/dagster.yaml)."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from twin_assets.defs.training.assets import dpo_model, sft_model

GPU_LIMITS = {"limits": {"nvidia.com/gpu": "1"}, "requests": {"nvidia.com/gpu": "1"}}


def test_training_assets_request_one_gpu_in_the_gpu_pool():
    for asset in (sft_model, dpo_model):
        node = asset.node_def
        assert node.pool == "gpu", asset.key
        # op tags are stored JSON-encoded; dagster-k8s decodes `dagster-k8s/config` the same way
        k8s = json.loads(node.tags["dagster-k8s/config"])
        assert k8s["container_config"]["resources"] == GPU_LIMITS


def test_production_instance_limits_pools_to_one_step():
    """No per-pool limit exists in dagster.yaml; the default must keep `gpu` at one."""
    from dagster._config import process_config
    from dagster._config.field import Field
    from dagster._core.instance.config import dagster_instance_config_schema

    cfg = yaml.safe_load((Path(__file__).parents[1] / "deploy" / "dagster.yaml").read_text())
    assert cfg["concurrency"]["pools"]["default_limit"] == 1
    assert process_config(
        Field(dagster_instance_config_schema()).config_type, {"concurrency": cfg["concurrency"]}
    ).success
