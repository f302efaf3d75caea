"""Usage counters for one generator. Thread-safe because `generate_many` runs HTTP calls in a
thread pool; one meter per generator (per asset run) keeps each asset's metadata exact."""

from __future__ import annotations

import threading
from collections import Counter

from twin_assets.domain.generation import GenerationUsage, SkipReason


class UsageMeter:
    def __init__(self, backend: str, model: str):
        self._lock = threading.Lock()
        self._usage = GenerationUsage(backend=backend, model=model)
        self._skipped: Counter[str] = Counter()

    def add(self, **deltas: int) -> None:
        """Add to the named `GenerationUsage` counters (requests, retries, successes, tokens)."""
        with self._lock:
            for name, delta in deltas.items():
                setattr(self._usage, name, getattr(self._usage, name) + delta)

    def skip(self, reason: SkipReason) -> None:
        with self._lock:
            self._skipped[reason] += 1

    def snapshot(self) -> GenerationUsage:
        with self._lock:
            return self._usage.model_copy(update={"skipped": dict(self._skipped)})
