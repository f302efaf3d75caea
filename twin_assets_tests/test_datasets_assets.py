"""Both dataset assets through `dg.materialize`: offline, with the fake OpenAI-compatible server,
re-runs on unchanged data, and the blocking checks."""

from __future__ import annotations

import json

import dagster as dg
import pytest

from resources.artifacts import ArtifactStoreResource
from resources.llm import TextGeneratorResource
from twin_assets.datasets import storage
from twin_assets.defs.datasets.assets import instruction_dataset, preference_dataset
from twin_assets.defs.partitions import authors_partitions
from twin_assets.domain.documents import Category, Platform
from twin_assets_tests.fake_openai_server import FakeOpenAIServer
from twin_assets_tests.test_datasets_fixtures import AUTHOR, POSTS, cleaned, corpus

CLEANED = dg.AssetSpec("cleaned_documents", partitions_def=authors_partitions)
CONFIG = {"min_train_rows": 10}


@pytest.fixture
def instance():
    with dg.instance_for_test() as inst:
        inst.add_dynamic_partitions("authors", [AUTHOR])
        yield inst


@pytest.fixture
def filled(warehouse):
    warehouse.get_store().upsert_cleaned(corpus())
    return warehouse


def _run(assets, resources, instance, config=CONFIG, raise_on_error=True):
    run_config = {"ops": {a.op.name: {"config": config} for a in assets}}
    return dg.materialize(
        [CLEANED, *assets],
        selection=assets,
        resources=resources,
        instance=instance,
        partition_key=AUTHOR,
        run_config=run_config,
        raise_on_error=raise_on_error,
    )


def _mat(result, key):
    return next(m for m in result.asset_materializations_for_node(key))


def _checks(result):
    return {
        f"{e.asset_key.to_user_string()}:{e.check_name}": e.passed
        for e in result.get_asset_check_evaluations()
    }


