"""Typed hyper-parameters for SFT and DPO: plain pydantic models, the same in every process.

WHY plain pydantic (no Dagster `Config` base, no environment reads): `python -m
twin_assets.training.entrypoint` runs these inside SageMaker/GPU images where Dagster is not
installed, and a default that depended on the environment of whichever process imported this
module would make the same run config mean different things in different places. The Dagster
run-config classes (launchpad defaults from TWIN_BASE_MODEL, TWIN_SFT_MAX_STEPS, ...) derive
from these in `twin_assets/defs/training/config.py`.

WHY zero/empty sentinels: good values depend on the base model's size (LoRA rank, learning
rate, batch). Fields left at their sentinel are filled by `resolve_*` from
`size_defaults(n_params)`; anything set explicitly wins. Every resolved value goes into the
model card and the version hash.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

SFT_MAX_STEPS = 12
"""Default step cap: a quick CPU demo. Production sets it through the run config (or -1)."""
SFT_MAX_LENGTH = 256
DPO_MAX_STEPS = 8
DPO_MAX_LENGTH = 256


class SFTTrainingConfig(BaseModel):
    """One SFT run's settings; `base_model` is part of it because the base is an input of the version."""

    base_model: str = Field(
        default="", description="HF model id or local path; empty = offline SmolLM2-135M-Instruct."
    )
    method: Literal["lora", "qlora", "full", "auto"] = Field(
        default="auto", description="auto: QLoRA with bitsandbytes+CUDA, else LoRA."
    )
    lora_r: int = Field(default=0, description="0 = by model size.")
    lora_alpha: int = Field(default=0, description="0 = 2 * lora_r.")
    lora_dropout: float = 0.05
    lora_target_modules: str = Field(default="all-linear", description="'all-linear' or comma list.")
    learning_rate: float = Field(default=0.0, description="0 = by model size and method.")
    lr_scheduler_type: str = "cosine"
    warmup_ratio: float = 0.05
    weight_decay: float = 0.0
    max_steps: int = Field(
        default=SFT_MAX_STEPS, description=">0 caps training steps (quick CPU demo default); -1 = epochs."
    )
    num_train_epochs: float = 3.0
    per_device_batch_size: int = Field(default=0, description="0 = by device and model size.")
    gradient_accumulation_steps: int = 1
    max_length: int = SFT_MAX_LENGTH
    packing: bool = True
    completion_only_loss: bool = Field(default=True, description="Loss on assistant tokens only.")
    gradient_checkpointing: bool = Field(default=False, description="Trade speed for memory.")
    bf16: Literal["auto", "true", "false"] = "auto"
    seed: int = 42
    eval_steps: int = Field(default=0, description="0 = evaluate at the end only.")
    logging_steps: int = 1
    merge_weights: bool = Field(default=False, description="Also register merged weights.")
    system_prompt: str = ""
    promote_to_production: bool = Field(default=True, description="Move the 'production' alias.")


class DPOTrainingConfig(BaseModel):
    """One DPO run's settings; the base model is the SFT parent's, so it is not configured here."""

    beta: float = 0.1
    learning_rate: float = Field(default=0.0, description="0 = by model size (SFT LR / 10).")
    lr_scheduler_type: str = "cosine"
    warmup_ratio: float = 0.05
    max_steps: int = DPO_MAX_STEPS
    num_train_epochs: float = 1.0
    per_device_batch_size: int = Field(default=0, description="0 = by device and model size.")
    gradient_accumulation_steps: int = 1
    max_length: int = DPO_MAX_LENGTH
    loss_type: str = "sigmoid"
    gradient_checkpointing: bool = False
    bf16: Literal["auto", "true", "false"] = "auto"
    seed: int = 42
    logging_steps: int = 1
    merge_weights: bool = False
    system_prompt: str = ""
    promote_to_production: bool = True


def size_defaults(n_params: int, method: str, on_gpu: bool) -> dict:
    """Defaults per model size: smaller models take bigger ranks relative to width and higher LRs."""
    if n_params < 500e6:
        d = {"lora_r": 8, "lr_lora": 2e-4, "lr_full": 5e-5, "batch_gpu": 16}
    elif n_params < 4e9:
        d = {"lora_r": 16, "lr_lora": 2e-4, "lr_full": 2e-5, "batch_gpu": 8}
    elif n_params < 15e9:
        d = {"lora_r": 32, "lr_lora": 1e-4, "lr_full": 1e-5, "batch_gpu": 4}
    else:
        d = {"lora_r": 64, "lr_lora": 5e-5, "lr_full": 5e-6, "batch_gpu": 2}
    lr = d["lr_full"] if method == "full" else d["lr_lora"]
    return {"lora_r": d["lora_r"], "learning_rate": lr, "batch_size": d["batch_gpu"] if on_gpu else 2}


def resolve_method(requested: str, on_gpu: bool) -> str:
    if requested != "auto":
        if requested == "qlora" and not (on_gpu and _has_bitsandbytes()):
            raise ValueError("method=qlora needs CUDA and bitsandbytes; use lora or full")
        return requested
    return "qlora" if on_gpu and _has_bitsandbytes() else "lora"


def resolve_bf16(flag: str, on_gpu: bool) -> bool:
    if flag == "auto":
        import torch

        return on_gpu and torch.cuda.is_bf16_supported()
    return flag == "true"


def _has_bitsandbytes() -> bool:
    import importlib.util

    return importlib.util.find_spec("bitsandbytes") is not None
