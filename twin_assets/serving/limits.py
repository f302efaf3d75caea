"""Request limits and the per-key rate limiter.

Limits are what one request may ask of the process (body size, messages, tokens, context): a
request over one is refused with a 4xx that names the limit, before any work is done. The rate
limiter is a token bucket per API key: `burst` requests at once, then `rate_per_minute` on
average; a refused request learns how long to wait (the `Retry-After` header).

Memory stays bounded however many keys (or forged key ids) show up: a bucket that has refilled
is indistinguishable from a new one and is dropped, and past `max_keys` the least recently
used buckets go first.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from pydantic import BaseModel, Field


class LimitExceeded(ValueError):
    """A request over one of the limits: `status` is the HTTP status to answer (413 for a body
    too large, 400 otherwise), `limit` names the limit, the message says what was asked."""

    def __init__(self, message: str, *, status: int = 400, limit: str = ""):
        super().__init__(message)
        self.status = status
        self.limit = limit


class RequestLimits(BaseModel):
    """What one request may ask for."""

    max_body_bytes: int = Field(default=1_000_000, ge=1, description="request body, bytes")
    max_messages: int = Field(default=64, ge=1, description="messages in one chat request")
    max_tokens: int = Field(default=1024, ge=1, description="largest `max_tokens` a request may ask")
    max_context_tokens: int = Field(
        default=0, ge=0, description="prompt + completion tokens; 0: the model's context window"
    )

    def check_body(self, size: int | None) -> None:
        if size is not None and size > self.max_body_bytes:
            raise LimitExceeded(
                f"request body is {size} bytes; the limit is {self.max_body_bytes}",
                status=413,
                limit="max_body_bytes",
            )

    def check_messages(self, count: int) -> None:
        if count > self.max_messages:
            raise LimitExceeded(
                f"{count} messages; at most {self.max_messages} per request", limit="max_messages"
            )

    def check_max_tokens(self, requested: int | None) -> int:
        """The completion budget to use: the request's `max_tokens` (refused above the limit),
        or the limit when the request asks for none."""
        if requested is None:
            return self.max_tokens
        if requested > self.max_tokens:
            raise LimitExceeded(f"max_tokens={requested}; at most {self.max_tokens}", limit="max_tokens")
        return requested

    def context_window(self, model_window: int) -> int:
        """The tokens (prompt + completion) one request may use with a model of `model_window`."""
        if self.max_context_tokens <= 0:
            return model_window
        return min(self.max_context_tokens, model_window) if model_window > 0 else self.max_context_tokens

    def check_context(self, prompt_tokens: int, max_tokens: int, model_window: int) -> None:
        """Refuse a prompt that leaves no room for the completion asked for."""
        window = self.context_window(model_window)
        if prompt_tokens + max_tokens > window:
            raise LimitExceeded(
                f"the prompt is {prompt_tokens} tokens and max_tokens is {max_tokens}: "
                f"{prompt_tokens + max_tokens} > the context limit of {window} tokens",
                limit="max_context_tokens",
            )


@dataclass
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    """Token bucket per key id; thread-safe. `rate_per_minute <= 0` disables it."""

    def __init__(
        self,
        rate_per_minute: float,
        burst: int,
        *,
        max_keys: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ):
        if not math.isfinite(rate_per_minute):
            raise ValueError(f"rate_per_minute must be a finite number, not {rate_per_minute!r}")
        if burst < 1:
            raise ValueError(f"burst must be >= 1, not {burst!r}")
        if max_keys < 1:
            raise ValueError(f"max_keys must be >= 1, not {max_keys!r}")
        self.rate_per_minute = float(rate_per_minute)
        self.burst = int(burst)
        self.max_keys = max_keys
        self._per_second = self.rate_per_minute / 60.0
        self._clock = clock
        self._lock = threading.Lock()
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()
        self._checks = 0

    @property
    def enabled(self) -> bool:
        return self._per_second > 0

    def __len__(self) -> int:
        return len(self._buckets)

    def check(self, key_id: str) -> float | None:
        """Take one request from `key_id`'s bucket: None if allowed, else the seconds until
        it would be (for `Retry-After`; a refused request takes nothing)."""
        if not self.enabled:
            return None
        now = self._clock()
        with self._lock:
            bucket = self._buckets.get(key_id)
            if bucket is None:
                bucket = _Bucket(tokens=float(self.burst), updated=now)
                self._buckets[key_id] = bucket
            else:
                self._refill(bucket, now)
            self._buckets.move_to_end(key_id)
            self._checks += 1
            if len(self._buckets) > self.max_keys or self._checks % 1024 == 0:
                self._evict(now)
            if bucket.tokens >= 1.0:
                bucket.tokens -= 1.0
                return None
            return (1.0 - bucket.tokens) / self._per_second

    def _refill(self, bucket: _Bucket, now: float) -> None:
        elapsed = max(0.0, now - bucket.updated)
        bucket.tokens = min(float(self.burst), bucket.tokens + elapsed * self._per_second)
        bucket.updated = now

    def _evict(self, now: float) -> None:
        """Drop full buckets (idle long enough to have refilled: a new one would be the same),
        then, if still too many, the least recently used."""
        full_after = self.burst / self._per_second
        # oldest first (every check moves its bucket to the end): stop at the first still filling
        while self._buckets:
            key, bucket = next(iter(self._buckets.items()))
            if now - bucket.updated < full_after:
                break
            del self._buckets[key]
        while len(self._buckets) > self.max_keys:
            self._buckets.popitem(last=False)
