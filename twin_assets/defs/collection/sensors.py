"""The registry sensor: new or changed authors in the registry become partitions and crawls."""

from __future__ import annotations

import json

import dagster as dg

from resources.author_registry import AuthorRegistryResource
from twin_assets.authors.registry import RegistryError, author_fingerprint
from twin_assets.defs.collection.jobs import crawl_job
from twin_assets.defs.partitions import AUTHORS_PARTITION, authors_partitions


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
    their links change, and never merely because the sensor ticked.

    It also counts the evaluations that requested runs, and that count is part of each run key:
    links changed A -> B -> A give the second A a new key (a fingerprint alone would repeat the
    first A's key, which Dagster drops as a duplicate), while re-evaluating from the same cursor
    (a retried tick) yields the same keys and so no duplicate runs."""
    try:
        registry = authors.authors()
    except RegistryError as exc:
        # A broken edit must not un-register anyone: report it, keep the cursor, try again.
        return dg.SkipReason(f"author registry invalid, nothing changed: {exc}")
    seen, evaluation = _read_cursor(context.cursor)
    evaluation += 1
    current = {a.id: author_fingerprint(a) for a in registry}
    existing = set(context.instance.get_dynamic_partitions(AUTHORS_PARTITION))
    new_keys = sorted(k for k in current if k not in existing)
    # a missing partition is crawled even with a known fingerprint: the author was purged
    # (partition deleted) and registered again with the same links
    to_crawl = sorted({k for k, fp in current.items() if seen.get(k) != fp} | set(new_keys))
    removed = sorted(k for k in seen if k not in current)
    if removed:
        # never deleted automatically (a bad edit must not destroy data); forgetting is explicit
        context.log.info(
            f"no longer registered, no longer crawled, data kept: {', '.join(removed)}. "
            "To delete their data: `twin authors purge <id>` or the purge_author job."
        )
    if not to_crawl and not removed:
        return dg.SkipReason("author registry unchanged")
    return dg.SensorResult(
        run_requests=[
            dg.RunRequest(partition_key=k, run_key=f"{k}:{current[k]}:{evaluation}", tags={"twin/author": k})
            for k in to_crawl
        ],
        dynamic_partitions_requests=[authors_partitions.build_add_request(new_keys)] if new_keys else [],
        cursor=json.dumps({"authors": current, "evaluation": evaluation}, sort_keys=True),
    )


def _read_cursor(cursor: str | None) -> tuple[dict[str, str], int]:
    """(fingerprints, evaluations so far); a cursor of the older format (fingerprints only)
    is read as evaluation 0, so an upgrade does not re-crawl everyone."""
    data = json.loads(cursor) if cursor else {}
    if isinstance(data.get("authors"), dict):
        return dict(data["authors"]), int(data.get("evaluation", 0))
    return data, 0
