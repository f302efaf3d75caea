"""Retraining: a NEW instruction_dataset data version requests sft_model; a no-op one does not."""

from __future__ import annotations

import dagster as dg

from twin_assets.assets.training import (
    BASE_MODEL,
    INSTRUCTION_DATASET,
    PREFERENCE_DATASET,
    dpo_model,
    sft_model,
)
from twin_assets.partitions import authors_partitions

AUTHOR = "maya-kowalski"


def _report(instance, key, version: str) -> None:
    instance.report_runless_asset_event(
        dg.AssetMaterialization(asset_key=key, partition=AUTHOR, tags={"dagster/data_version": version})
    )


def test_retrain_only_on_new_dataset_version():
    upstream = [dg.AssetSpec(BASE_MODEL),
                dg.AssetSpec(INSTRUCTION_DATASET, partitions_def=authors_partitions),
                dg.AssetSpec(PREFERENCE_DATASET, partitions_def=authors_partitions)]
    from resources.artifacts import ArtifactStoreResource
    from resources.sagemaker import SageMakerResource
    from resources.tracking import WandbResource

    defs = dg.Definitions(assets=[*upstream, sft_model, dpo_model], resources={
        "artifacts": ArtifactStoreResource(), "wandb": WandbResource(), "sagemaker": SageMakerResource()})
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(authors_partitions.name, [AUTHOR])
        instance.report_runless_asset_event(
            dg.AssetMaterialization(asset_key=BASE_MODEL, tags={"dagster/data_version": "b1"})
        )
        r = dg.evaluate_automation_conditions(defs=defs, instance=instance)
        assert r.total_requested == 0  # author known, no dataset yet
        _report(instance, INSTRUCTION_DATASET, "v1")
        _report(instance, PREFERENCE_DATASET, "p1")
        r = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=r.cursor)
        assert r.get_requested_partitions(sft_model.key) == {AUTHOR}  # first model for new data
        # the run happened: sft_model and dpo_model materialized with their model versions
        _report(instance, sft_model.key, "m1")
        _report(instance, dpo_model.key, "d1")
        r = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=r.cursor)
        r = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=r.cursor)
        assert r.total_requested == 0
        # no-op dataset re-materialization: same content hash -> same data version
        _report(instance, INSTRUCTION_DATASET, "v1")
        r = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=r.cursor)
        assert r.get_requested_partitions(sft_model.key) == set()
        assert r.total_requested == 0
        # a NEW dataset version -> retrain SFT
        _report(instance, INSTRUCTION_DATASET, "v2")
        r = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=r.cursor)
        assert r.get_requested_partitions(sft_model.key) == {AUTHOR}
        assert r.get_requested_partitions(dpo_model.key) == set()  # waits for the new SFT model
        # the new SFT model version -> DPO follows
        _report(instance, sft_model.key, "m2")
        r = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=r.cursor)
        assert r.get_requested_partitions(dpo_model.key) == {AUTHOR}
        assert r.get_requested_partitions(sft_model.key) == set()
        _report(instance, dpo_model.key, "d2")
        r = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=r.cursor)
        # a new base model (another TWIN_BASE_MODEL) retrains the twin too
        instance.report_runless_asset_event(
            dg.AssetMaterialization(asset_key=BASE_MODEL, tags={"dagster/data_version": "b2"})
        )
        r = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=r.cursor)
        assert r.get_requested_partitions(sft_model.key) == {AUTHOR}
