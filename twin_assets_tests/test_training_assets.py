"""SFT + DPO end to end through the Dagster assets with a tiny smoke-test Llama."""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg
import pytest

from resources.artifacts import ArtifactStoreResource
from twin_assets.defs.partitions import authors_partitions
from twin_assets.defs.training.assets import sft_model
from twin_assets_tests.training_fixtures import (
    AUTHOR,
    instruction_rows,
    preference_rows,
    tiny_model,
    train_sft_and_dpo,
    write_dataset,
)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("training")
    artifacts = ArtifactStoreResource(root_dir=str(root / "artifacts"))
    inst_version = write_dataset(artifacts, "instruction", instruction_rows())
    pref_version = write_dataset(artifacts, "preference", preference_rows())
    base = tiny_model(root)
    result, resources, run_config = train_sft_and_dpo(root, artifacts, base, AUTHOR, sft_steps=4)
    # The re-run uses a fresh instance on purpose: "already trained" must come from the model
    # registry alone (another worker, another Dagster instance). It also keeps this heavy
    # fixture clear of an intermittent Dagster error seen when a second run reused the
    # instance after the training run ("Attempted to resolve undefined DagsterInstance weakref").
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(authors_partitions.name, [AUTHOR])
        again = dg.materialize(
            [sft_model],
            resources=resources,
            instance=instance,
            partition_key=AUTHOR,
            run_config={"ops": {"sft_model": run_config["ops"]["sft_model"]}},
        )
    yield {
        "result": result,
        "again": again,
        "artifacts": artifacts,
        "root": root,
        "base": base,
        "inst_version": inst_version,
        "pref_version": pref_version,
        "run_config": run_config,
    }


def _mat(result, key: str) -> dg.AssetMaterialization:
    return result.asset_materializations_for_node(key)[0]


def test_sft_and_dpo_registered_with_cards_and_aliases(trained):
    artifacts: ArtifactStoreResource = trained["artifacts"]
    sft = _mat(trained["result"], "sft_model")
    dpo = _mat(trained["result"], "dpo_model")
    sft_version = sft.metadata["model_version"].value
    dpo_version = dpo.metadata["model_version"].value
    assert sft.tags["dagster/data_version"] == sft_version
    for kind, version, dataset_version in (
        ("sft", sft_version, trained["inst_version"]),
        ("dpo", dpo_version, trained["pref_version"]),
    ):
        base = Path(artifacts.root_dir) / "models" / AUTHOR / kind
        card = json.loads((base / version / "model_card.json").read_text())
        assert card["dataset_version"] == dataset_version
        assert card["smoke_test"] is True and "smoke-test" in card["label"]
        assert card["hyperparameters"]["lora_r"] == 8 if kind == "sft" else True
        assert card["metrics"]["train_loss"] > 0 and "eval_loss" in card["metrics"]
        assert card["code_version"] and card["lineage"]["dataset"]["version"] == dataset_version
        assert "smoke-test model" in (base / version / "README.md").read_text()
        assert (base / version / "adapter" / "adapter_model.safetensors").exists()
        assert (base / version / "loss_curve.png").read_bytes().startswith(b"\x89PNG")  # published with it
        assert json.loads((base / "aliases" / "latest.json").read_text())["version"] == version
        # production is moved by deployed_endpoint only, after the gate and a smoke request
        assert not (base / "aliases" / "production.json").exists()
    dpo_card = json.loads(
        (Path(artifacts.root_dir) / "models" / AUTHOR / "dpo" / dpo_version / "model_card.json").read_text()
    )
    assert dpo_card["parent_model"]["version"] == sft_version
    assert dpo.metadata["sft_model_version"].value == sft_version
    # metadata: loss plot (embedded PNG + table), losses, throughput, smoke label
    assert "data:image/png;base64," in sft.metadata["loss_curve"].value
    assert "| step |" in sft.metadata["loss_curve"].value
    assert sft.metadata["tokens_per_second"].value > 0
    assert sft.metadata["smoke_test"].value is True


