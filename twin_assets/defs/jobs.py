"""The whole-graph job and the automation sensor: they span every stage, so they live above them."""

import dagster as dg

from twin_assets.defs.partitions import authors_partitions

# every per-author asset: the serving group's daily summaries span all authors (and a job has
# one partitions definition)
twin_pipeline_job = dg.define_asset_job(
    name="twin_pipeline",
    selection=dg.AssetSelection.all() - dg.AssetSelection.groups("serving"),
    partitions_def=authors_partitions,
    description="The whole graph for one author, end to end (the README's main job).",
)


def automation_sensor(minimum_interval_seconds: int = 30) -> dg.AutomationConditionSensorDefinition:
    """Built when the definitions load, so that its interval is a deployment setting
    (TWIN_AUTOMATION_INTERVAL_S): every stage of a new author's chain waits up to one interval
    after the previous one finishes."""
    return dg.AutomationConditionSensorDefinition(
        name="twin_automation",
        target=dg.AssetSelection.all(),
        default_status=dg.DefaultSensorStatus.RUNNING,
        minimum_interval_seconds=minimum_interval_seconds,
        description="Evaluates every asset's automation condition: new data flows downstream.",
    )
