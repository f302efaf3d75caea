"""Batched greedy generation with a KV cache (transformers' `generate`, left padding), and
OpenAI's frequency/presence penalties, which the inference service applies the same way (it
imports them from here: what the evaluation measures is what the service decodes)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from transformers import LogitsProcessor


@dataclass(frozen=True)
class Generated:
    text: str
    new_tokens: int
    finished: bool  # an end-of-turn token was produced within the budget (else: truncated)


def apply_penalties(
    scores: torch.Tensor, completions: torch.Tensor, rows: Sequence[tuple[int, float, float]]
) -> None:
    """OpenAI's penalties, in place, for each (row, frequency, presence): a token's score drops by
    `frequency` for every time the row's completion already holds it, and by `presence` once if
    it holds it at all. Only completion tokens count (`completions`: the generated columns), so a
    question's own words stay available to the answer."""
    vocab = scores.shape[-1]
    for i, frequency, presence in rows:
        counts = torch.bincount(completions[i], minlength=vocab)[:vocab].to(scores.dtype)
        scores[i] = scores[i] - frequency * counts - presence * (counts > 0).to(scores.dtype)


class CompletionPenalties(LogitsProcessor):
    """`apply_penalties` with one frequency/presence pair for every row of a left-padded batch
    whose prompts end at column `prompt_width`."""

    def __init__(self, prompt_width: int, rows: int, frequency: float, presence: float):
        self._width = prompt_width
        self._rows = [(i, frequency, presence) for i in range(rows)]

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if input_ids.shape[1] > self._width:
            apply_penalties(scores, input_ids[:, self._width :], self._rows)
        return scores


def generate_batched(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[str],
    *,
    eos_ids: Sequence[int],
    max_new_tokens: int = 64,
    batch_size: int = 8,
    max_prompt_tokens: int = 384,
    frequency_penalty: float = 0.0,
    presence_penalty: float = 0.0,
) -> list[Generated]:
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
                width = enc["input_ids"].shape[1]
                penalties = (
                    [CompletionPenalties(width, len(idx), frequency_penalty, presence_penalty)]
                    if frequency_penalty or presence_penalty
                    else []
                )
                ids = model.generate(
                    **enc,
                    max_new_tokens=max_new_tokens,
                    do_sample=False,
                    use_cache=True,
                    eos_token_id=list(eos) or None,
                    pad_token_id=tokenizer.pad_token_id,
                    logits_processor=penalties or None,
                )
                new = ids[:, width:]
                for row, i in enumerate(idx):
                    toks = new[row].tolist()
                    cut = next((k for k, t in enumerate(toks) if t in eos), None)
                    body = toks if cut is None else toks[:cut]
                    text = tokenizer.decode(body, skip_special_tokens=True).strip()
                    out[i] = Generated(text=text, new_tokens=len(body), finished=cut is not None)
    finally:
        tokenizer.padding_side, tokenizer.truncation_side = sides
    return [g for g in out if g is not None]
