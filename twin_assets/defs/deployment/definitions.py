"""Deployment: the gated model version and the author's index, live on the configured target."""

import dagster as dg

from twin_assets.defs.deployment import assets

defs = dg.Definitions(assets=dg.load_assets_from_modules([assets]))
