"""Supervised fine-tuning: trl `SFTTrainer` + peft LoRA/QLoRA (or full) + accelerate.

Samples are conversational (`messages`: system/user/assistant) rendered by the tokenizer's
chat template (see `chat.py`), and the loss covers the assistant's tokens only (trl's
`assistant_only_loss`, which needs `{% generation %}` markers: `resolve_chat_template` makes
sure the template has them). The same tokenizer, template included, is saved with the adapter.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from twin_assets.training.base_model import SMOKE_TEST_MARKER, is_smoke_test_model
from twin_assets.training.chat import DEFAULT_SYSTEM_PROMPT, apply_project_template, instruction_messages
from twin_assets.training.config import (
    SFTTrainingConfig,
    resolve_bf16,
    resolve_method,
    size_defaults,
)
from twin_assets.training.result import TrainingResult
from twin_assets.training.runtime import (
    ThroughputCallback,
    count_parameters,
    device_info,
    load_causal_lm,
    loss_history,
    speed_settings,
)


def sft_messages(rows: list[dict], system_prompt: str = "") -> list[dict]:
    """Instruction rows -> trl conversational samples (one chat per row)."""
    system = system_prompt or DEFAULT_SYSTEM_PROMPT
    return [{"messages": instruction_messages(r["instruction"], r["output"], system)} for r in rows]


def build_sft_trainer(
    base_model: str,
    train_rows: list[dict],
    eval_rows: list[dict],
    cfg: SFTTrainingConfig,
    work_dir: Path,
    *,
    report_to: list[str] | None = None,
    run_name: str = "sft",
    attn_implementation: str = "auto",
    extra_args: dict[str, Any] | None = None,
):
    """Everything up to `trainer.train()`: used by `run_sft` and by the throughput benchmark."""
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoTokenizer
    from trl.trainer.sft_config import SFTConfig
    from trl.trainer.sft_trainer import SFTTrainer

    dev = device_info()
    method = resolve_method(cfg.method, dev.on_gpu)
    bf16 = resolve_bf16(cfg.bf16, dev.on_gpu)
    tokenizer = AutoTokenizer.from_pretrained(base_model)
    template = apply_project_template(tokenizer)
    model = load_causal_lm(
        base_model, on_gpu=dev.on_gpu, bf16=bf16, method=method, attn_implementation=attn_implementation
    )
    n_params, _ = count_parameters(model)
    defaults = size_defaults(n_params, method, dev.on_gpu)
    lora_r = cfg.lora_r or defaults["lora_r"]
    hyper = {
        "method": method,
        "base_model": base_model,
        "learning_rate": cfg.learning_rate or defaults["learning_rate"],
        "per_device_batch_size": cfg.per_device_batch_size or defaults["batch_size"],
        "lora_r": lora_r if method != "full" else None,
        "lora_alpha": (cfg.lora_alpha or 2 * lora_r) if method != "full" else None,
        "lora_dropout": cfg.lora_dropout if method != "full" else None,
        "lora_target_modules": cfg.lora_target_modules if method != "full" else None,
        "bf16": bf16,
        "attn_implementation": model.config._attn_implementation,
        **{
            k: getattr(cfg, k)
            for k in (
                "lr_scheduler_type",
                "warmup_ratio",
                "weight_decay",
                "max_steps",
                "num_train_epochs",
                "gradient_accumulation_steps",
                "max_length",
                "packing",
                "completion_only_loss",
                "gradient_checkpointing",
                "seed",
            )
        },
    }
    peft_config = None
    if method != "full":
        targets = cfg.lora_target_modules
        peft_config = LoraConfig(
            r=lora_r,
            lora_alpha=hyper["lora_alpha"],
            lora_dropout=cfg.lora_dropout,
            target_modules="all-linear"
            if targets == "all-linear"
            else [t.strip() for t in targets.split(",")],
            task_type="CAUSAL_LM",
        )
    train_ds = Dataset.from_list(sft_messages(train_rows, cfg.system_prompt))
    eval_ds = Dataset.from_list(sft_messages(eval_rows, cfg.system_prompt)) if eval_rows else None
    has_eval = eval_ds is not None and len(eval_ds) > 0
    args = SFTConfig(
        output_dir=str(work_dir / "checkpoints"),
        run_name=run_name,
        report_to=report_to or [],
        max_steps=cfg.max_steps if cfg.max_steps > 0 else -1,
        num_train_epochs=cfg.num_train_epochs,
        per_device_train_batch_size=hyper["per_device_batch_size"],
        per_device_eval_batch_size=hyper["per_device_batch_size"],
        gradient_accumulation_steps=cfg.gradient_accumulation_steps,
        learning_rate=hyper["learning_rate"],
        lr_scheduler_type=cfg.lr_scheduler_type,
        warmup_steps=cfg.warmup_ratio,  # transformers 5: a float < 1 is a ratio of total steps
        weight_decay=cfg.weight_decay,
        max_length=cfg.max_length,
        packing=cfg.packing,
        packing_strategy="bfd",  # padding-free: sequence boundaries via position_ids, no cross-talk
        padding_free=cfg.packing,
        assistant_only_loss=cfg.completion_only_loss,
        gradient_checkpointing=cfg.gradient_checkpointing,
        seed=cfg.seed,
        data_seed=cfg.seed,
        logging_steps=cfg.logging_steps,
        eval_strategy=("steps" if cfg.eval_steps else "no") if has_eval else "no",
        eval_steps=cfg.eval_steps or None,
        save_strategy="no",
        dataset_num_proc=None,
        disable_tqdm=True,
        **speed_settings(dev.on_gpu, bf16),
        **(extra_args or {}),
    )
    trainer = SFTTrainer(
        model=model,
        args=args,
        train_dataset=train_ds,
        eval_dataset=eval_ds if has_eval else None,
        processing_class=tokenizer,
        peft_config=peft_config,
    )
    supervised, total = supervised_tokens(trainer.train_dataset)
    if supervised == 0:
        raise ValueError(
            f"no answer tokens left to learn from: after truncation to max_length={cfg.max_length}, "
            f"all {total} training tokens are prompt (system prompt + instruction), so every "
            "label is masked and training would change nothing. Raise max_length or shorten "
            "the system prompt."
        )
    return trainer, tokenizer, template, hyper


def supervised_tokens(dataset) -> tuple[int, int]:
    """(tokens the loss is computed on, all tokens) of a tokenized SFT dataset.

    Completion-only loss masks prompt tokens with -100; when `max_length` cuts samples before
    their answer starts, nothing is left to learn and the run would "succeed" with an
    unchanged model (seen: a tiny model at max_length=64). Counted with Arrow compute, so a
    dataset of millions of rows is a vectorised pass, not a Python loop."""
    import pyarrow.compute as _pc

    pc: Any = _pc  # its functions are generated at import: the stubs do not list them

    if not hasattr(dataset, "data"):  # an IterableDataset: not countable up front
        return -1, -1
    table = dataset.data.table
    ids = pc.list_flatten(table.column("input_ids"))
    if "labels" not in table.column_names:  # no masking: every token is a target
        return len(ids), len(ids)
    labels = pc.list_flatten(table.column("labels"))
    return int(pc.sum(pc.not_equal(labels, -100)).as_py() or 0), len(ids)


def run_sft(
    base_model: str,
    train_rows: list[dict],
    eval_rows: list[dict],
    cfg: SFTTrainingConfig,
    output_dir: Path,
    *,
    report_to: list[str] | None = None,
    run_name: str = "sft",
) -> TrainingResult:
    """Train and save adapter + tokenizer (with its chat template) into `output_dir`."""
    if not train_rows:
        raise ValueError("instruction dataset has no training rows")
    output_dir = Path(output_dir)
    work_dir = output_dir.parent / f".{output_dir.name}.work"
    trainer, tokenizer, template, hyper = build_sft_trainer(
        base_model, train_rows, eval_rows, cfg, work_dir, report_to=report_to, run_name=run_name
    )
    meter = ThroughputCallback(warmup_steps=1 if (cfg.max_steps or 0) > 2 else 0)
    trainer.add_callback(meter)
    supervised, total = supervised_tokens(trainer.train_dataset)
    train_out = trainer.train()
    metrics: dict[str, float] = {
        "supervised_tokens": float(supervised),
        "supervised_token_share": round(supervised / total, 4) if total else 0.0,
        "train_loss": float(train_out.training_loss),
        "train_runtime_s": float(train_out.metrics.get("train_runtime", 0.0)),
        "steps": float(trainer.state.global_step),
        "tokens_seen": float(trainer.state.num_input_tokens_seen),
        "tokens_per_second": round(meter.tokens_per_second, 2),
    }
    if trainer.eval_dataset is not None:
        metrics["eval_loss"] = float(trainer.evaluate()["eval_loss"])
    total, trainable = count_parameters(trainer.model)
    metrics["trainable_parameters"] = float(trainable)
    metrics["total_parameters"] = float(total)
    curves = loss_history(trainer.state.log_history)
    if "eval_loss" in metrics and not curves.get("eval_loss"):
        curves["eval_loss"] = [(trainer.state.global_step, metrics["eval_loss"])]
    save_trained(trainer, tokenizer, output_dir, base_model)
    shutil.rmtree(work_dir, ignore_errors=True)
    return TrainingResult(
        model_dir=output_dir,
        chat_template=template,
        hyperparameters=hyper,
        metrics=metrics,
        curves=curves,
        smoke_test=is_smoke_test_model(base_model),
        method=hyper["method"],
    )


def save_trained(trainer, tokenizer, output_dir: Path, base_model: str) -> None:
    """Adapter (only the trained "default" one) or full weights, plus tokenizer and template."""
    from peft import PeftModel

    if output_dir.exists():
        shutil.rmtree(output_dir)
    output_dir.mkdir(parents=True)
    model = trainer.model
    if isinstance(model, PeftModel):
        model.save_pretrained(str(output_dir), selected_adapters=["default"])
    else:
        model.save_pretrained(str(output_dir), safe_serialization=True)
    tokenizer.save_pretrained(str(output_dir))
    if is_smoke_test_model(base_model):
        shutil.copy(Path(base_model) / SMOKE_TEST_MARKER, output_dir / SMOKE_TEST_MARKER)
    (output_dir / "twin_training.json").write_text(json.dumps({"base_model": base_model}))


def merge_adapter(base_model: str, adapter_dir: Path, target_dir: Path) -> Path:
    """Base + LoRA folded into plain weights, for servers without peft (vLLM, TGI, llama.cpp).

    The fold happens in fp32 (a bf16 base plus a bf16 delta would round twice) and the result
    is stored in the base checkpoint's own dtype, so a merged 8B model is 16 GB, not 32 GB.
    A 4-bit (QLoRA) base is loaded unquantized here: merging into quantized weights would
    bake the quantization error into the published model."""
    import torch
    from peft import PeftModel
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    config = AutoConfig.from_pretrained(base_model)
    stored = getattr(config, "dtype", None) or getattr(config, "torch_dtype", None)
    if isinstance(stored, str):
        stored = getattr(torch, stored, None)
    if stored not in (torch.float16, torch.bfloat16, torch.float32):
        stored = torch.float32
    base = AutoModelForCausalLM.from_pretrained(base_model, dtype=torch.float32)
    merged = PeftModel.from_pretrained(base, str(adapter_dir)).merge_and_unload()
    merged = merged.to(stored)
    merged.config.dtype = stored
    if hasattr(merged.config, "quantization_config"):
        del merged.config.quantization_config
    merged.save_pretrained(str(target_dir), safe_serialization=True)
    AutoTokenizer.from_pretrained(str(adapter_dir)).save_pretrained(str(target_dir))
    return target_dir
