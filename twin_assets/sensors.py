"""Sensors: new or changed authors in the registry become partitions and crawls; declarative
automation carries new data downstream."""

from __future__ import annotations

import json

import dagster as dg

from resources.author_registry import AuthorRegistryResource
from twin_assets.authors import RegistryError, author_fingerprint
from twin_assets.jobs import crawl_job
from twin_assets.partitions import authors_partitions


@dg.sensor(
    job=crawl_job,
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Watches the author registry file: adds partitions and requests crawls.",
)
def author_registry_sensor(
    context: dg.SensorEvaluationContext, authors: AuthorRegistryResource
) -> dg.SensorResult | dg.SkipReason:
    """The cursor holds each author's fingerprint, so an author is crawled when added or when
    their links change, and never merely because the sensor ticked."""
    try:
        registry = authors.authors()
    except RegistryError as exc:
        # A broken edit must not un-register anyone: report it, keep the cursor, try again.
        return dg.SkipReason(f"author registry invalid, nothing changed: {exc}")
    seen: dict[str, str] = json.loads(context.cursor) if context.cursor else {}
    current = {a.id: author_fingerprint(a) for a in registry}
    existing = set(context.instance.get_dynamic_partitions(authors_partitions.name))
    new_keys = sorted(k for k in current if k not in existing)
    changed = sorted(k for k, fp in current.items() if seen.get(k) != fp)
    if not new_keys and not changed:
        return dg.SkipReason("author registry unchanged")
    return dg.SensorResult(
        run_requests=[
            dg.RunRequest(partition_key=k, run_key=f"{k}:{current[k]}", tags={"twin/author": k})
            for k in changed
        ],
        dynamic_partitions_requests=[authors_partitions.build_add_request(new_keys)]
        if new_keys
        else [],
        cursor=json.dumps(current, sort_keys=True),
    )


automation_sensor = dg.AutomationConditionSensorDefinition(
    name="twin_automation",
    target=dg.AssetSelection.all(),
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=30,
    description="Evaluates every asset's automation condition: new data flows downstream.",
)
