"""Jobs: named selections that sensors, schedules and users launch per author."""

import dagster as dg

from twin_assets.partitions import authors_partitions

crawl_job = dg.define_asset_job(
    name="crawl_author",
    selection=dg.AssetSelection.assets("raw_documents"),
    partitions_def=authors_partitions,
    description="Re-crawl one author's registered links. Downstream assets follow by automation.",
)

twin_pipeline_job = dg.define_asset_job(
    name="twin_pipeline",
    selection=dg.AssetSelection.all(),
    partitions_def=authors_partitions,
    description="The whole graph for one author, end to end (the README's main job).",
)
