"""The daily `prompt_log_summary` asset, materialized on a day of logs in the real warehouse."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta

import dagster as dg

from twin_assets.defs.serving.assets import daily_prompt_log_summary, prompt_log_summary
from twin_assets.domain.documents import Category, Platform
from twin_assets.domain.features import CleanedDocument
from twin_assets.domain.serving import PromptLog, RetrievedRef


def _log(i: int, at: datetime, status: int = 200, doc: str = "doc-a") -> PromptLog:
    return PromptLog(
        id=f"p{i}",
        at=at,
        author_id="alice" if i % 4 else "bob",
        model="alice",
        route="/v1/chat/completions",
        question=f"q{i}",
        retrieved=[RetrievedRef(chunk_id=f"c{i}", document_id=doc, score=0.9)],
        answer="a",
        timings_ms={
            "self_query": 1.0,
            "expansion": 2.0,
            "search": 5.0 + i,
            "rerank": 3.0,
            "generation": 50.0 + i,
            "total": 70.0 + i,
        },
        prompt_tokens=200,
        completion_tokens=30,
        key_id="key-1",
        status=status,
    )


def test_prompt_log_summary_materializes_a_day_with_plot_and_retention(warehouse):
    now = datetime.now(UTC)
    day = (now - timedelta(days=1)).date()
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    store = warehouse.get_store()
    logs = [_log(i, start + timedelta(minutes=7 * i), doc="doc-a" if i % 3 else "doc-b") for i in range(40)]
    logs += [_log(100 + i, start + timedelta(hours=20), status=503) for i in range(2)]
    other_day = [_log(200, start - timedelta(hours=2)), _log(201, start + timedelta(days=1, minutes=1))]
    expired = [_log(300 + i, now - timedelta(days=45)) for i in range(3)]
    store.insert_prompt_logs(logs + other_day + expired)
    store.upsert_cleaned(
        [
            CleanedDocument(
                id="doc-a",
                author_id="alice",
                platform=Platform.MEDIUM,
                category=Category.ARTICLES,
                link="https://example.org/a",
                title="Document A",
                content="x",
                raw_content_hash="r",
                content_hash="c",
            )
        ]
    )

    with dg.instance_for_test() as instance:
        result = dg.materialize(
            [prompt_log_summary],
            resources={"warehouse": warehouse},
            partition_key=day.isoformat(),
            instance=instance,
            run_config={"ops": {"prompt_log_summary": {"config": {"retention_days": 30}}}},
        )
    assert result.success
    (mat,) = result.asset_materializations_for_node("prompt_log_summary")
    meta = mat.metadata
    assert meta["requests"].value == 42 and meta["errors"].value == 2
    assert abs(meta["error_rate"].value - 2 / 42) < 1e-9
    assert meta["prompt_tokens"].value == 42 * 200 and meta["completion_tokens"].value == 42 * 30
    latency = meta["latency_ms"].value
    assert set(latency) == {"self_query", "expansion", "search", "rerank", "generation", "total"}
    assert latency["total"]["count"] == 40 and latency["total"]["p50"] == 70.0 + 19.5
    assert meta["total_p95_ms"].value == latency["total"]["p95"]
    assert meta["tokens"].value["prompt_per_request"] == 200.0
    cited = meta["most_cited_documents"].value
    assert "| doc-a | Document A | https://example.org/a | 26 |" in cited and "| doc-b |  |  | 14 |" in cited
    assert meta["requests_per_author"].value == {"alice": 31, "bob": 11}
    assert meta["status_counts"].value == {"200": 40, "503": 2}
    assert "| 42 | 2 |" in meta["summary"].value
    plot = meta["plot"].value
    assert plot.startswith("![prompt logs](data:image/png;base64,")
    assert base64.b64decode(plot.split(",", 1)[1].rstrip(")")).startswith(b"\x89PNG")

    # retention: the 45-day-old logs are gone, the rest kept
    assert meta["expired_logs_deleted"].value == 3
    kept = store.find_prompt_logs(now - timedelta(days=100), now + timedelta(days=2))
    assert {e.id for e in kept} == {e.id for e in logs + other_day}


def test_the_schedule_asks_for_yesterday():
    with dg.instance_for_test() as instance:
        tick = datetime(2026, 11, 25, 0, 15, tzinfo=UTC)
        # the context is a context manager: left open, it keeps the instance published in a
        # context variable after the instance is gone, and later definitions loads fail
        with dg.build_schedule_context(instance=instance, scheduled_execution_time=tick) as context:
            requests = list(daily_prompt_log_summary.evaluate_tick(context).run_requests or [])
    assert [r.partition_key for r in requests] == ["2026-11-24"]
