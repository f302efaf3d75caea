"""Evaluation: the per-author report on the base, SFT, DPO and production models, and the deploy gate."""

import dagster as dg

from twin_assets.defs.evaluation import assets

defs = dg.Definitions(
    assets=dg.load_assets_from_modules([assets]),
    asset_checks=dg.load_asset_checks_from_modules([assets]),
)