def test_dpo_card_traces_the_exact_base_weights(trained):
    """The DPO version's lineage names the base checkpoint's content fingerprint, the same one
    its SFT parent recorded (it used to be empty, so a DPO model could not be traced to the
    weights it runs on)."""
    models = Path(trained["artifacts"].root_dir) / "models" / AUTHOR
    cards = {}
    for kind in ("sft", "dpo"):
        version = _mat(trained["result"], f"{kind}_model").metadata["model_version"].value
        cards[kind] = json.loads((models / kind / version / "model_card.json").read_text())
    sft_fp = cards["sft"]["lineage"]["base_model"]["fingerprint"]
    assert sft_fp and len(sft_fp) == 64
    assert cards["dpo"]["lineage"]["base_model"]["fingerprint"] == sft_fp
    assert (
        cards["dpo"]["lineage"]["base_model"]["resolved"] == cards["sft"]["lineage"]["base_model"]["resolved"]
    )


def test_chat_template_saved_is_the_one_trained_with(trained):
    from transformers import AutoTokenizer

    from twin_assets.training.chat import format_prompt, resolve_chat_template

    artifacts = trained["artifacts"]
    sft_version = _mat(trained["result"], "sft_model").metadata["model_version"].value
    card = json.loads(
        (Path(artifacts.root_dir) / "models" / AUTHOR / "sft" / sft_version / "model_card.json").read_text()
    )
    saved = AutoTokenizer.from_pretrained(
        str(Path(artifacts.root_dir) / "models" / AUTHOR / "sft" / sft_version / "adapter")
    )
    base_tok = AutoTokenizer.from_pretrained(str(trained["base"]))
    import hashlib

    assert saved.chat_template == resolve_chat_template(base_tok)
    assert hashlib.sha256(saved.chat_template.encode()).hexdigest() == card["chat_template_sha256"]
    prompt = format_prompt(saved, "Write about queues.")
    assert prompt.endswith("<|im_start|>assistant\n") and "Write about queues." in prompt


def test_identical_inputs_do_not_retrain(trained):
    first = _mat(trained["result"], "sft_model")
    again = _mat(trained["again"], "sft_model")
    assert again.metadata["model_version"].value == first.metadata["model_version"].value
    assert again.metadata["retrained"].value is False
    assert first.metadata["retrained"].value is True


def test_wandb_offline_run_files_exist(trained):
    wandb_dir = trained["root"] / "wandb" / "wandb"
    runs = sorted(wandb_dir.glob("offline-run-*"))
    assert len(runs) == 2  # sft + dpo; the no-op rematerialization opened no run
    assert all(list(r.glob("run-*.wandb")) for r in runs)
    sft = _mat(trained["result"], "sft_model")
    assert sft.metadata["tracking"].value["mode"] == "offline"


def test_dpo_reference_model_is_frozen_sft_adapter(tmp_path):
    """trl with a trainable PeftModel and ref_model=None adds a 'ref' copy of the SFT adapter."""
    from twin_assets.training.config import DPOTrainingConfig, SFTTrainingConfig
    from twin_assets.training.dpo import run_dpo
    from twin_assets.training.sft import run_sft

    base = tiny_model(tmp_path)
    sft = run_sft(
        str(base),
        instruction_rows()[:8],
        [],
        SFTTrainingConfig(max_steps=1, max_length=256),
        tmp_path / "sft",
    )
    dpo = run_dpo(
        str(base),
        sft.model_dir,
        preference_rows()[:4],
        [],
        DPOTrainingConfig(max_steps=1, max_length=256),
        tmp_path / "dpo",
    )
    assert dpo.extra["peft_adapters_during_training"] == ["default", "ref"]
    assert not (tmp_path / "dpo" / "ref").exists()  # only the trained adapter is saved
