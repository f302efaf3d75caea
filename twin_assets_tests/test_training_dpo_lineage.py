"""Where a DPO card's base-model fingerprint comes from when it cannot simply be computed."""

from __future__ import annotations

import json
from pathlib import Path

from twin_assets.domain.models import ModelCard
from twin_assets.training import fingerprints
from twin_assets.training.pipeline import _dpo_base_fingerprint


class _EnabledLauncher:
    enabled = True


def _parent(fingerprint: str) -> ModelCard:
    return ModelCard(
        author_id="a",
        kind="sft",
        version="s1",
        base_model="org/base",
        method="lora",
        dataset_kind="instruction",
        dataset_version="v1",
        code_version="c1",
        lineage={
            "base_model": {"configured": "org/base", "resolved": "org/base", "fingerprint": fingerprint}
        },
    )


def test_a_base_only_sagemaker_can_load_takes_the_sft_parents_record(monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    logs: list[str] = []
    fp = _dpo_base_fingerprint(_parent("f" * 64), "org/never-downloaded", _EnabledLauncher(), logs.append)  # type: ignore[arg-type]
    assert fp == "f" * 64
    assert any("not available here" in line for line in logs)


def test_base_weights_changed_since_the_sft_parent_is_recorded_and_said(tmp_path, tmp_data_dir):
    base = tmp_path / "base"
    base.mkdir()
    (base / "config.json").write_text(json.dumps({"architectures": ["LlamaForCausalLM"]}))
    (base / "model.safetensors").write_bytes(b"weights")
    now = fingerprints.fingerprint_directory(Path(base)).digest
    logs: list[str] = []
    assert _dpo_base_fingerprint(_parent(now), str(base), None, logs.append) == now
    assert logs == []
    assert _dpo_base_fingerprint(_parent("0" * 64), str(base), None, logs.append) == now  # what DPO loads
    assert any("changed since SFT s1" in line for line in logs)
