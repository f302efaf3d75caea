"""Merged weights (base + LoRA folded into a plain checkpoint that loads without peft, gives
the same outputs as base + adapter, keeps the base's dtype and carries the chat template),
and truncation guards: a max_length that leaves SFT or DPO nothing to learn is refused."""

from __future__ import annotations

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from resources.artifacts import ArtifactStoreResource
from resources.tracking import WandbResource
from twin_assets.training import registry
from twin_assets.training.config import SFTTrainingConfig
from twin_assets.training.pipeline import train_and_register
from twin_assets_tests.training_fixtures import AUTHOR, instruction_rows, tiny_model, write_dataset


def test_registered_merged_weights_match_base_plus_adapter(tmp_path, tmp_data_dir):
    from peft import PeftModel

    artifacts = ArtifactStoreResource(root_dir=str(tmp_path / "artifacts"))
    dataset = write_dataset(artifacts, "instruction", instruction_rows())
    base = tiny_model(tmp_path)
    # a LoRA with a real effect after a few steps: large learning rate, no warm-up
    cfg = SFTTrainingConfig(
        base_model=str(base),
        max_steps=3,
        max_length=256,
        merge_weights=True,
        learning_rate=5e-2,
        warmup_ratio=0.0,
    )
    out = train_and_register(
        kind="sft",
        author=AUTHOR,
        dataset_version=dataset,
        cfg=cfg,
        artifacts=artifacts,
        tracker=WandbResource(enabled=False),
        log=lambda m: None,
    )
    version_dir = registry.model_dir(artifacts, AUTHOR, "sft", out.card.version)  # the adapter
    merged_dir = artifacts.local_path(registry.model_key(AUTHOR, "sft", out.card.version)) / "merged"
    assert (merged_dir / "config.json").exists() and not (merged_dir / "adapter_config.json").exists()

    merged = AutoModelForCausalLM.from_pretrained(merged_dir, dtype=torch.float32).eval()
    with_adapter = PeftModel.from_pretrained(
        AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32), str(version_dir)
    ).eval()
    plain_base = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32).eval()
    ids = torch.randint(4, 200, (2, 24), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        a, b, c = (m(input_ids=ids).logits for m in (merged, with_adapter, plain_base))
    assert (b - c).abs().max() > 1e-3  # the adapter changed the model...
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)  # ...and the merge kept exactly that

    stored_dtype = AutoModelForCausalLM.from_pretrained(base).dtype
    assert AutoModelForCausalLM.from_pretrained(merged_dir).dtype == stored_dtype
    tok = AutoTokenizer.from_pretrained(merged_dir)
    assert tok.chat_template and tok.chat_template == AutoTokenizer.from_pretrained(version_dir).chat_template


def test_a_max_length_that_leaves_no_answer_tokens_is_refused_not_trained(tmp_path):
    """Completion-only loss + a max_length shorter than the prompts: every label is masked and
    a run would 'succeed' with an unchanged model. It must fail with the reason instead."""
    import pytest

    from twin_assets.training.sft import build_sft_trainer, supervised_tokens

    base = tiny_model(tmp_path)
    with pytest.raises(ValueError, match=r"no answer tokens left to learn from.*max_length=64"):
        build_sft_trainer(
            str(base),
            instruction_rows(),
            [],
            SFTTrainingConfig(base_model=str(base), max_steps=1, max_length=64),
            tmp_path / "short",
        )
    trainer, *_ = build_sft_trainer(
        str(base),
        instruction_rows(),
        [],
        SFTTrainingConfig(base_model=str(base), max_steps=1, max_length=256),
        tmp_path / "long",
    )
    supervised, total = supervised_tokens(trainer.train_dataset)
    assert 0 < supervised < total
    labels = [t for row in trainer.train_dataset["labels"] for t in row]
    assert supervised == sum(1 for t in labels if t != -100) and total == len(labels)


def test_dpo_refuses_a_max_length_no_pair_fits(tmp_path):
    import pytest

    from twin_assets.training.config import DPOTrainingConfig
    from twin_assets.training.dpo import run_dpo
    from twin_assets.training.sft import run_sft
    from twin_assets_tests.training_fixtures import preference_rows

    base = tiny_model(tmp_path)
    sft = run_sft(
        str(base),
        instruction_rows()[:8],
        [],
        SFTTrainingConfig(max_steps=1, max_length=256),
        tmp_path / "sft",
    )
    with pytest.raises(ValueError, match="no preference pair fits max_length=32"):
        run_dpo(
            str(base),
            sft.model_dir,
            preference_rows()[:6],
            [],
            DPOTrainingConfig(max_steps=1, max_length=32),
            tmp_path / "dpo",
        )
    ok = run_dpo(
        str(base),
        sft.model_dir,
        preference_rows()[:6],
        [],
        DPOTrainingConfig(max_steps=1, max_length=256),
        tmp_path / "dpo2",
    )
    assert ok.metrics["train_pairs"] == 6 and ok.metrics["train_pairs_dropped_too_long"] == 0
