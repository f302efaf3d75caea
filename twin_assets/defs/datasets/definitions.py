"""Datasets: the versioned instruction and preference datasets built from the cleaned documents."""

import dagster as dg

from twin_assets.defs.datasets import assets

defs = dg.Definitions(
    assets=dg.load_assets_from_modules([assets]),
    asset_checks=dg.load_asset_checks_from_modules([assets]),
)
