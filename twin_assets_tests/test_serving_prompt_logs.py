"""Prompt logs: the warehouse store, the non-blocking sampled logger, the daily summary and plot."""

from __future__ import annotations

import threading
from datetime import UTC, date, datetime, timedelta

import pytest

from resources.warehouse import API_KEYS, PROMPT_LOGS
from twin_assets.authors.purge import purge_author
from twin_assets.domain.serving import PromptLog, RetrievedRef
from twin_assets.serving.keys import KeyRing
from twin_assets.serving.prompt_logs import PromptLogger, plot_day, sampled, summarise_day

DAY = date(2026, 11, 20)
T0 = datetime(2026, 11, 20, tzinfo=UTC)


def make_log(
    i: int, *, at: datetime | None = None, status: int = 200, author: str = "alice", **kw
) -> PromptLog:
    values: dict = {
        "id": f"log-{i:05d}",
        "at": at or T0 + timedelta(minutes=i),
        "author_id": author,
        "model": author,
        "model_version": "v1",
        "index_version": "i1",
        "route": "/v1/twins/alice/answer",
        "question": f"question {i}",
        "retrieved": [RetrievedRef(chunk_id=f"c{i}", document_id=f"d{i % 3}", score=0.5)],
        "answer": f"answer {i}",
        "timings_ms": {"search": 10.0 + i, "generation": 100.0 + i, "total": 120.0 + i},
        "prompt_tokens": 100,
        "completion_tokens": 20,
        "key_id": "key-1",
        "status": status,
        "finish_reason": "stop",
    }
    values.update(kw)
    return PromptLog(**values)


@pytest.fixture
def store(warehouse):
    return warehouse.get_store()


@pytest.fixture
def db(warehouse):
    return warehouse.get_client()[warehouse.database]


class SlowStore:
    """A store whose inserts wait for a gate (a slow warehouse), optionally failing."""

    def __init__(self, fail: bool = False):
        self.gate = threading.Event()
        self.fail = fail
        self.batches: list[list[PromptLog]] = []

    def insert_prompt_logs(self, logs):
        self.gate.wait(10)
        if self.fail:
            raise ConnectionError("warehouse down")
        self.batches.append(list(logs))
        return len(logs)

    def find_prompt_logs(self, start, end, author_id=None):
        return []

    def delete_prompt_logs_before(self, cutoff):
        return 0


# -- the store ---------------------------------------------------------------------------------


def test_store_round_trip_query_and_retention(store, db):
    logs = [make_log(i, at=T0 + timedelta(hours=i)) for i in range(48)]  # two days, hourly
    logs.append(make_log(99, at=T0 + timedelta(hours=3), author="bob"))
    assert store.insert_prompt_logs(logs) == 49
    assert store.insert_prompt_logs([*logs[:5], make_log(100, at=T0)]) == 1  # ids stored are skipped
    assert db[PROMPT_LOGS].count_documents({}) == 50

    day = store.find_prompt_logs(T0, T0 + timedelta(days=1))
    assert len(day) == 26 and [e.at for e in day] == sorted(e.at for e in day)
    assert day[0].at.tzinfo is not None and day[0].retrieved[0].document_id in {"d0", "d1", "d2"}
    first = next(e for e in day if e.id == "log-00000")
    assert first == logs[0]  # every field survives the warehouse
    assert [e.id for e in store.find_prompt_logs(T0, T0 + timedelta(days=1), "bob")] == ["log-00099"]
    assert store.find_prompt_logs(T0 + timedelta(days=2), T0 + timedelta(days=3)) == []

    assert store.delete_prompt_logs_before(T0 + timedelta(days=1)) == 26
    assert db[PROMPT_LOGS].count_documents({}) == 24
    assert min(e.at for e in store.find_prompt_logs(T0, T0 + timedelta(days=9))) == T0 + timedelta(days=1)


def test_purging_an_author_deletes_their_logs_and_key_scopes(store, db):
    store.insert_prompt_logs([make_log(i, author="gone" if i % 2 else "kept") for i in range(10)])
    ring = KeyRing(store)
    raw, scoped = ring.create("gone and kept", ["gone", "kept"])
    _, only_gone = ring.create("gone only", ["gone"])
    report = purge_author("gone", store=store)
    assert report.warehouse[PROMPT_LOGS] == 5
    assert report.warehouse[f"{API_KEYS} (scopes)"] == 2
    assert {r["author_id"] for r in db[PROMPT_LOGS].find({})} == {"kept"}
    keys = {k.id: k for k in ring.list()}
    assert keys[scoped.id].authors == ["kept"] and keys[only_gone.id].authors == []
    assert not ring.allows(keys[only_gone.id], "gone") and not ring.allows(keys[only_gone.id], "kept")
    assert ring.verify(raw) is not None and not ring.allows(ring.verify(raw), "gone")


# -- the logger --------------------------------------------------------------------------------


def test_logger_writes_every_log_in_batches(store):
    with PromptLogger(store, flush_interval_s=0.05, max_batch=40) as logger:
        for i in range(100):
            assert logger.record(make_log(i))
        assert logger.flush(10)
        stats = logger.stats()
    assert stats["written"] == 100 and stats["queued"] == 100 and stats["dropped"] == 0
    assert stats["failed"] == 0 and stats["pending"] == 0
    assert len(store.find_prompt_logs(T0, T0 + timedelta(days=1))) == 100


