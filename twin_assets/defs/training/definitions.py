"""Training: the base model, then SFT and DPO fine-tunes registered with their lineage."""

import dagster as dg

from twin_assets.defs.training import assets

defs = dg.Definitions(
    assets=dg.load_assets_from_modules([assets]),
    asset_checks=dg.load_asset_checks_from_modules([assets]),
)
