"""Schedules: a weekly re-crawl of every registered author.

`build_schedule_from_partitioned_job` rejects dynamic partitions, so the schedule yields one
run request per author partition itself.
"""

from __future__ import annotations

import dagster as dg

from twin_assets.jobs import crawl_job
from twin_assets.partitions import authors_partitions


@dg.schedule(
    cron_schedule="0 3 * * 1",
    job=crawl_job,
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Mondays 03:00 UTC: re-crawl every author; unchanged pages are not rewritten.",
)
def weekly_recrawl(context: dg.ScheduleEvaluationContext):
    keys = context.instance.get_dynamic_partitions(authors_partitions.name)
    if not keys:
        return dg.SkipReason("no authors registered")
    week = context.scheduled_execution_time.strftime("%G-W%V")
    return [
        dg.RunRequest(partition_key=key, run_key=f"{key}:{week}", tags={"twin/author": key})
        for key in sorted(keys)
    ]
