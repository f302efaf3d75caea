"""Per-row sampling, stopping and streaming inside ONE batched `generate` call.

WHY: requests of different authors and different parameters share a batch, but `generate` takes
one temperature, one top-p, one `max_new_tokens` and one set of stop strings for the whole
batch. So the batch runs greedy (`do_sample=False`) and:

- `RowSampler` (a LogitsProcessor) samples each sampled row itself, with that row's temperature,
  top-p and seeded generator, and leaves only the chosen token finite, so greedy `argmax` picks
  it. Greedy rows are left untouched: a greedy row beside a sampled one gets exactly its greedy
  output, and a seeded row does not depend on the global RNG or its neighbours' draws.
- `RowStopper` (a StoppingCriteria, called once per decoding step with the new tokens) feeds
  each row's token to its `RowState`, which decodes incrementally, streams the stable text,
  and says per row whether it is done (max_tokens, end-of-turn token, stop string, cancelled,
  timed out). `generate` pads finished rows and stops when every row is done.

`RowText` is torch-free text bookkeeping shared with the remote generator: incremental decoding
that emits only stable text (no half UTF-8 characters) and stop strings that are never emitted.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from transformers import LogitsProcessor, StoppingCriteria

from twin_assets.evaluation.generation import apply_penalties
from twin_assets.serving.types import FinishReason

REPLACEMENT_CHAR = "\ufffd"


class StopStrings:
    """Find stop strings in a growing text, and how much of its tail could still start one."""

    def __init__(self, stops: Sequence[str]):
        self.stops = sorted({s for s in stops if s}, key=len, reverse=True)
        self.longest = max((len(s) for s in self.stops), default=0)

    def __bool__(self) -> bool:
        return bool(self.stops)

    def find(self, text: str, start: int = 0) -> int:
        """Index of the earliest stop string that ends after `start` (-1: none)."""
        best = -1
        for stop in self.stops:
            i = text.find(stop, max(0, start - len(stop) + 1))
            if i >= 0 and (best < 0 or i < best):
                best = i
        return best

    def holdback(self, text: str) -> int:
        """Length of the longest tail of `text` that is a proper prefix of a stop string: that
        much must not be emitted yet, since the next tokens may complete the stop string."""
        for k in range(min(self.longest - 1, len(text)), 0, -1):
            tail = text[-k:]
            if any(stop.startswith(tail) for stop in self.stops):
                return k
        return 0


class RowText:
    """Token ids in, stable text deltas out; the concatenated deltas are the row's final text.

    Decoding uses the two-offset method (as TGI and vLLM do): the text of the tokens since
    `prefix` is decoded with and without the newest tokens, and only the difference is emitted,
    once it no longer ends in U+FFFD (a byte-level token that is half of a UTF-8 character).
    Decoding a window rather than one token keeps tokenizers that drop a leading space when a
    word-piece is decoded alone (SentencePiece) correct. Text that might be the start of a stop
    string is held back until it is known not to be one; a stop string ends the row and is never
    emitted.
    """

    def __init__(self, decode: Callable[[list[int]], str], stop: Sequence[str] = ()):
        self._decode = decode
        self._stops = StopStrings(stop)
        self.tokens: list[int] = []
        self._prefix = 0
        self._read = 0
        self.text = ""  # decoded so far (cut at a stop string once one is found)
        self._emitted = 0
        self._searched = 0
        self.stopped = False  # a stop string was found
        self.finished = False

    def add(self, token: int) -> str:
        """Add one generated token; returns the newly stable text (may be empty)."""
        if self.finished or self.stopped:
            return ""
        self.tokens.append(token)
        before = self._decode(self.tokens[self._prefix : self._read])
        after = self._decode(self.tokens[self._prefix :])
        # a UTF-8 character spans at most 4 byte-level tokens: longer, the U+FFFD is real
        stable = not after.endswith(REPLACEMENT_CHAR) or len(self.tokens) - self._read > 4
        if len(after) > len(before) and stable:
            self.text += after[len(before) :]
            self._prefix, self._read = self._read, len(self.tokens)
        return self._release(final=False)

    def add_text(self, text: str) -> str:
        """Add already-decoded text (a remote server's delta); returns the newly stable text."""
        if self.finished or self.stopped:
            return ""
        self.text += text
        return self._release(final=False)

    def finish(self) -> str:
        """End the row: flush what was held back (an incomplete character is emitted as U+FFFD,
        a partial stop string as the text it is). Returns the last delta."""
        if self.finished:
            return ""
        if not self.stopped and self._read < len(self.tokens):
            before = self._decode(self.tokens[self._prefix : self._read])
            after = self._decode(self.tokens[self._prefix :])
            if len(after) > len(before):
                self.text += after[len(before) :]
            self._prefix = self._read = len(self.tokens)
        delta = self._release(final=True)
        self.finished = True
        return delta

    def _release(self, *, final: bool) -> str:
        if self._stops and not self.stopped:
            i = self._stops.find(self.text, self._searched)
            self._searched = len(self.text)
            if i >= 0:
                self.text = self.text[:i]
                self.stopped = True
        end = len(self.text)
        if not (final or self.stopped) and self._stops:
            end -= self._stops.holdback(self.text)
        if end <= self._emitted:
            return ""
        delta = self.text[self._emitted : end]
        self._emitted = end
        return delta


@dataclass
class RowState:
    """One request's row in a running batch: its limits, its text, where its output goes.

    `abort` is set from any thread (cancel, timeout seen by the consumer, close); the row ends
    at the next step with that reason and the text it has.
    """

    text: RowText
    max_tokens: int
    eos_ids: frozenset[int]
    deadline: float  # time.monotonic() value
    emit: Callable[[str], None]
    on_finish: Callable[[FinishReason, int, str | None], None]  # reason, completion tokens, error
    abort: Callable[[], FinishReason | None] = lambda: None
    completion_tokens: int = 0
    finish_reason: FinishReason | None = None
    error: str | None = field(default=None)

    @property
    def done(self) -> bool:
        return self.finish_reason is not None

    def step(self, token: int) -> bool:
        """Consume the token generated for this row at this step; True once the row is done."""
        if self.done:
            return True
        aborted = self.abort()
        if aborted is not None:
            self.finish(aborted)
            return True
        if time.monotonic() > self.deadline:
            self.finish("timeout")
            return True
        self.completion_tokens += 1
        if token in self.eos_ids:
            self.finish("stop")
            return True
        delta = self.text.add(token)
        if delta:
            self.emit(delta)
        if self.text.stopped:
            self.finish("stop")
        elif self.completion_tokens >= self.max_tokens:
            self.finish("length")
        return self.done

    def finish(self, reason: FinishReason, error: str | None = None) -> None:
        if self.done:
            return
        self.finish_reason = reason
        self.error = error
        tail = self.text.finish()
        if tail:
            self.emit(tail)
        self.on_finish(reason, self.completion_tokens, error)


class RowSampler(LogitsProcessor):
    """Per-row frequency/presence penalties, then temperature / top-p sampling with a per-row
    seeded generator.

    Penalties count the row's completion tokens only (from column `prompt_width` on: prompts
    are left-padded to one width). Rows with temperature 0 are greedy: only their penalties
    apply. A sampled row's scores become -inf except for the drawn token, so the batch's greedy
    `argmax` selects it.
    """

    def __init__(
        self,
        temperatures: Sequence[float],
        top_ps: Sequence[float],
        seeds: Sequence[int | None],
        device: str | torch.device = "cpu",
        *,
        penalties: Sequence[tuple[float, float]] | None = None,
        prompt_width: int = 0,
    ):
        self._prompt_width = prompt_width
        self._penalties = [
            (i, float(freq), float(presence))
            for i, (freq, presence) in enumerate(penalties or [])
            if freq or presence
        ]
        self._rows: list[tuple[int, float, float, torch.Generator]] = []
        for i, (temperature, top_p, seed) in enumerate(zip(temperatures, top_ps, seeds, strict=True)):
            if temperature <= 0:
                continue
            generator = torch.Generator(device=device)
            if seed is None:
                generator.seed()
            else:
                generator.manual_seed(seed)
            self._rows.append((i, float(temperature), float(top_p), generator))

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if self._penalties and input_ids.shape[1] > self._prompt_width:
            apply_penalties(scores, input_ids[:, self._prompt_width :], self._penalties)
        for i, temperature, top_p, generator in self._rows:
            probs = torch.softmax(scores[i].float() / temperature, dim=-1)
            if top_p < 1.0:
                sorted_probs, order = torch.sort(probs, descending=True)
                # keep the smallest prefix whose mass reaches top_p (the top token always stays)
                outside = (torch.cumsum(sorted_probs, dim=-1) - sorted_probs) >= top_p
                sorted_probs = sorted_probs.masked_fill(outside, 0.0)
                probs = torch.zeros_like(probs).scatter_(0, order, sorted_probs)
            if not bool(torch.isfinite(probs).all()) or float(probs.sum()) <= 0:
                raise ValueError(f"row {i}: the model produced non-finite scores (a broken adapter?)")
            token = torch.multinomial(probs, 1, generator=generator)
            row = torch.full_like(scores[i], float("-inf"))
            row[token] = 0.0
            scores[i] = row
        return scores


class RowStopper(StoppingCriteria):
    """Called by `generate` after every step: streams each row's new token and returns the
    per-row done mask (finished rows stay done; `generate` pads them from then on)."""

    def __init__(self, rows: Sequence[RowState]):
        self.rows = list(rows)

    def __call__(self, input_ids: torch.LongTensor, scores: Any, **kwargs: Any) -> torch.BoolTensor:
        last = input_ids[:, -1].tolist()
        done = [row.step(int(token)) for row, token in zip(self.rows, last, strict=True)]
        return torch.tensor(done, dtype=torch.bool, device=input_ids.device)  # pyright: ignore[reportReturnType]
