"""Batched greedy generation with a KV cache (transformers' `generate`, left padding)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Generated:
    text: str
    new_tokens: int
    finished: bool  # an end-of-turn token was produced within the budget (else: truncated)


def generate_batched(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[str],
    *,
    eos_ids: Sequence[int],
    max_new_tokens: int = 64,
    batch_size: int = 8,
    max_prompt_tokens: int = 384,
) -> list[Generated]:
    import torch

    sides = (tokenizer.padding_side, tokenizer.truncation_side)
    tokenizer.padding_side = "left"
    tokenizer.truncation_side = "left"  # a long prompt loses its start, never the assistant header
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    out: list[Generated | None] = [None] * len(prompts)
    device = next(model.parameters()).device
    eos = set(eos_ids)
    try:
        with torch.inference_mode():
            for start in range(0, len(order), batch_size):
                idx = order[start : start + batch_size]
                enc = tokenizer(
                    [prompts[i] for i in idx],
                    return_tensors="pt",
                    padding=True,
                    add_special_tokens=False,
                    truncation=True,
                    max_length=max_prompt_tokens,
                ).to(device)
                ids = model.generate(
                    **enc,
                    max_new_tokens=max_new_tokens,
                    do_sample=False,
                    use_cache=True,
                    eos_token_id=list(eos) or None,
                    pad_token_id=tokenizer.pad_token_id,
                )
                new = ids[:, enc["input_ids"].shape[1] :]
                for row, i in enumerate(idx):
                    toks = new[row].tolist()
                    cut = next((k for k, t in enumerate(toks) if t in eos), None)
                    body = toks if cut is None else toks[:cut]
                    text = tokenizer.decode(body, skip_special_tokens=True).strip()
                    out[i] = Generated(text=text, new_tokens=len(body), finished=cut is not None)
    finally:
        tokenizer.padding_side, tokenizer.truncation_side = sides
    return [g for g in out if g is not None]