def test_sampling_keeps_every_error_and_a_stable_share_of_successes(store):
    ids = [f"id-{i}" for i in range(4000)]
    share = sum(sampled(i, 0.25) for i in ids) / len(ids)
    assert 0.22 < share < 0.28
    assert [sampled(i, 0.25) for i in ids] == [sampled(i, 0.25) for i in ids]  # deterministic
    assert all(sampled(i, 1.0) for i in ids[:50]) and not any(sampled(i, 0.0) for i in ids[:50])

    logs = [make_log(i, status=500 if i % 10 == 0 else 200) for i in range(200)]
    with PromptLogger(store, sample_rate=0.25, flush_interval_s=0.05) as logger:
        for entry in logs:
            logger.record(entry)
        logger.flush()
        stats = logger.stats()
    kept = {e.id for e in store.find_prompt_logs(T0, T0 + timedelta(days=1))}
    expected = {e.id for e in logs if e.status >= 400 or sampled(e.id, 0.25)}
    assert kept == expected
    assert {e.id for e in logs if e.status >= 400} <= kept  # every error
    assert stats["sampled_out"] == 200 - len(expected) > 0


def test_a_full_queue_drops_and_counts_without_blocking():
    slow = SlowStore()
    logger = PromptLogger(slow, max_queue=5, max_batch=1, flush_interval_s=0.01)
    try:
        results = [logger.record(make_log(i)) for i in range(50)]  # the writer is stuck
        assert results.count(False) >= 44 and logger.stats()["dropped"] == results.count(False)
    finally:
        slow.gate.set()
        logger.close()
    written = sum(len(b) for b in slow.batches)
    assert written == results.count(True) == logger.stats()["written"]


def test_write_failures_are_counted_and_never_raised(caplog):
    broken = SlowStore(fail=True)
    broken.gate.set()
    logger = PromptLogger(broken, flush_interval_s=0.01)
    secret_question = "what is the launch codename?"
    assert logger.record(make_log(1, question=secret_question))
    assert logger.flush(5)
    logger.close()
    assert logger.stats()["failed"] == 1 and logger.stats()["written"] == 0
    assert "ConnectionError" in caplog.text and secret_question not in caplog.text
    assert not logger.record(make_log(2))  # closed: dropped, not raised
    assert logger.stats()["dropped"] == 1


def test_close_flushes_what_is_queued(store):
    logger = PromptLogger(store, flush_interval_s=30)  # would wait half a minute for a batch
    for i in range(7):
        logger.record(make_log(i))
    logger.close(10)
    assert len(store.find_prompt_logs(T0, T0 + timedelta(days=1))) == 7


def test_keys_pasted_into_a_question_are_not_stored(store):
    raw = "twin_" + "k3y_" * 10
    with PromptLogger(store, flush_interval_s=0.01) as logger:
        logger.record(make_log(1, question=f"is {raw} my key?", error=f"bad header Bearer {raw}"))
        logger.flush()
    (stored,) = store.find_prompt_logs(T0, T0 + timedelta(days=1))
    assert raw not in stored.question and raw not in (stored.error or "")
    assert "twin_[REDACTED]" in stored.question


def test_logger_applies_retention(store):
    now = datetime.now(UTC)
    store.insert_prompt_logs(
        [make_log(1, at=now - timedelta(days=40)), make_log(2, at=now - timedelta(days=2))]
    )
    with PromptLogger(store, retention_days=30) as logger:
        logger.flush()
        assert logger.apply_retention() == 0  # the writer already did it when it started
    left = store.find_prompt_logs(now - timedelta(days=100), now)
    assert [e.id for e in left] == ["log-00002"]
    with pytest.raises(ValueError):
        PromptLogger(store, sample_rate=1.5)


# -- the summary -------------------------------------------------------------------------------


def test_summary_figures():
    logs = [make_log(i) for i in range(100)]  # minutes 0..99 of the day: hours 0 and 1
    logs += [
        make_log(
            200 + i, status=429, prompt_tokens=0, completion_tokens=0, retrieved=[], timings_ms={"total": 1.0}
        )
        for i in range(10)
    ]
    logs += [make_log(300, author="bob", status=500, at=T0 + timedelta(hours=5))]
    logs += [make_log(400, at=T0 - timedelta(minutes=1))]  # the day before: ignored
    s = summarise_day(logs, DAY)
    assert s.requests == 111 and s.errors == 11 and s.error_rate == pytest.approx(11 / 111)
    assert s.status_counts == {200: 100, 429: 10, 500: 1}
    assert s.requests_per_author == {"alice": 110, "bob": 1}
    assert s.requests_per_hour[:6] == [60, 40, 0, 10, 0, 1] and sum(s.requests_per_hour) == 111
    # latency over the answered requests: search 10..109, total 120..219
    assert s.latency_ms["search"].count == 100
    assert s.latency_ms["search"].p50 == pytest.approx(59.5)
    assert s.latency_ms["search"].p95 == pytest.approx(104.05)
    assert s.latency_ms["total"].p99 == pytest.approx(218.01)
    assert s.latency_ms["total"].max == 219.0
    assert "rerank" not in s.latency_ms  # never recorded
    assert s.prompt_tokens == 100 * 100 + 100 and s.completion_tokens == 20 * 101
    assert s.prompt_tokens_per_request == 100.0 and s.completion_tokens_per_request == 20.0
    assert [(d.document_id, d.count) for d in s.top_documents] == [("d0", 34), ("d1", 33), ("d2", 33)]
    md = s.to_markdown()
    assert "| 111 | 11 | 9.91% |" in md and "| search | 100 | 59.5 |" in md and "| d0 | 34 |" in md


def test_an_empty_day():
    s = summarise_day([], DAY)
    assert s.requests == 0 and s.error_rate == 0 and s.latency_ms == {} and s.top_documents == []
    assert plot_day([], DAY).startswith(b"\x89PNG")


def test_plot_is_a_png():
    png = plot_day([make_log(i) for i in range(30)] + [make_log(99, status=500)], DAY)
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 5000
