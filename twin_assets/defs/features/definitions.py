"""Features: cleaned documents, chunks and their vectors in Qdrant (the RAG feature store).

The dead-run reaper (`twin_assets.defs.runs`: the code location's executor and its sensor) is
merged here because the pool it protects, `qdrant`, is this stage's; it applies to every run.
"""

import dagster as dg

from twin_assets.defs import runs
from twin_assets.defs.features import assets

defs = dg.Definitions.merge(
    dg.Definitions(
        assets=dg.load_assets_from_modules([assets]),
        asset_checks=dg.load_asset_checks_from_modules([assets]),
    ),
    runs.defs,
)