def test_offline_build_is_versioned_and_stable(filled, instance, tmp_path):
    artifacts = ArtifactStoreResource(root_dir=str(tmp_path / "artifacts"))
    resources = {"warehouse": filled, "artifacts": artifacts, "llm": TextGeneratorResource()}
    result = _run([instruction_dataset, preference_dataset], resources, instance)
    assert result.success
    assert (
        set(_checks(result).values()) == {True} and len(_checks(result)) == 8
    )  # 3 blocking + no_failed_documents, each
    ins = _mat(result, "instruction_dataset")
    pref = _mat(result, "preference_dataset")
    v_ins = ins.metadata["version"].value
    assert ins.tags["dagster/data_version"] == v_ins
    assert "| near_dedup |" in ins.metadata["funnel"].value
    assert ins.metadata["generator"].value == "offline"
    assert "rejected=offline-generic" in pref.metadata["generator"].value
    root = tmp_path / "artifacts" / "datasets" / AUTHOR
    for kind in ("instruction", "preference"):
        card = json.loads((root / kind / "aliases/latest.json").read_text())
        version_dir = root / kind / card["version"]
        assert {p.name for p in version_dir.iterdir()} == {"train.parquet", "test.parquet", "card.json"}
        full = json.loads((version_dir / "card.json").read_text())
        assert full["counts"]["train"] >= 10 and full["source_hashes"] and full["funnel"]
        # split by source document: per-split document counts, none on both sides
        assert full["documents"]["train"] >= 5 and full["documents"]["test"] >= 2
        assert full["split"]["shared_documents"] == 0
        assert set(full["split"]["categories_without_test"]) == {"repositories"}  # one repo
        test_docs = {
            r.source_document_id for r in storage.load_split(artifacts, AUTHOR, kind, card["version"], "test")
        }
        assert len(test_docs) == full["documents"]["test"]
        assert not test_docs & {
            r.source_document_id
            for r in storage.load_split(artifacts, AUTHOR, kind, card["version"], "train")
        }
    # both datasets hold out the same documents: one assignment, recorded in both cards
    cards = {k: storage.load_card(artifacts, AUTHOR, k) for k in ("instruction", "preference")}
    assignments = {k: c.split.assignment for k, c in cards.items()}
    assert assignments["instruction"] == assignments["preference"]
    assert assignments["instruction"].test_document_ids
    agree = {
        k: v.value for m in (ins, pref) for k, v in m.metadata.items() if k.startswith("split_params_match_")
    }
    assert list(agree.values()) == [True]  # whichever was written second compared itself
    assert ins.metadata["split_assignment"].value == pref.metadata["split_assignment"].value
    leak = next(e for e in result.get_asset_check_evaluations() if e.check_name == "no_train_test_leakage")
    assert leak.metadata["shared_documents"].value == 0
    assert leak.metadata["test_documents"].value >= 2
    pref_card = storage.load_card(artifacts, AUTHOR, "preference")
    assert pref_card.parameters["rejected_source_resolved"] == "offline-generic"
    rows = storage.load_split(artifacts, AUTHOR, "instruction", v_ins, "train")
    assert all(r.output and r.instruction for r in rows)

    # unchanged data: same version, nothing rewritten, same data version
    again = _run([instruction_dataset], resources, instance)
    m2 = _mat(again, "instruction_dataset")
    assert m2.metadata["version"].value == v_ins and m2.metadata["reused_inputs_unchanged"].value
    assert m2.tags["dagster/data_version"] == v_ins

    # a material change (a new post) gives a new version; a no-op upsert does not
    filled.get_store().upsert_cleaned(corpus())
    assert (
        _mat(_run([instruction_dataset], resources, instance), "instruction_dataset")
        .metadata["version"]
        .value
        == v_ins
    )
    filled.get_store().upsert_cleaned(
        [
            cleaned(
                "https://www.linkedin.com/posts/jan_new",
                Category.POSTS,
                Platform.LINKEDIN,
                None,
                "Data contracts are the cheapest reliability tool I know. Before a pipeline writes a new "
                "column, the readers agree on its type and meaning, and the pipeline refuses to publish "
                "anything that breaks the contract. It slows the first week down and speeds up every "
                "week after it.",
            )
        ]
    )
    m3 = _mat(_run([instruction_dataset], resources, instance), "instruction_dataset")
    assert m3.metadata["version"].value != v_ins

    # a preference config with another split is flagged: it may hold out other documents
    m4 = _mat(
        _run([preference_dataset], resources, instance, {**CONFIG, "test_fraction": 0.3}),
        "preference_dataset",
    )
    assert m4.metadata["split_params_match_instruction"].value is False


def test_assets_use_the_configured_llm(filled, instance, tmp_path):
    server = FakeOpenAIServer().start()
    try:
        server.script("429", "500")  # retried transparently
        llm = TextGeneratorResource(
            backend="openai",
            base_url=server.base_url,
            model="fake-model",
            api_key="sk-secret",
            backoff_base_s=0.01,
            backoff_max_s=0.05,
        )
        artifacts = ArtifactStoreResource(root_dir=str(tmp_path / "artifacts"))
        resources = {"warehouse": filled, "artifacts": artifacts, "llm": llm}
        result = _run([instruction_dataset, preference_dataset], resources, instance)
        assert result.success
        ins = _mat(result, "instruction_dataset").metadata
        pref = _mat(result, "preference_dataset").metadata
        card = storage.load_card(artifacts, AUTHOR, "instruction")
        assert card.generator == "openai:fake-model"
        assert card.parameters["quality_scorer"] == "llm-judge:openai:fake-model"
        rows = storage.load_split(artifacts, AUTHOR, "instruction", card.version, "train")
        assert rows and all(r.instruction.startswith("[fake-llm]") for r in rows)
        assert all(r.quality == 0.75 for r in rows)  # the judge's 4/5
        prefs = storage.load_split(
            artifacts,
            AUTHOR,
            "preference",
            storage.load_card(artifacts, AUTHOR, "preference").version,
            "train",
        )
        assert prefs and all(r.rejected.startswith("[fake-llm]") for r in prefs)
        assert ins["llm_retries"].value == 2
        n_llm = (
            ins["llm_requests"].value
            + pref["llm_prompts_requests"].value
            + pref["llm_rejected_requests"].value
        )
        assert n_llm == server.requests
        assert ins["llm_prompt_tokens"].value > 0 and ins["llm_completion_tokens"].value > 0
        assert "sk-secret" not in json.dumps({k: str(v) for k, v in {**ins, **pref}.items()})

        # re-run on unchanged data: the version is reused without a single LLM call
        before = server.requests
        again = _run([instruction_dataset], resources, instance)
        assert _mat(again, "instruction_dataset").metadata["version"].value == card.version
        assert server.requests == before
    finally:
        server.stop()


