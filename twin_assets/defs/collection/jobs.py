"""The crawl job: what the registry sensor and the weekly schedule launch for one author."""

import dagster as dg

from twin_assets.defs.partitions import authors_partitions

crawl_job = dg.define_asset_job(
    name="crawl_author",
    selection=dg.AssetSelection.assets("raw_documents"),
    partitions_def=authors_partitions,
    description="Re-crawl one author's registered links. Downstream assets follow by automation.",
)
