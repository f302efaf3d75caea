"""Prompt monitoring: every request recorded in the warehouse, summarised per day.

`PromptLogger.record` is called on the request path, so it never blocks and never raises: logs
go into a bounded queue that a background thread writes in batches (one insert per batch, at
most every `flush_interval_s`). A full queue drops the log and counts it; a failed insert is
counted and logged (by type, never with the logs' content); the request is never affected.

Sampling keeps every error (status >= 400: the rare events worth reading) and a fraction of the
successes, decided by a hash of the log id, so that the same log is always kept or always
dropped (reproducible in tests, and the same decision in every process). Retention deletes
logs older than `retention_days` (hourly in the logger, and in the daily summary asset).

`summarise_day` and `plot_day` turn one day of logs into what the Dagster asset shows.
"""

from __future__ import annotations

import hashlib
import io
import logging
import queue
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime, timedelta

import numpy as np
from pydantic import BaseModel, Field

from twin_assets.domain.documents import utcnow
from twin_assets.domain.serving import STAGES, PromptLog
from twin_assets.domain.stores import PromptLogStore
from twin_assets.serving.keys import redact_keys

log = logging.getLogger(__name__)

DEFAULT_RETENTION_DAYS = 30
RETENTION_INTERVAL_S = 3600.0

_FLUSH = object()  # queue sentinel: write what is collected now


