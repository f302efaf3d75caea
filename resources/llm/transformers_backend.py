"""A local causal LM through transformers, with its chat template, batched greedy or sampled
decoding, and a per-process cache of loaded models (loading dominates a small model's cost)."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from resources.llm.backend import RawCompletion
from twin_assets.domain.generation import Message

_MODEL_CACHE: dict[tuple[str, str, str], tuple[Any, Any]] = {}
_MODEL_CACHE_LOCK = threading.Lock()

# Used only when a tokenizer has no chat template of its own (e.g. a bare base model).
_FALLBACK_CHAT_TEMPLATE = (
    "{% for message in messages %}<|{{ message['role'] }}|>\n{{ message['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)


def load_causal_lm(model: str, device: str = "cpu", dtype: str = "auto") -> tuple[Any, Any]:
    """(tokenizer, model), loaded once per process: loading dominates a small model's cost."""
    key = (str(model), device, dtype)
    with _MODEL_CACHE_LOCK:
        if key not in _MODEL_CACHE:
            import torch
            from transformers import AutoModelForCausalLM, AutoTokenizer

            tokenizer = AutoTokenizer.from_pretrained(model)
            if tokenizer.pad_token is None:
                tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
            tokenizer.padding_side = "left"  # decoder-only batching pads on the left
            torch_dtype = getattr(torch, dtype) if dtype != "auto" else "auto"
            lm: Any = AutoModelForCausalLM.from_pretrained(model, dtype=torch_dtype)
            lm.to(device)
            lm.eval()
            _MODEL_CACHE[key] = (tokenizer, lm)
        return _MODEL_CACHE[key]


class TransformersBackend:
    """A local causal LM with its chat template. Calls are serialised: one model, one forward."""

    def __init__(self, model: str, device: str, dtype: str, repetition_penalty: float = 1.2):
        self.model = model
        self.device = device
        self.dtype = dtype
        # Small instruct models decoded greedily loop until the token cap (measured: SmolLM2-135M
        # never reached EOS on 16 of 16 prompts at 256 tokens); a mild penalty lets them finish.
        self.repetition_penalty = repetition_penalty
        self._lock = threading.Lock()

    def _prompt(self, tokenizer: Any, messages: Sequence[Message]) -> str:
        template = tokenizer.chat_template or _FALLBACK_CHAT_TEMPLATE
        return tokenizer.apply_chat_template(
            list(messages), chat_template=template, tokenize=False, add_generation_prompt=True
        )

    def complete(
        self,
        messages: Sequence[Message],
        max_tokens: int,
        temperature: float,
        seed: int | None,
        json_mode: bool,
    ) -> RawCompletion:
        return self.complete_batch([messages], max_tokens, temperature, seed)[0]

    def complete_batch(
        self,
        batch: Sequence[Sequence[Message]],
        max_tokens: int,
        temperature: float,
        seed: int | None,
    ) -> list[RawCompletion]:
        import torch

        tokenizer, lm = load_causal_lm(self.model, self.device, self.dtype)
        prompts = [self._prompt(tokenizer, m) for m in batch]
        with self._lock, torch.no_grad():
            enc = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
            enc = {k: v.to(self.device) for k, v in enc.items()}
            if seed is not None:
                torch.manual_seed(seed)
            gen_kwargs: dict[str, Any] = {
                "max_new_tokens": max_tokens,
                "pad_token_id": tokenizer.pad_token_id,
                "repetition_penalty": self.repetition_penalty,
            }
            if temperature > 0:
                gen_kwargs.update(do_sample=True, temperature=temperature, top_p=0.95)
            else:
                gen_kwargs.update(do_sample=False)
            out = lm.generate(**enc, **gen_kwargs)
        width = enc["input_ids"].shape[1]
        eos = tokenizer.eos_token_id
        results = []
        for i in range(len(prompts)):
            new = out[i, width:].tolist()
            # strip padding after EOS; "length" when the budget ran out before EOS
            stopped = eos is not None and eos in new
            if stopped:
                new = new[: new.index(eos)]
            new = [t for t in new if t != tokenizer.pad_token_id or t == eos]
            results.append(
                RawCompletion(
                    text=tokenizer.decode(new, skip_special_tokens=True),
                    finish_reason="stop" if stopped or len(new) < max_tokens else "length",
                    prompt_tokens=int(enc["attention_mask"][i].sum()),
                    completion_tokens=len(new),
                    model=Path(self.model).name or self.model,
                )
            )
        return results
