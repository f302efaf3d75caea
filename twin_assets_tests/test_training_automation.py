"""Retraining: a NEW instruction_dataset data version requests sft_model; a no-op one does not."""

from __future__ import annotations

import dagster as dg

from twin_assets.defs.partitions import authors_partitions
from twin_assets.defs.training.assets import (
    BASE_MODEL,
    INSTRUCTION_DATASET,
    PREFERENCE_DATASET,
    dpo_model,
    sft_model,
)

AUTHOR = "maya-kowalski"


def _report(instance, key, version: str) -> None:
    instance.report_runless_asset_event(
        dg.AssetMaterialization(asset_key=key, partition=AUTHOR, tags={"dagster/data_version": version})
    )


def _defs() -> dg.Definitions:
    from resources.artifacts import ArtifactStoreResource
    from resources.sagemaker import SageMakerResource
    from resources.tracking import WandbResource

    upstream = [
        dg.AssetSpec(BASE_MODEL),
        dg.AssetSpec(INSTRUCTION_DATASET, partitions_def=authors_partitions),
        dg.AssetSpec(PREFERENCE_DATASET, partitions_def=authors_partitions),
    ]
    return dg.Definitions(
        assets=[*upstream, sft_model, dpo_model],
        resources={
            "artifacts": ArtifactStoreResource(),
            "wandb": WandbResource(),
            "sagemaker": SageMakerResource(),
        },
    )


def test_retrain_only_on_new_dataset_version():
    defs = _defs()
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


def _trained_once(instance, defs: dg.Definitions):
    """The author with datasets v1/p1, models m1/d1 and automation settled: the evaluation
    result whose cursor the next tick continues from."""
    instance.add_dynamic_partitions(authors_partitions.name, [AUTHOR])
    instance.report_runless_asset_event(
        dg.AssetMaterialization(asset_key=BASE_MODEL, tags={"dagster/data_version": "b1"})
    )
    _report(instance, INSTRUCTION_DATASET, "v1")
    _report(instance, PREFERENCE_DATASET, "p1")
    r = dg.evaluate_automation_conditions(defs=defs, instance=instance)
    _report(instance, sft_model.key, "m1")
    _report(instance, dpo_model.key, "d1")
    r = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=r.cursor)
    return dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=r.cursor)


def _start_sft_run(instance, defs: dg.Definitions) -> str:
    """A real run record of sft_model[AUTHOR], STARTED: creating it logs the planned
    materialization that `in_progress()` reads, as the daemon's launch would."""
    from dagster._core.events import DagsterEvent, DagsterEventType

    job = defs.resolve_implicit_global_asset_job_def()
    run = instance.create_run_for_job(
        job.get_subset(asset_selection={sft_model.key}),
        asset_selection={sft_model.key},
        tags={"dagster/partition": AUTHOR, "dagster/partition_set": "__ASSET_JOB_partition_set"},
    )
    instance.report_dagster_event(
        DagsterEvent(event_type_value=DagsterEventType.RUN_START.value, job_name=run.job_name),
        run_id=run.run_id,
    )
    return run.run_id


def _finish_run(instance, run_id: str, model_version: str) -> None:
    from dagster._core.events import DagsterEvent, DagsterEventType

    run = instance.get_run_by_id(run_id)
    instance.report_runless_asset_event(
        dg.AssetMaterialization(
            asset_key=sft_model.key, partition=AUTHOR, tags={"dagster/data_version": model_version}
        )
    )
    instance.report_dagster_event(
        DagsterEvent(event_type_value=DagsterEventType.RUN_SUCCESS.value, job_name=run.job_name),
        run_id=run_id,
    )


def test_new_dataset_version_during_training_is_not_lost():
    """A version landing while sft_model trains on the previous one is trained once that run ends
    (the run finishing must not count as having handled the newer version)."""
    defs = _defs()
    with dg.instance_for_test() as instance:
        r = _trained_once(instance, defs)
        assert r.total_requested == 0

        run_id = _start_sft_run(instance, defs)  # e.g. a manual retrain on v1
        r = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=r.cursor)
        assert r.total_requested == 0
        _report(instance, INSTRUCTION_DATASET, "v2")  # lands mid-run
        r = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=r.cursor)
        assert r.get_requested_partitions(sft_model.key) == set()  # never two runs at once
        r = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=r.cursor)
        assert r.total_requested == 0  # still running
        _finish_run(instance, run_id, "m1b")  # the run ends with a model of v1
        r = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=r.cursor)
        assert r.get_requested_partitions(sft_model.key) == {AUTHOR}
        _report(instance, sft_model.key, "m2")
        r = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=r.cursor)
        assert r.get_requested_partitions(sft_model.key) == set()  # handled: requested once


