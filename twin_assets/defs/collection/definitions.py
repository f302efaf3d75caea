"""Collection: the author registry's links crawled into the warehouse, kept current by a
sensor (registry edits) and a weekly schedule."""

import dagster as dg

from twin_assets.defs.collection import assets
from twin_assets.defs.collection.jobs import crawl_job
from twin_assets.defs.collection.schedules import weekly_recrawl
from twin_assets.defs.collection.sensors import author_registry_sensor

defs = dg.Definitions(
    assets=dg.load_assets_from_modules([assets]),
    asset_checks=dg.load_asset_checks_from_modules([assets]),
    jobs=[crawl_job],
    schedules=[weekly_recrawl],
    sensors=[author_registry_sensor],
)
