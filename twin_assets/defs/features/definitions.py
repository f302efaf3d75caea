"""Features: cleaned documents, chunks and their vectors in Qdrant (the RAG feature store)."""

import dagster as dg

from twin_assets.defs.features import assets

defs = dg.Definitions(
    assets=dg.load_assets_from_modules([assets]),
    asset_checks=dg.load_asset_checks_from_modules([assets]),
)
