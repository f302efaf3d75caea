"""`evaluation_report` end to end with real (tiny smoke-test) models: a healthy SFT/DPO pair
passes the deploy gate, a deliberately damaged adapter fails it with the metrics named, the judge
path runs against the fake OpenAI-compatible server (a malformed reply is a recorded error), and
a re-run on unchanged inputs evaluates nothing."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import dagster as dg
import pytest

from resources.artifacts import ArtifactStoreResource
from resources.embedder import EmbedderResource
from resources.llm import TextGeneratorResource
from resources.tracking import WandbResource
from resources.vector_store import QdrantResource
from twin_assets.defs.evaluation.assets import GATE, evaluation_report
from twin_assets.defs.partitions import authors_partitions
from twin_assets.training import registry
from twin_assets_tests.fake_openai_server import FakeOpenAIServer
from twin_assets_tests.training_fixtures import (
    AUTHOR,
    instruction_rows,
    preference_rows,
    tiny_model,
    train_sft_and_dpo,
    write_dataset,
)

EVAL_CONFIG = {"max_items": 5, "max_new_tokens": 12, "batch_size": 4, "samples": 2, "judge_items": 2}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("evaluation")
    artifacts = ArtifactStoreResource(root_dir=str(root / "artifacts"))
    write_dataset(artifacts, "instruction", instruction_rows())
    write_dataset(artifacts, "preference", preference_rows())
    base = tiny_model(root)
    result, _, _ = train_sft_and_dpo(root, artifacts, base, AUTHOR, sft_steps=12)
    # as if deployed_endpoint had deployed this DPO version (training never moves production)
    dpo_version = result.asset_materializations_for_node("dpo_model")[0].metadata["model_version"].value
    registry.set_production(artifacts, AUTHOR, "dpo", str(dpo_version))
    server = FakeOpenAIServer().start()
    yield {"root": root, "artifacts": artifacts, "result": result, "server": server}
    server.stop()


def _resources(trained, warehouse, llm: TextGeneratorResource, tracked: bool = False) -> dict:
    return {
        "wandb": WandbResource(dir=str(trained["root"] / "wandb-eval"), mode="offline", project="twin-test")
        if tracked
        else WandbResource(enabled=False),
        "artifacts": trained["artifacts"],
        "llm": llm,
        "embedder": EmbedderResource(batch_size=16),
        "warehouse": warehouse,
        "qdrant": QdrantResource(path=str(trained["root"] / "qdrant"), collection="eval_chunks"),
    }


def _evaluate(
    trained, warehouse, llm: TextGeneratorResource, config: dict | None = None, tracked: bool = False
):
    """One materialization in a fresh instance: what the report reuses must come from the store."""
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(authors_partitions.name, [AUTHOR])
        return dg.materialize(
            [evaluation_report],
            resources=_resources(trained, warehouse, llm, tracked),
            instance=instance,
            partition_key=AUTHOR,
            run_config={"ops": {"evaluation_report": {"config": config or EVAL_CONFIG}}},
            raise_on_error=False,
        )


def _judge(server: FakeOpenAIServer) -> TextGeneratorResource:
    return TextGeneratorResource(
        backend="openai", base_url=server.base_url, model="fake-judge", api_key="k", max_retries=0
    )


def _mat(result) -> dg.AssetMaterialization:
    return result.asset_materializations_for_node("evaluation_report")[0]


def _check(result) -> dg.AssetCheckEvaluation:
    return result.get_asset_check_evaluations()[0]


def test_healthy_pair_passes_with_judge_and_rerun_evaluates_nothing(trained, warehouse):
    server: FakeOpenAIServer = trained["server"]
    server.reset()
    server.script("bad_json")  # the judge's first reply is malformed
    result = _evaluate(trained, warehouse, _judge(server))
    assert result.success
    mat = _mat(result)
    check = _check(result)
    assert check.check_name == GATE
    assert check.passed, check.description
    assert mat.metadata["evaluated"].value is True
    numbers = mat.metadata["numbers"].value
    assert set(numbers) == {"base", "sft", "dpo"}  # production alias points at the dpo column
    assert numbers["dpo"]["nll"] < numbers["base"]["nll"]
    for column in ("sft", "dpo"):
        assert 0.0 <= numbers[column]["preference_accuracy"] <= 1.0
        assert "rouge_l" in numbers[column] and "chrf" in numbers[column]
        assert -1.0 <= numbers[column]["embedding_cosine"] <= 1.0
        assert 0.0 <= numbers[column]["degeneration"] <= 1.0
    assert numbers["base"]["preference_accuracy"] is None  # the reference of the implicit reward
    # judge: real HTTP to the fake server, the malformed reply recorded, the rest scored
    judge = mat.metadata["judge"].value
    assert judge["configured"] is True and judge["errors"] == 1
    assert judge["error_reasons"] == {"bad_json": 1}
    assert judge["accuracy"] == 4.0 and judge["style"] == 4.0
    # the fake always answers 4 ("B somewhat more"): swapping positions cancels it out
    assert judge["pairwise_win_rate"] == 0.5 and judge["position_bias"] == 1.0
    assert numbers["dpo"]["judge_style"] == 4.0
    requests = server.requests
    assert requests == 2 * 4  # 2 items x (accuracy, style, pairwise twice)
    # the artifact: JSON, Markdown and PNG under the report version, `latest` alias
    version = mat.metadata["report_version"].value
    assert mat.tags["dagster/data_version"] == version
    folder = Path(trained["artifacts"].root_dir) / "evaluations" / AUTHOR / version
    stored = json.loads((folder / "report.json").read_text())
    assert stored["gate"]["passed"] is True and stored["rows"]["dpo"]["nll"] == numbers["dpo"]["nll"]
    assert "Deploy gate: PASSED" in (folder / "report.md").read_text()
    assert (folder / "report.png").read_bytes().startswith(b"\x89PNG")
    assert "| held-out NLL" in mat.metadata["report"].value
    assert "data:image/png;base64," in mat.metadata["plot"].value
    dpo_version = numbers["dpo"]["version"]
    approved = Path(trained["artifacts"].root_dir) / "models" / AUTHOR / "dpo" / "aliases" / "approved.json"
    assert json.loads(approved.read_text())["version"] == dpo_version
    # no-op re-run: same inputs -> the stored report, no model run, no judge call
    again = _evaluate(trained, warehouse, _judge(server))
    assert again.success
    assert _mat(again).metadata["evaluated"].value is False
    assert _mat(again).tags["dagster/data_version"] == version
    assert _check(again).passed
    assert server.requests == requests


def _damage(artifacts: ArtifactStoreResource) -> str:
    """Register a copy of the DPO version whose adapter is deliberately damaged, and point
    `latest` (not `production`) at it.

    The damage is a LoRA on the output head with large weights (seeded): the scaled-up low-rank
    update swamps the logits, so the model is confidently wrong and its output loops. (Scaling the
    trained LoRA weights instead is not a reliable damage on the tiny random-init test model: its
    final norm bounds the hidden state, so its predictions stay near uniform either way.)
    """
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    models = Path(artifacts.root_dir) / "models" / AUTHOR / "dpo"
    healthy = json.loads((models / "aliases" / "latest.json").read_text())["version"]
    damaged = "damaged" + healthy[:9]
    shutil.copytree(models / healthy, models / damaged)
    card = json.loads((models / damaged / "model_card.json").read_text())
    base = AutoModelForCausalLM.from_pretrained(card["lineage"]["base_model"]["resolved"])
    model = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules=["lm_head"]))
    generator = torch.Generator().manual_seed(0)
    for name, param in model.named_parameters():
        if "lora_A" in name or "lora_B" in name:
            scale = 20.0 if "lora_B" in name else 1.0
            param.data = torch.randn(param.shape, generator=generator) * scale
    model.save_pretrained(str(models / damaged / "adapter"))  # tokenizer files stay as they were
    card["version"] = damaged
    (models / damaged / "model_card.json").write_text(json.dumps(card))
    artifacts.write_alias(f"models/{AUTHOR}/dpo", "latest", damaged)
    return damaged


def test_damaged_adapter_fails_the_gate_naming_the_metrics(trained, warehouse):
    artifacts = trained["artifacts"]
    models = Path(artifacts.root_dir) / "models" / AUTHOR / "dpo"
    healthy = json.loads((models / "aliases" / "latest.json").read_text())["version"]
    damaged = _damage(artifacts)
    try:
        result = _evaluate(trained, warehouse, TextGeneratorResource(backend="offline"), tracked=True)
    finally:
        artifacts.write_alias(f"models/{AUTHOR}/dpo", "latest", healthy)
    # the report is stored and materialized, but the blocking check fails the step: nothing
    # downstream of evaluation_report runs on this model
    assert not result.success
    check = _check(result)
    assert not check.passed
    assert damaged in check.description and "nll" in check.description
    meta = check.metadata
    assert "nll_vs_base" in meta and "candidate" in meta["nll_vs_base"].value
    assert "nll_vs_production" in meta  # production still holds the healthy DPO version
    numbers = _mat(result).metadata["numbers"].value
    assert numbers["production"]["version"] == healthy and numbers["dpo"]["version"] == damaged
    assert numbers["dpo"]["nll"] > numbers["base"]["nll"]
    # both values are in the check result
    assert f"{numbers['dpo']['nll']:.4f}" in meta["nll_vs_base"].value
    assert f"{numbers['base']['nll']:.4f}" in meta["nll_vs_base"].value
    # no judge configured: its rows say so, never a number
    table = _mat(result).metadata["table"].value.records
    judge_rows = [r.data for r in table if r.data["metric"].startswith("judge")]
    assert judge_rows and all(r["dpo"] == "not configured" for r in judge_rows)
    # logged to W&B offline: one run with the gate's verdict
    runs = list((trained["root"] / "wandb-eval" / "wandb").glob("offline-run-*"))
    assert len(runs) == 1 and list(runs[0].glob("run-*.wandb"))
    # the damaged candidate was not approved
    approved = (
        json.loads((models / "aliases" / "approved.json").read_text())["version"]
        if (models / "aliases" / "approved.json").exists()
        else None
    )
    assert approved != damaged
