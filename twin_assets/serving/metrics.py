"""Prometheus metrics of one app: requests, per-stage latency, tokens, errors, batch sizes.

WHY a registry per app (not prometheus_client's global one): tests build several apps in one
process, and a global registry refuses a second metric of the same name.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from twin_assets.domain.serving import STAGES

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

_LATENCY_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class _GeneratorStats(Collector):
    """Reads the generator's own statistics when scraped (batch sizes are counted by the batcher,
    not by the HTTP layer, which never sees a batch)."""

    def __init__(self, stats: Callable[[], object]):
        self._stats = stats

    def collect(self):
        try:
            raw = self._stats()
            dump = getattr(raw, "model_dump", None)  # the local engine's GeneratorStats
            raw = dump() if callable(dump) else raw
            stats = dict(raw) if isinstance(raw, Mapping) else {}
        except Exception:  # a scrape must never fail because the generator is busy or closed
            return
        sizes = stats.get("batch_sizes")
        if isinstance(sizes, Mapping) and sizes:
            # {batch size: number of batches}: a histogram of the sizes the batcher formed
            counts = {int(k): int(v) for k, v in sizes.items()}  # pyright: ignore[reportArgumentType]
            buckets, running, total = [], 0, 0
            for bound in _BATCH_BUCKETS:
                running = sum(c for size, c in counts.items() if size <= bound)
                buckets.append((str(bound), running))
            total = sum(counts.values())
            buckets.append(("+Inf", total))
            family = HistogramMetricFamily(
                "twin_generator_batch_size", "rows per generation step of the batcher"
            )
            family.add_metric([], buckets, sum_value=float(sum(s * c for s, c in counts.items())))
            yield family
        for key, value in stats.items():
            if isinstance(value, bool) or not isinstance(value, int | float):
                continue
            name = "twin_generator_" + "".join(ch if ch.isalnum() else "_" for ch in key)
            yield GaugeMetricFamily(name, f"generator statistic {key}", value=float(value))


class ServiceMetrics:
    """The app's metrics, registered in a registry of their own."""

    def __init__(self, generator_stats: Callable[[], object] | None = None):
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "twin_requests", "HTTP requests by route and status", ["route", "status"], registry=self.registry
        )
        self.errors = Counter(
            "twin_errors",
            "failed requests by route and error code",
            ["route", "code"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "twin_stage_latency_seconds",
            "latency of each stage of a request (self_query, expansion, search, rerank, generation, total)",
            ["stage"],
            buckets=_LATENCY_BUCKETS_S,
            registry=self.registry,
        )
        self.tokens = Counter(
            "twin_tokens", "tokens in (prompt) and out (completion)", ["direction"], registry=self.registry
        )
        self.swaps = Counter(
            "twin_hot_swaps",
            "model and index versions swapped in while serving",
            ["kind"],
            registry=self.registry,
        )
        for stage in STAGES:  # every stage shows up in a scrape from the start
            self.latency.labels(stage=stage)
        for direction in ("in", "out"):
            self.tokens.labels(direction=direction)
        if generator_stats is not None:
            self.registry.register(_GeneratorStats(generator_stats))

    def observe_request(self, route: str, status: int, error_code: str | None = None) -> None:
        self.requests.labels(route=route, status=str(status)).inc()
        if status >= 400:
            self.errors.labels(route=route, code=error_code or str(status)).inc()

    def observe_timings(self, timings_ms: Mapping[str, float]) -> None:
        for stage, ms in timings_ms.items():
            if stage in STAGES and ms >= 0:
                self.latency.labels(stage=stage).observe(ms / 1000.0)

    def observe_tokens(self, prompt_tokens: int, completion_tokens: int) -> None:
        self.tokens.labels(direction="in").inc(max(prompt_tokens, 0))
        self.tokens.labels(direction="out").inc(max(completion_tokens, 0))

    def render(self) -> bytes:
        return generate_latest(self.registry)