def sampled(log_id: str, sample_rate: float) -> bool:
    """Whether a successful request's log is kept: a deterministic function of its id."""
    if sample_rate >= 1.0:
        return True
    if sample_rate <= 0.0:
        return False
    digest = hashlib.sha256(log_id.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < sample_rate


def retention_cutoff(retention_days: int, now: datetime | None = None) -> datetime | None:
    """The time before which logs are deleted; None when they are kept forever (0 days)."""
    if retention_days <= 0:
        return None
    return (now or utcnow()) - timedelta(days=retention_days)


class PromptLogger:
    """Non-blocking, batched, sampled writes of `PromptLog`s to a `PromptLogStore`."""

    def __init__(
        self,
        store: PromptLogStore,
        sample_rate: float = 1.0,
        retention_days: int = DEFAULT_RETENTION_DAYS,
        *,
        flush_interval_s: float = 1.0,
        max_queue: int = 10_000,
        max_batch: int = 500,
        retention_interval_s: float = RETENTION_INTERVAL_S,
        clock: Callable[[], datetime] = utcnow,
    ):
        if not 0.0 <= sample_rate <= 1.0:
            raise ValueError(f"sample_rate must be between 0 and 1, not {sample_rate!r}")
        if retention_days < 0:
            raise ValueError(f"retention_days must be >= 0 (0: keep forever), not {retention_days!r}")
        if flush_interval_s <= 0 or max_queue < 1 or max_batch < 1:
            raise ValueError("flush_interval_s, max_queue and max_batch must be positive")
        self._store = store
        self.sample_rate = sample_rate
        self.retention_days = retention_days
        self._interval = flush_interval_s
        self._max_batch = max_batch
        self._retention_interval = retention_interval_s
        self._clock = clock
        self._queue: queue.Queue[object] = queue.Queue(maxsize=max_queue)
        self._closing = threading.Event()
        self._lock = threading.Lock()
        self._counts = Counter[str]()
        self._thread = threading.Thread(target=self._run, name="prompt-logger", daemon=True)
        self._thread.start()

    # -- the request path --------------------------------------------------------------------
    def record(self, entry: PromptLog) -> bool:
        """Queue `entry` for writing if it is sampled in; True if queued. Never blocks, never
        raises."""
        try:
            if entry.status < 400 and not sampled(entry.id, self.sample_rate):
                self._count("sampled_out")
                return False
            if self._closing.is_set():
                self._count("dropped")
                return False
            self._queue.put_nowait(_redacted(entry))
        except queue.Full:
            self._count("dropped")
            return False
        except Exception:  # a monitoring problem must never fail a request
            self._count("dropped")
            return False
        self._count("queued")
        return True

    def stats(self) -> dict[str, int]:
        """queued, sampled_out, dropped, written, failed (logs) and pending (in the queue)."""
        with self._lock:
            out = {
                k: self._counts.get(k, 0) for k in ("queued", "sampled_out", "dropped", "written", "failed")
            }
        out["pending"] = self._queue.qsize()
        return out

    # -- lifecycle ---------------------------------------------------------------------------
    def flush(self, timeout_s: float = 10.0) -> bool:
        """Write everything queued so far; False if that took longer than `timeout_s`."""
        self._wake()
        deadline = time.monotonic() + timeout_s
        with self._queue.all_tasks_done:
            while self._queue.unfinished_tasks:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._queue.all_tasks_done.wait(remaining)
        return True

    def close(self, timeout_s: float = 10.0) -> None:
        """Stop taking logs and write the queued ones (waits up to `timeout_s`)."""
        self._closing.set()
        self._wake()
        self._thread.join(timeout_s)

    def __enter__(self) -> PromptLogger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def apply_retention(self) -> int:
        """Delete the logs older than the retention period now; returns how many went."""
        cutoff = retention_cutoff(self.retention_days, self._clock())
        return 0 if cutoff is None else self._store.delete_prompt_logs_before(cutoff)

    # -- the writer thread -------------------------------------------------------------------
    def _run(self) -> None:
        next_retention = time.monotonic()
        while True:
            closing = self._closing.is_set()
            batch, taken = self._take(closing)
            if batch:
                self._write(batch)
            for _ in range(taken):
                self._queue.task_done()
            if self.retention_days > 0 and time.monotonic() >= next_retention and not closing:
                next_retention = time.monotonic() + self._retention_interval
                try:
                    self.apply_retention()
                except Exception as exc:
                    log.warning("prompt log retention failed: %s", type(exc).__name__)
            if closing and self._queue.empty():
                return

    def _take(self, closing: bool) -> tuple[list[PromptLog], int]:
        """Up to `max_batch` logs: the first waited for (up to one interval), the rest
        collected until the interval since the first has passed, the batch is full, or a flush
        is asked for. Returns (logs, queue items taken, sentinels included)."""
        batch: list[PromptLog] = []
        taken = 0
        deadline = time.monotonic() + self._interval
        while len(batch) < self._max_batch:
            try:
                if closing:
                    item = self._queue.get_nowait()
                else:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    item = self._queue.get(timeout=remaining)
            except queue.Empty:
                break
            taken += 1
            if item is _FLUSH:
                if not closing:
                    break
                continue
            if isinstance(item, PromptLog):
                if not batch:
                    deadline = time.monotonic() + self._interval
                batch.append(item)
            if self._closing.is_set():
                closing = True
        return batch, taken

    def _write(self, batch: list[PromptLog]) -> None:
        try:
            self._store.insert_prompt_logs(batch)
            self._count("written", len(batch))
        except Exception as exc:  # counted and reported; never the logs' content
            self._count("failed", len(batch))
            log.warning("could not write %d prompt logs: %s", len(batch), type(exc).__name__)

    def _wake(self) -> None:
        try:
            self._queue.put_nowait(_FLUSH)
        except queue.Full:  # a full queue keeps the writer busy anyway
            pass

    def _count(self, what: str, n: int = 1) -> None:
        with self._lock:
            self._counts[what] += n


def _redacted(entry: PromptLog) -> PromptLog:
    """The log with anything shaped like an API key removed from its free text (a user may
    paste one into a question; an error message may quote a header)."""
    update = {
        name: redact_keys(value)
        for name, value in (("question", entry.question), ("answer", entry.answer), ("error", entry.error))
        if value and "twin_" in value
    }
    return entry.model_copy(update=update) if update else entry


# -- the daily summary -------------------------------------------------------------------------


class StageLatency(BaseModel):
    """Latency of one stage over the day's answered requests, in milliseconds."""

    count: int
    p50: float
    p95: float
    p99: float
    mean: float
    max: float


class DocumentCount(BaseModel):
    document_id: str
    count: int = Field(description="answered requests that retrieved the document")
    title: str | None = None  # filled in by whoever can look the document up
    link: str | None = None


class DaySummary(BaseModel):
    """One day of prompt logs. Latency and tokens per request are over the ANSWERED requests
    (status < 400): an instant 401 would otherwise pull the percentiles down; errors show in
    the error rate and the status counts."""

    day: date
    requests: int = 0
    errors: int = 0
    error_rate: float = 0.0
    status_counts: dict[int, int] = Field(default_factory=dict)
    latency_ms: dict[str, StageLatency] = Field(default_factory=dict)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    prompt_tokens_per_request: float = 0.0
    completion_tokens_per_request: float = 0.0
    top_documents: list[DocumentCount] = Field(default_factory=list)
    requests_per_author: dict[str, int] = Field(default_factory=dict)
    requests_per_hour: list[int] = Field(default_factory=lambda: [0] * 24)

    def to_markdown(self) -> str:
        lines = [
            f"### Prompt logs, {self.day.isoformat()} (UTC)",
            "",
            "| requests | errors | error rate | prompt tokens | completion tokens | "
            "prompt tokens / request | completion tokens / request |",
            "|---:|---:|---:|---:|---:|---:|---:|",
            f"| {self.requests} | {self.errors} | {self.error_rate:.2%} | {self.prompt_tokens} | "
            f"{self.completion_tokens} | {self.prompt_tokens_per_request:.1f} | "
            f"{self.completion_tokens_per_request:.1f} |",
            "",
        ]
        if self.latency_ms:
            lines += [
                "| stage | n | p50 ms | p95 ms | p99 ms | mean ms | max ms |",
                "|---|---:|---:|---:|---:|---:|---:|",
            ]
            for stage, s in self.latency_ms.items():
                lines.append(
                    f"| {stage} | {s.count} | {s.p50:.1f} | {s.p95:.1f} | {s.p99:.1f} | {s.mean:.1f} | {s.max:.1f} |"
                )
            lines.append("")
        if self.status_counts:
            lines += ["| status | requests |", "|---:|---:|"]
            lines += [f"| {code} | {n} |" for code, n in sorted(self.status_counts.items())]
            lines.append("")
        if self.requests_per_author:
            lines += ["| author | requests |", "|---|---:|"]
            lines += [f"| {_cell(a)} | {n} |" for a, n in sorted(self.requests_per_author.items())]
            lines.append("")
        if self.top_documents:
            lines += ["| most-cited document | requests |", "|---|---:|"]
            lines += [f"| {_cell(d.document_id)} | {d.count} |" for d in self.top_documents]
            lines.append("")
        return "\n".join(lines)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ") or "(none)"


def _on_day(entry: PromptLog, day: date) -> bool:
    return entry.at.astimezone(UTC).date() == day


def summarise_day(logs: Sequence[PromptLog], day: date, *, top_n: int = 10) -> DaySummary:
    """The day's figures from its logs (logs of other days are ignored)."""
    today = [e for e in logs if _on_day(e, day)]
    answered = [e for e in today if e.status < 400]
    summary = DaySummary(day=day, requests=len(today))
    if not today:
        return summary
    summary.errors = len(today) - len(answered)
    summary.error_rate = summary.errors / len(today)
    summary.status_counts = dict(sorted(Counter(e.status for e in today).items()))
    summary.requests_per_author = dict(sorted(Counter(e.author_id for e in today).items()))
    hours = Counter(e.at.astimezone(UTC).hour for e in today)
    summary.requests_per_hour = [hours.get(h, 0) for h in range(24)]
    summary.prompt_tokens = sum(e.prompt_tokens for e in today)
    summary.completion_tokens = sum(e.completion_tokens for e in today)
    if answered:
        summary.prompt_tokens_per_request = sum(e.prompt_tokens for e in answered) / len(answered)
        summary.completion_tokens_per_request = sum(e.completion_tokens for e in answered) / len(answered)
    summary.latency_ms = {
        stage: _latency(values) for stage, values in _stage_timings(answered).items() if values
    }
    cited = Counter(doc for e in answered for doc in {r.document_id for r in e.retrieved})
    summary.top_documents = [
        DocumentCount(document_id=d, count=n)
        for d, n in sorted(cited.items(), key=lambda item: (-item[1], item[0]))[:top_n]
    ]
    return summary


def _stage_timings(logs: Sequence[PromptLog]) -> dict[str, list[float]]:
    """Per stage, the timings of the logs that recorded it (the known stages first, in order)."""
    out: dict[str, list[float]] = {stage: [] for stage in STAGES}
    for e in logs:
        for stage, ms in e.timings_ms.items():
            if ms is not None and np.isfinite(ms) and ms >= 0:
                out.setdefault(stage, []).append(float(ms))
    return out


def _latency(values: list[float]) -> StageLatency:
    arr = np.asarray(values, dtype=float)
    p50, p95, p99 = np.percentile(arr, [50, 95, 99])
    return StageLatency(
        count=len(values),
        p50=float(p50),
        p95=float(p95),
        p99=float(p99),
        mean=float(arr.mean()),
        max=float(arr.max()),
    )


def plot_day(logs: Sequence[PromptLog], day: date | None = None) -> bytes:
    """PNG: the latency distribution of each stage (answered requests, log scale) and the
    requests per hour (answered and errors stacked)."""
    import matplotlib

    matplotlib.use("Agg")  # headless: no display in Dagster workers
    import matplotlib.pyplot as plt

    if day is not None:
        logs = [e for e in logs if _on_day(e, day)]
    answered = [e for e in logs if e.status < 400]
    timings = {stage: v for stage, v in _stage_timings(answered).items() if v}
    fig, (lat_ax, hour_ax) = plt.subplots(1, 2, figsize=(11, 3.6), dpi=90)
    if timings:
        lat_ax.boxplot(list(timings.values()), showfliers=True)
        lat_ax.set_xticks(range(1, len(timings) + 1), list(timings), rotation=30, fontsize=8)
        if all(min(v) > 0 for v in timings.values()):
            lat_ax.set_yscale("log")
        lat_ax.set_ylabel("ms")
    else:
        lat_ax.text(0.5, 0.5, "no answered requests", ha="center", va="center", transform=lat_ax.transAxes)
    lat_ax.set_title("latency per stage", fontsize=10)
    ok = Counter(e.at.astimezone(UTC).hour for e in answered)
    err = Counter(e.at.astimezone(UTC).hour for e in logs if e.status >= 400)
    hours = list(range(24))
    ok_counts = [ok.get(h, 0) for h in hours]
    hour_ax.bar(hours, ok_counts, label="answered", color="tab:blue")
    hour_ax.bar(hours, [err.get(h, 0) for h in hours], bottom=ok_counts, label="errors", color="tab:red")
    hour_ax.set_xlabel("hour (UTC)")
    hour_ax.set_ylabel("requests")
    hour_ax.set_xticks(range(0, 24, 3))
    hour_ax.set_title("requests per hour", fontsize=10)
    hour_ax.legend(fontsize=8)
    title = f"prompt logs {day.isoformat()}" if day else "prompt logs"
    fig.suptitle(f"{title}: {len(logs)} requests", fontsize=10)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()
