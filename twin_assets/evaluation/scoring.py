"""Batched log-likelihoods of answers given prompts: the held-out NLL and the implicit DPO reward.

The prompt and the answer are tokenized separately and concatenated, so exactly the answer's
tokens (the assistant's content and its end-of-turn token, as in training) are scored, whatever
the tokenizer does at the boundary. Items are sorted by length before batching (less padding).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Scored:
    logprob: float  # sum over the answer's tokens
    tokens: int

    @property
    def nll(self) -> float:
        return -self.logprob / self.tokens if self.tokens else float("nan")


def split_rendered(prompt: str, full: str) -> tuple[str, str]:
    """(prompt, answer) of a rendered conversation; the answer is what follows the prompt."""
    if full.startswith(prompt):
        return prompt, full[len(prompt) :]
    # a template that renders the generation prompt differently from the assistant turn: score
    # the full text after the longest common prefix
    n = 0
    for a, b in zip(prompt, full, strict=False):
        if a != b:
            break
        n += 1
    return full[:n], full[n:]


def answer_logprobs(
    model: Any,
    tokenizer: Any,
    pairs: Sequence[tuple[str, str]],
    *,
    batch_size: int = 8,
    max_length: int = 512,
) -> list[Scored]:
    """Sum of log p(answer token | prefix) per (prompt, answer) pair, in input order."""
    import torch

    encoded: list[tuple[list[int], int]] = []  # (ids, number of answer tokens at the end)
    for prompt, answer in pairs:
        p = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        a = tokenizer(answer, add_special_tokens=False)["input_ids"]
        a = a[: max(1, max_length - 8)]
        keep = max(0, max_length - len(a))
        p = p[-keep:] if keep else []
        encoded.append((p + a, len(a)))
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i][0]))
    out: list[Scored | None] = [None] * len(encoded)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    device = next(model.parameters()).device
    with torch.inference_mode():
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            width = max(len(encoded[i][0]) for i in idx)
            ids = torch.full((len(idx), width), pad, dtype=torch.long)
            mask = torch.zeros((len(idx), width), dtype=torch.long)
            labels = torch.zeros((len(idx), width), dtype=torch.bool)
            for row, i in enumerate(idx):
                seq, n_answer = encoded[i]
                ids[row, : len(seq)] = torch.tensor(seq)
                mask[row, : len(seq)] = 1
                labels[row, len(seq) - n_answer : len(seq)] = True
            logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits
            # log-softmax only at the scored positions: the full [batch, length, vocab] tensor in
            # fp32 is ~300 MB for SmolLM2's 49k vocabulary and dominates the time on a CPU
            scored = labels[:, 1:].to(device)
            rows, cols = scored.nonzero(as_tuple=True)
            picked = torch.log_softmax(logits[:, :-1][rows, cols].float(), dim=-1)
            token_lp = picked.gather(-1, ids[:, 1:].to(device)[rows, cols].unsqueeze(-1)).squeeze(-1)
            sums = torch.zeros(len(idx), device=device).index_add_(0, rows, token_lp)
            counts = scored.sum(-1)
            for row, i in enumerate(idx):
                out[i] = Scored(float(sums[row]), int(counts[row]))
    return [s for s in out if s is not None]


def mean_nll(scores: Sequence[Scored]) -> float:
    """Token-weighted mean NLL (every answer token counts once, as in the training loss)."""
    tokens = sum(s.tokens for s in scores)
    return -sum(s.logprob for s in scores) / tokens if tokens else float("nan")


def perplexity(nll: float) -> float:
    return math.exp(min(nll, 50.0)) if nll == nll else float("nan")


def preference_stats(
    chosen: Sequence[Scored],
    rejected: Sequence[Scored],
    ref_chosen: Sequence[Scored],
    ref_rejected: Sequence[Scored],
    beta: float,
) -> dict[str, float]:
    """DPO's implicit reward margin beta*[(log pi(c)-log ref(c)) - (log pi(r)-log ref(r))]:
    accuracy = share of pairs where it prefers the author's (chosen) text, and its mean."""
    margins = [
        beta * ((c.logprob - rc.logprob) - (r.logprob - rr.logprob))
        for c, r, rc, rr in zip(chosen, rejected, ref_chosen, ref_rejected, strict=True)
    ]
    if not margins:
        return {"preference_accuracy": float("nan"), "reward_margin": float("nan")}
    return {
        "preference_accuracy": sum(m > 0 for m in margins) / len(margins),
        "reward_margin": sum(margins) / len(margins),
    }


def likelihood_preference(chosen: Sequence[Scored], rejected: Sequence[Scored]) -> float:
    """Share of pairs where the model itself gives the author's text the higher per-token
    likelihood (defined for the base model too, which has no reference to be relative to)."""
    pairs = list(zip(chosen, rejected, strict=True))
    if not pairs:
        return float("nan")
    return sum(c.nll < r.nll for c, r in pairs) / len(pairs)