def test_version_change_right_after_a_request_is_not_lost():
    """The tick after a request resets the 'pending' state; a version that landed in the same
    interval came after the request and must still be trained."""
    defs = _defs()
    with dg.instance_for_test() as instance:
        r = _trained_once(instance, defs)
        _report(instance, INSTRUCTION_DATASET, "v2")
        r = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=r.cursor)
        assert r.get_requested_partitions(sft_model.key) == {AUTHOR}
        _report(instance, INSTRUCTION_DATASET, "v3")  # before the next tick
        r = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=r.cursor)
        assert r.get_requested_partitions(sft_model.key) == {AUTHOR}
        r = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=r.cursor)
        assert r.get_requested_partitions(sft_model.key) == set()


BLOCKING_CHECKS = {
    "evaluation_report": ["deploy_gate"],
    "embedded_chunks": ["every_chunk_embedded_once", "no_orphan_points", "vector_dimension_matches_model"],
}


def _pass_blocking_checks(instance, key: dg.AssetKey) -> None:
    """What a successful materialization reports with it: its blocking checks passed."""
    for name in BLOCKING_CHECKS.get(key.path[-1], []):
        instance.report_runless_asset_event(
            dg.AssetCheckEvaluation(asset_key=key, check_name=name, passed=True, partition=AUTHOR)
        )


def test_a_new_index_alone_redeploys_without_re_evaluating():
    """embedded_chunks feeds both the evaluation (its RAG metrics) and the endpoint; a new
    index version alone refreshes the endpoint, and retrains and re-evaluates nothing."""
    from twin_assets.definitions import defs as load_defs

    defs = load_defs()
    evaluation = dg.AssetKey("evaluation_report")
    endpoint = dg.AssetKey("deployed_endpoint")
    embedded = dg.AssetKey("embedded_chunks")
    upstream = [
        INSTRUCTION_DATASET,
        PREFERENCE_DATASET,
        embedded,
        sft_model.key,
        dpo_model.key,
        evaluation,
        endpoint,
    ]
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(authors_partitions.name, [AUTHOR])
        instance.report_runless_asset_event(
            dg.AssetMaterialization(asset_key=BASE_MODEL, tags={"dagster/data_version": "b1"})
        )
        for key in upstream:  # everything built once, in order
            _report(instance, key, f"{key.path[-1]}-1")
            _pass_blocking_checks(instance, key)
        r = dg.evaluate_automation_conditions(defs=defs, instance=instance)
        r = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=r.cursor)
        assert r.get_requested_partitions(evaluation) == set()
        assert r.get_requested_partitions(endpoint) == set()
        _report(instance, embedded, "embedded-2")  # new documents embedded, same datasets
        r = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=r.cursor)
        assert r.get_requested_partitions(endpoint) == {AUTHOR}
        for key in (sft_model.key, dpo_model.key, evaluation):
            assert r.get_requested_partitions(key) == set(), key


def test_a_fresh_instance_prepares_the_base_model_once():
    """Unpartitioned and missing from the start: `on_missing()` would never request it (it
    fires only for partitions added later), and every new twin would wait on it forever."""
    from twin_assets.definitions import defs as load_defs

    defs = load_defs()
    with dg.instance_for_test() as instance:
        r = dg.evaluate_automation_conditions(defs=defs, instance=instance)
        assert r.get_requested_partitions(BASE_MODEL) == {None}
        assert r.total_requested == 1  # no author yet: nothing else
        r = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=r.cursor)
        assert r.total_requested == 0  # requested once; a failed run is not retried every tick
        instance.report_runless_asset_event(
            dg.AssetMaterialization(asset_key=BASE_MODEL, tags={"dagster/data_version": "b1"})
        )
        r = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=r.cursor)
        assert r.total_requested == 0
