"""Preference tuning: trl `DPOTrainer` on the preference dataset, starting from the SFT adapter.

Reference model with PEFT: the SFT adapter is loaded as the trainable "default" adapter and
`ref_model=None` is passed. trl 1.16 then adds a frozen copy of that adapter named "ref" and
computes reference log-probs through it, so the DPO reference is the SFT model (as DPO
requires), not the raw base model, and no second full model is held in memory. Only the
"default" adapter is saved. Prompts are rendered with the chat template saved with the SFT
tokenizer, i.e. the same template SFT trained with.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from twin_assets.training.base_model import is_smoke_test_model
from twin_assets.training.chat import DEFAULT_SYSTEM_PROMPT, instruction_messages
from twin_assets.training.config import DPOTrainingConfig, resolve_bf16, size_defaults
from twin_assets.training.result import TrainingResult
from twin_assets.training.runtime import (
    ThroughputCallback,
    count_parameters,
    device_info,
    load_causal_lm,
    loss_history,
    speed_settings,
)
from twin_assets.training.sft import save_trained


def preference_samples(rows: list[dict], system_prompt: str = "") -> list[dict]:
    """Preference rows -> trl conversational preference samples."""
    system = system_prompt or DEFAULT_SYSTEM_PROMPT
    return [
        {
            "prompt": instruction_messages(r["prompt"], None, system),
            "chosen": [{"role": "assistant", "content": r["chosen"]}],
            "rejected": [{"role": "assistant", "content": r["rejected"]}],
        }
        for r in rows
    ]


def run_dpo(
    base_model: str,
    sft_adapter_dir: Path,
    train_rows: list[dict],
    eval_rows: list[dict],
    cfg: DPOTrainingConfig,
    output_dir: Path,
    *,
    sft_learning_rate: float | None = None,
    report_to: list[str] | None = None,
    run_name: str = "dpo",
) -> TrainingResult:
    from datasets import Dataset
    from peft import PeftModel
    from transformers import AutoTokenizer
    from trl.trainer.dpo_config import DPOConfig
    from trl.trainer.dpo_trainer import DPOTrainer

    if not train_rows:
        raise ValueError("preference dataset has no training rows")
    output_dir = Path(output_dir)
    work_dir = output_dir.parent / f".{output_dir.name}.work"
    dev = device_info()
    bf16 = resolve_bf16(cfg.bf16, dev.on_gpu)
    tokenizer = AutoTokenizer.from_pretrained(str(sft_adapter_dir))  # carries the SFT template
    template = tokenizer.chat_template
    full_sft = (Path(sft_adapter_dir) / "config.json").exists() and not (
        Path(sft_adapter_dir) / "adapter_config.json"
    ).exists()
    if full_sft:  # full fine-tune: the SFT weights are the policy; trl loads a frozen copy as ref
        model = load_causal_lm(str(sft_adapter_dir), on_gpu=dev.on_gpu, bf16=bf16, method="full")
        method = "full"
    else:
        base = load_causal_lm(base_model, on_gpu=dev.on_gpu, bf16=bf16, method="lora")
        model = PeftModel.from_pretrained(base, str(sft_adapter_dir), is_trainable=True)
        method = "lora"
    n_params, _ = count_parameters(model)
    defaults = size_defaults(n_params, method, dev.on_gpu)
    lr = cfg.learning_rate or (sft_learning_rate or defaults["learning_rate"]) / 10
    hyper = {
        "method": method,
        "base_model": base_model,
        "sft_adapter": str(sft_adapter_dir),
        "learning_rate": lr,
        "per_device_batch_size": cfg.per_device_batch_size or defaults["batch_size"],
        "bf16": bf16,
        "reference_model": "frozen copy of the SFT adapter (trl 'ref' adapter)"
        if method != "full"
        else "frozen copy of the SFT model",
        **{
            k: getattr(cfg, k)
            for k in (
                "beta",
                "loss_type",
                "lr_scheduler_type",
                "warmup_ratio",
                "max_steps",
                "num_train_epochs",
                "gradient_accumulation_steps",
                "max_length",
                "gradient_checkpointing",
                "seed",
            )
        },
    }
    train_ds = Dataset.from_list(preference_samples(train_rows, cfg.system_prompt))
    eval_ds = Dataset.from_list(preference_samples(eval_rows, cfg.system_prompt)) if eval_rows else None
    args = DPOConfig(
        output_dir=str(work_dir / "checkpoints"),
        run_name=run_name,
        report_to=report_to or [],
        beta=cfg.beta,
        loss_type=[cfg.loss_type],
        learning_rate=lr,
        lr_scheduler_type=cfg.lr_scheduler_type,
        warmup_steps=cfg.warmup_ratio,
        max_steps=cfg.max_steps if cfg.max_steps > 0 else -1,
        num_train_epochs=cfg.num_train_epochs,
        per_device_train_batch_size=hyper["per_device_batch_size"],
        per_device_eval_batch_size=hyper["per_device_batch_size"],
        gradient_accumulation_steps=cfg.gradient_accumulation_steps,
        max_length=cfg.max_length,
        gradient_checkpointing=cfg.gradient_checkpointing,
        seed=cfg.seed,
        data_seed=cfg.seed,
        logging_steps=cfg.logging_steps,
        eval_strategy="no",
        save_strategy="no",
        disable_tqdm=True,
        **speed_settings(dev.on_gpu, bf16),
    )
    trainer = DPOTrainer(
        model=model,
        ref_model=None,
        args=args,
        train_dataset=train_ds,
        eval_dataset=eval_ds if eval_ds is not None and len(eval_ds) else None,
        processing_class=tokenizer,
    )
    # trl drops pairs whose prompt alone fills max_length (no completion token would survive
    # truncation); say how many, and refuse when none is left rather than fail obscurely
    kept = len(trainer.train_dataset) if hasattr(trainer.train_dataset, "__len__") else len(train_ds)
    if kept == 0:
        raise ValueError(
            f"no preference pair fits max_length={cfg.max_length}: every prompt (system prompt + "
            f"instruction) of the {len(train_ds)} training pairs is at least that long, so no "
            "chosen/rejected token would be scored. Raise max_length or shorten the system prompt."
        )
    meter = ThroughputCallback(warmup_steps=1 if (cfg.max_steps or 0) > 2 else 0)
    trainer.add_callback(meter)
    out = trainer.train()
    metrics: dict[str, float] = {
        "train_pairs": float(kept),
        "train_pairs_dropped_too_long": float(len(train_ds) - kept),
        "train_loss": float(out.training_loss),
        "train_runtime_s": float(out.metrics.get("train_runtime", 0.0)),
        "steps": float(trainer.state.global_step),
        "tokens_seen": float(trainer.state.num_input_tokens_seen),
        "tokens_per_second": round(meter.tokens_per_second, 2),
    }
    if trainer.eval_dataset is not None:
        ev = trainer.evaluate()
        metrics["eval_loss"] = float(ev["eval_loss"])
        for key in ("eval_rewards/accuracies", "eval_rewards/margins"):
            if key in ev:
                metrics[key.replace("/", "_")] = float(ev[key])
    curves = loss_history(trainer.state.log_history)
    if "eval_loss" in metrics and not curves.get("eval_loss"):
        curves["eval_loss"] = [(trainer.state.global_step, metrics["eval_loss"])]
    peft_adapters = sorted(getattr(trainer.model, "peft_config", {}) or {})
    save_trained(trainer, tokenizer, output_dir, base_model)
    shutil.rmtree(work_dir, ignore_errors=True)
    return TrainingResult(
        model_dir=output_dir,
        chat_template=template,
        hyperparameters=hyper,
        metrics=metrics,
        curves=curves,
        smoke_test=is_smoke_test_model(base_model),
        method=method,
        extra={"peft_adapters_during_training": peft_adapters},
    )
