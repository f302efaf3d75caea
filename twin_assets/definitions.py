"""The LLM Twin code location: every asset, check, sensor, schedule and resource, in one place.

Start here. Each stage lives in `twin_assets/assets/<stage>.py`; the plain functions they call
live in the stage's package (`crawling/`, `features/`, `datasets/`, `training/`), and every
connection to the outside world is a resource in `resources/` (wired in `resources_config.py`).
"""

from __future__ import annotations

import dagster as dg

from twin_assets.assets import collection
from twin_assets.assets import datasets as dataset_assets
from twin_assets.assets import features as feature_assets
from twin_assets.assets import training as training_assets
from twin_assets.jobs import crawl_job, purge_author_job, twin_pipeline_job
from twin_assets.resources_config import build_resources
from twin_assets.schedules import weekly_recrawl
from twin_assets.sensors import author_registry_sensor, automation_sensor

ASSET_MODULES = [collection, feature_assets, dataset_assets, training_assets]

defs = dg.Definitions(
    assets=dg.load_assets_from_modules(ASSET_MODULES),
    asset_checks=dg.load_asset_checks_from_modules(ASSET_MODULES),
    jobs=[crawl_job, twin_pipeline_job, purge_author_job],
    schedules=[weekly_recrawl],
    sensors=[author_registry_sensor, automation_sensor],
    resources=build_resources(),
)
