"""What every training run shares: device facts, model loading, speed settings, throughput.

WHY one module: the benchmark's "project configuration" (c) must be the exact code path
`sft_model` runs, so the GPU speed features live here and both call `speed_settings` and
`load_causal_lm`.
"""

from __future__ import annotations

import importlib.util
import time
from dataclasses import dataclass, field
from typing import Any

from transformers import TrainerCallback


@dataclass(frozen=True)
class DeviceInfo:
    on_gpu: bool
    name: str
    bf16: bool


def device_info() -> DeviceInfo:
    import torch

    if torch.cuda.is_available():
        return DeviceInfo(True, torch.cuda.get_device_name(0), torch.cuda.is_bf16_supported())
    return DeviceInfo(False, "cpu", False)


def pick_attn_implementation(on_gpu: bool, requested: str = "auto") -> str:
    """Attention kernel for packed, padding-free batches.

    Padding-free packing flattens the whole batch into one row whose sequence boundaries are
    given by position_ids. With "sdpa" transformers turns that into a dense (B*L)^2 block-
    diagonal mask, so attention cost grows with the square of the whole batch. flash-attn's
    varlen kernel or flex_attention's block-sparse mask only compute the diagonal blocks.
    """
    if requested != "auto":
        return requested
    if not on_gpu:
        return "sdpa"
    if importlib.util.find_spec("flash_attn") is not None:
        return "flash_attention_2"
    return "flex_attention"


def speed_settings(on_gpu: bool, bf16: bool) -> dict[str, Any]:
    """TrainingArguments that make the GPU path fast; harmless (or off) on CPU."""
    kwargs: dict[str, Any] = {
        "bf16": bf16,
        "fp16": False,
        "dataloader_pin_memory": on_gpu,
        "include_num_input_tokens_seen": "non_padding",
    }
    if on_gpu:
        import torch

        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        kwargs.update(
            optim="adamw_torch_fused",
            tf32=True,
            dataloader_num_workers=2,
            dataloader_persistent_workers=True,
        )
        if importlib.util.find_spec("liger_kernel") is not None:
            kwargs["use_liger_kernel"] = True
    else:
        kwargs["optim"] = "adamw_torch"
        kwargs["use_cpu"] = True
    return kwargs


def load_causal_lm(
    name_or_path: str, *, on_gpu: bool, bf16: bool, method: str, attn_implementation: str = "auto"
):
    """Load a causal LM for training (4-bit for QLoRA; bf16 on GPU; fp32 on CPU)."""
    import torch
    from transformers import AutoModelForCausalLM

    kwargs: dict[str, Any] = {
        "dtype": torch.bfloat16 if bf16 else torch.float32,
        "attn_implementation": pick_attn_implementation(on_gpu, attn_implementation),
    }
    if method == "qlora":
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=torch.bfloat16 if bf16 else torch.float16,
        )
        kwargs["device_map"] = {"": 0}
    try:
        model = AutoModelForCausalLM.from_pretrained(name_or_path, **kwargs)
    except (ImportError, ValueError) as exc:
        if kwargs["attn_implementation"] in {"sdpa", "eager"}:
            raise
        # The fast kernel is unavailable for this model/device: fall back, never fail the run.
        kwargs["attn_implementation"] = "sdpa"
        model = AutoModelForCausalLM.from_pretrained(name_or_path, **kwargs)
        model.config._twin_attn_fallback = str(exc)[:200]
    if method == "qlora":
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    return model


def count_parameters(model) -> tuple[int, int]:
    """(total, trainable); 4-bit params count as their logical size."""
    total = trainable = 0
    for p in model.parameters():
        n = p.numel() * (2 if p.__class__.__name__ == "Params4bit" else 1)
        total += n
        if p.requires_grad:
            trainable += n
    return total, trainable


@dataclass
class ThroughputCallback(TrainerCallback):
    """Non-padding tokens per second over the steps after `warmup_steps` (warm-up excluded).

    Synchronizes CUDA at step boundaries so timings measure work done, not work queued.
    """

    warmup_steps: int = 0
    _t0: float | None = None
    _tok0: int = 0
    _t_last: float | None = None
    _tok_last: int = 0
    _t_end: float | None = None
    step_times: list[float] = field(default_factory=list)

    def _now(self) -> float:
        import torch

        if torch.cuda.is_available():
            torch.cuda.synchronize()
        return time.perf_counter()

    def on_train_begin(self, args, state, control, **kwargs):
        self._t_last = self._now()

    def on_step_end(self, args, state, control, **kwargs):
        now = self._now()
        if self._t_last is not None:
            self.step_times.append(now - self._t_last)
        self._t_last = now
        if state.global_step == self.warmup_steps:
            self._t0, self._tok0 = now, state.num_input_tokens_seen
        self._tok_last = state.num_input_tokens_seen
        self._t_end = now

    @property
    def measured_tokens(self) -> int:
        return self._tok_last - self._tok0 if self._t0 is not None else self._tok_last

    @property
    def measured_seconds(self) -> float:
        if self._t0 is None or self._t_end is None:
            return sum(self.step_times)
        return self._t_end - self._t0

    @property
    def tokens_per_second(self) -> float:
        secs = self.measured_seconds
        return self.measured_tokens / secs if secs > 0 else 0.0


def loss_history(log_history: list[dict]) -> dict[str, list[tuple[int, float]]]:
    """Trainer log history -> {"train_loss": [(step, loss)], "eval_loss": [...], ...}."""
    curves: dict[str, list[tuple[int, float]]] = {}
    for entry in log_history:
        step = int(entry.get("step", 0))
        for key, name in (
            ("loss", "train_loss"),
            ("eval_loss", "eval_loss"),
            ("rewards/accuracies", "reward_accuracy"),
            ("rewards/margins", "reward_margin"),
            ("eval_rewards/accuracies", "eval_reward_accuracy"),
        ):
            if key in entry and entry[key] is not None:
                curves.setdefault(name, []).append((step, float(entry[key])))
    return curves
