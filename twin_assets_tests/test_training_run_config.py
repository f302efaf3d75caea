"""Launchpad defaults come from the deployment's variables at run time; the plain configs never
read the environment (they are the same in every process, SageMaker jobs included)."""

from __future__ import annotations

import dagster as dg

from twin_assets.defs.training.config import BaseModelConfig, DPOModelConfig, SFTModelConfig
from twin_assets.training.config import DPOTrainingConfig, SFTTrainingConfig


def test_plain_configs_ignore_the_environment(monkeypatch):
    monkeypatch.setenv("TWIN_BASE_MODEL", "org/somewhere")
    monkeypatch.setenv("TWIN_SFT_MAX_STEPS", "99")
    assert not issubclass(SFTTrainingConfig, dg.Config) and not issubclass(DPOTrainingConfig, dg.Config)
    sft = SFTTrainingConfig()
    assert (sft.base_model, sft.max_steps, sft.max_length) == ("", 12, 256)
    assert (DPOTrainingConfig().max_steps, DPOTrainingConfig().max_length) == (8, 256)


def test_run_config_defaults_follow_the_deployment_variables(monkeypatch):
    for name in (
        "TWIN_BASE_MODEL",
        "TWIN_SFT_MAX_STEPS",
        "TWIN_SFT_MAX_LENGTH",
        "TWIN_DPO_MAX_STEPS",
        "TWIN_DPO_MAX_LENGTH",
    ):
        monkeypatch.delenv(name, raising=False)
    assert SFTModelConfig().training_config() == SFTTrainingConfig()
    assert DPOModelConfig().training_config() == DPOTrainingConfig()
    monkeypatch.setenv("TWIN_BASE_MODEL", "/models/base")
    monkeypatch.setenv("TWIN_SFT_MAX_STEPS", "-1")
    monkeypatch.setenv("TWIN_SFT_MAX_LENGTH", "2048")
    monkeypatch.setenv("TWIN_DPO_MAX_STEPS", "300")
    monkeypatch.setenv("TWIN_DPO_MAX_LENGTH", "1024")
    sft = SFTModelConfig().training_config()
    assert type(sft) is SFTTrainingConfig
    assert (sft.base_model, sft.max_steps, sft.max_length) == ("/models/base", -1, 2048)
    dpo = DPOModelConfig().training_config()
    assert (dpo.max_steps, dpo.max_length) == (300, 1024)
    assert BaseModelConfig().base_model == "/models/base"
    # a value set in the run config wins over the deployment default
    assert SFTModelConfig(base_model="other", max_steps=3).training_config().max_steps == 3
