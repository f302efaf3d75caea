"""`prompt_log_summary`: one day of the inference service's prompt logs, summarised.

Partitioned by day (UTC): a day's figures never change once the day is over, so each partition
is computed once, by the schedule the morning after (or by a backfill). The asset also applies
the logs' retention, so that a warehouse keeps only `retention_days` of them even when the
service (which applies it too) is not running.
"""

import base64
from datetime import UTC, datetime, timedelta

import dagster as dg
from pydantic import Field

from resources.warehouse import WarehouseResource
from twin_assets.serving.prompt_logs import (
    DEFAULT_RETENTION_DAYS,
    DaySummary,
    plot_day,
    retention_cutoff,
    summarise_day,
)

prompt_log_days = dg.DailyPartitionsDefinition(start_date="2026-11-01", timezone="UTC")
"""From the month the service shipped: earlier days have no logs to summarise."""


class PromptLogSummaryConfig(dg.Config):
    retention_days: int = Field(
        default=DEFAULT_RETENTION_DAYS,
        ge=0,
        description="delete prompt logs older than this many days (0: keep them forever)",
    )
    top_documents: int = Field(default=10, ge=1, le=100, description="most-cited documents listed")


def _with_titles(summary: DaySummary, warehouse_store) -> None:
    """Title and link of each most-cited document (a bare id tells a reader nothing)."""
    ids = [d.document_id for d in summary.top_documents]
    if not ids:
        return
    found = {doc.id: doc for doc in warehouse_store.get_cleaned_by_id(ids)}
    for entry in summary.top_documents:
        doc = found.get(entry.document_id)
        if doc is not None:
            entry.title, entry.link = doc.title, doc.link


def _documents_markdown(summary: DaySummary) -> str:
    if not summary.top_documents:
        return "no document was retrieved by an answered request"
    lines = ["| document | title | link | requests |", "|---|---|---|---:|"]
    for d in summary.top_documents:
        title = (d.title or "").replace("|", "\\|")
        lines.append(f"| {d.document_id} | {title} | {d.link or ''} | {d.count} |")
    return "\n".join(lines)


@dg.asset(
    partitions_def=prompt_log_days,
    group_name="serving",
    kinds={"mongodb"},
    code_version="prompt-log-summary-1",
)
def prompt_log_summary(
    context: dg.AssetExecutionContext, config: PromptLogSummaryConfig, warehouse: WarehouseResource
) -> dg.MaterializeResult:
    """The day's requests, error rate, latency percentiles per stage, tokens, most-cited
    documents and requests per author, with a plot of latency and requests per hour."""
    day = datetime.strptime(context.partition_key, "%Y-%m-%d").date()
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    store = warehouse.get_store()
    logs = store.find_prompt_logs(start, start + timedelta(days=1))
    summary = summarise_day(logs, day, top_n=config.top_documents)
    _with_titles(summary, store)
    png = plot_day(logs, day)

    cutoff = retention_cutoff(config.retention_days)
    expired = store.delete_prompt_logs_before(cutoff) if cutoff is not None else 0
    if expired:
        context.log.info(f"retention: deleted {expired} prompt logs older than {cutoff:%Y-%m-%d %H:%M} UTC")

    total = summary.latency_ms.get("total")
    metadata: dict = {
        "summary": dg.MetadataValue.md(summary.to_markdown()),
        "plot": dg.MetadataValue.md(
            f"![prompt logs](data:image/png;base64,{base64.b64encode(png).decode()})"
        ),
        "requests": summary.requests,
        "errors": summary.errors,
        "error_rate": summary.error_rate,
        "latency_ms": dg.MetadataValue.json(
            {stage: s.model_dump() for stage, s in summary.latency_ms.items()}
        ),
        "tokens": dg.MetadataValue.json(
            {
                "prompt": summary.prompt_tokens,
                "completion": summary.completion_tokens,
                "prompt_per_request": summary.prompt_tokens_per_request,
                "completion_per_request": summary.completion_tokens_per_request,
            }
        ),
        "prompt_tokens": summary.prompt_tokens,
        "completion_tokens": summary.completion_tokens,
        "most_cited_documents": dg.MetadataValue.md(_documents_markdown(summary)),
        "requests_per_author": dg.MetadataValue.json(summary.requests_per_author),
        "status_counts": dg.MetadataValue.json({str(k): v for k, v in summary.status_counts.items()}),
        "retention_days": config.retention_days,
        "expired_logs_deleted": expired,
    }
    if total is not None:  # numbers, so the UI plots them across partitions
        metadata |= {"total_p50_ms": total.p50, "total_p95_ms": total.p95, "total_p99_ms": total.p99}
    return dg.MaterializeResult(metadata=metadata)


prompt_log_summary_job = dg.define_asset_job(
    name="prompt_log_summary_job",
    selection=dg.AssetSelection.assets(prompt_log_summary),
    partitions_def=prompt_log_days,
    description="Summarise one day of the inference service's prompt logs.",
)

daily_prompt_log_summary = dg.build_schedule_from_partitioned_job(
    prompt_log_summary_job,
    name="daily_prompt_log_summary",
    hour_of_day=0,
    minute_of_hour=15,
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="00:15 UTC: summarise yesterday's prompt logs (and apply their retention).",
)