def test_min_size_check_blocks_with_a_clear_message(warehouse, instance, tmp_path):
    warehouse.get_store().upsert_cleaned(
        [
            cleaned(f"https://www.linkedin.com/posts/jan_{i}", Category.POSTS, Platform.LINKEDIN, None, p)
            for i, p in enumerate(POSTS[:2])
        ]
    )
    resources = {
        "warehouse": warehouse,
        "llm": TextGeneratorResource(),
        "artifacts": ArtifactStoreResource(root_dir=str(tmp_path / "a")),
    }
    result = _run([instruction_dataset], resources, instance, {"min_train_rows": 20}, raise_on_error=False)
    assert not result.success  # a failed blocking check fails the step: downstream would not run
    evals = {e.check_name: e for e in result.get_asset_check_evaluations()}
    assert evals["minimum_training_size"].passed is False
    assert "Too little data" in evals["minimum_training_size"].description
    assert evals["no_train_test_leakage"].passed and evals["no_empty_fields"].passed


def test_automation_follows_cleaned_data_version_not_every_run(instance):
    """Re-materialise on a new cleaned-data *version*; a no-op upstream run (same data version)
    requests nothing. Also: the definitions load with these assets and the llm resource."""
    from twin_assets.defs.resources import build_resources

    defs = dg.Definitions(
        assets=[CLEANED, dg.AssetSpec("base_model"), instruction_dataset, preference_dataset],
        resources=build_resources(),
    )
    dg.Definitions.validate_loadable(defs)
    # the base model (writer of rejected answers) is in place, as `base_model` leaves it
    instance.report_runless_asset_event(
        dg.AssetMaterialization(asset_key="base_model", tags={"dagster/data_version": "base-1"})
    )

    def report(version: str) -> None:
        instance.report_runless_asset_event(
            dg.AssetMaterialization(
                asset_key="cleaned_documents", partition=AUTHOR, tags={"dagster/data_version": version}
            )
        )

    def requested(cursor):
        res = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=cursor)
        keys = {
            k.to_user_string()
            for k in (dg.AssetKey("instruction_dataset"), dg.AssetKey("preference_dataset"))
            if res.get_requested_partitions(k)
        }
        return keys, res.cursor

    keys, cursor = requested(None)  # first tick: new partition, upstream missing -> nothing yet
    assert keys == set()
    report("v1")
    keys, cursor = requested(cursor)
    assert keys == {"instruction_dataset", "preference_dataset"}  # missing + upstream present
    for key in ("instruction_dataset", "preference_dataset"):
        instance.report_runless_asset_event(dg.AssetMaterialization(asset_key=key, partition=AUTHOR))
    keys, cursor = requested(cursor)
    assert keys == set()
    report("v1")  # cleaned_documents re-ran, nothing changed
    keys, cursor = requested(cursor)
    assert keys == set()
    report("v2")  # the cleaned content changed
    keys, cursor = requested(cursor)
    assert keys == {"instruction_dataset", "preference_dataset"}
