"""Request limits and the per-key token bucket."""

from __future__ import annotations

import threading

import pytest
from pydantic import ValidationError

from twin_assets.serving.limits import LimitExceeded, RateLimiter, RequestLimits


class Clock:
    def __init__(self):
        self.now = 50.0

    def __call__(self) -> float:
        return self.now


def test_request_limits_refuse_with_the_limit_named():
    limits = RequestLimits()
    assert (limits.max_body_bytes, limits.max_messages, limits.max_tokens, limits.max_context_tokens) == (
        1_000_000,
        64,
        1024,
        0,
    )
    limits.check_body(1_000_000)
    limits.check_body(None)
    with pytest.raises(LimitExceeded) as info:
        limits.check_body(1_000_001)
    assert info.value.status == 413 and info.value.limit == "max_body_bytes" and "1000001" in str(info.value)
    limits.check_messages(64)
    with pytest.raises(LimitExceeded, match="65 messages") as info:
        limits.check_messages(65)
    assert info.value.status == 400
    assert limits.check_max_tokens(None) == 1024 and limits.check_max_tokens(10) == 10
    with pytest.raises(LimitExceeded, match="max_tokens=2000"):
        limits.check_max_tokens(2000)


def test_context_limit_defaults_to_the_model_window():
    assert RequestLimits().context_window(2048) == 2048
    assert RequestLimits(max_context_tokens=1000).context_window(2048) == 1000
    assert RequestLimits(max_context_tokens=4000).context_window(2048) == 2048
    limits = RequestLimits(max_context_tokens=1000)
    limits.check_context(prompt_tokens=900, max_tokens=100, model_window=2048)
    with pytest.raises(LimitExceeded, match="1001 > the context limit of 1000") as info:
        limits.check_context(prompt_tokens=901, max_tokens=100, model_window=2048)
    assert info.value.limit == "max_context_tokens"


def test_request_limits_validate():
    with pytest.raises(ValidationError):
        RequestLimits(max_tokens=0)
    with pytest.raises(ValidationError):
        RequestLimits(max_context_tokens=-1)


def test_token_bucket_burst_then_rate_with_retry_after():
    clock = Clock()
    limiter = RateLimiter(rate_per_minute=60, burst=3, clock=clock)  # one per second
    assert [limiter.check("k") for _ in range(3)] == [None, None, None]
    wait = limiter.check("k")
    assert wait == pytest.approx(1.0)
    clock.now += 0.25
    assert limiter.check("k") == pytest.approx(0.75)  # a refused request takes nothing
    clock.now += 0.75
    assert limiter.check("k") is None
    assert limiter.check("k") == pytest.approx(1.0)
    assert limiter.check("other") is None  # per key
    clock.now += 100
    assert [limiter.check("k") for _ in range(4)][-1] is not None  # refills to burst, not beyond


def test_a_disabled_limiter_allows_everything():
    limiter = RateLimiter(rate_per_minute=0, burst=1)
    assert not limiter.enabled
    assert all(limiter.check("k") is None for _ in range(1000)) and len(limiter) == 0


def test_bad_limiter_settings():
    for kwargs in ({"rate_per_minute": 10, "burst": 0}, {"rate_per_minute": float("nan"), "burst": 1}):
        with pytest.raises(ValueError):
            RateLimiter(**kwargs)


def test_thread_safe_exactly_burst_allowed():
    limiter = RateLimiter(rate_per_minute=1e-9, burst=50, clock=lambda: 0.0)
    allowed = []
    lock = threading.Lock()

    def worker():
        n = sum(1 for _ in range(100) if limiter.check("shared") is None)
        with lock:
            allowed.append(n)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(allowed) == 50


def test_memory_stays_bounded():
    clock = Clock()
    limiter = RateLimiter(rate_per_minute=60, burst=2, max_keys=100, clock=clock)
    for i in range(5000):
        limiter.check(f"forged-{i}")
        assert len(limiter) <= 100
    # buckets idle long enough to have refilled go at the next sweep; a busy one keeps its state
    clock.now += 10
    assert limiter.check("busy") is None and limiter.check("busy") is None
    assert len(limiter) == 1
    assert limiter.check("busy") is not None
