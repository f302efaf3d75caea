"""Schedules: a weekly re-crawl of every registered author.

`build_schedule_from_partitioned_job` rejects dynamic partitions, so the schedule yields one
run request per author partition itself. Partitions are never deleted (their history stays
browsable), so the registry, not the partition list, says who is still crawled: a removed
author's run could only fail.
"""

from __future__ import annotations

import dagster as dg

from resources.author_registry import AuthorRegistryResource
from twin_assets.authors.registry import RegistryError
from twin_assets.defs.collection.jobs import crawl_job
from twin_assets.defs.partitions import AUTHORS_PARTITION


@dg.schedule(
    cron_schedule="0 3 * * 1",
    job=crawl_job,
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Mondays 03:00 UTC: re-crawl every registered author; unchanged pages are not rewritten.",
)
def weekly_recrawl(context: dg.ScheduleEvaluationContext, authors: AuthorRegistryResource):
    try:
        registered = {a.id for a in authors.authors()}
    except RegistryError as exc:
        # a broken edit is reported and retried next week; it must not crawl the wrong set
        return dg.SkipReason(f"author registry invalid, no re-crawl requested: {exc}")
    partitions = set(context.instance.get_dynamic_partitions(AUTHORS_PARTITION))
    keys = sorted(partitions & registered)
    if not keys:
        if not partitions:
            return dg.SkipReason("no authors registered")
        return dg.SkipReason(
            f"no partition is still in the registry (removed: {', '.join(sorted(partitions))})"
        )
    week = context.scheduled_execution_time.strftime("%G-W%V")
    return [
        dg.RunRequest(partition_key=key, run_key=f"{key}:{week}", tags={"twin/author": key}) for key in keys
    ]
