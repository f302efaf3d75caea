"""The LLM Twin code location. Start reading here.

Each pipeline stage is one folder under `twin_assets/defs/` holding its assets, checks, jobs,
sensors and schedules, merged below. Asset bodies call plain functions in the stage's logic
package (`twin_assets/crawling/`, `features/`, `datasets/`, `training/`), which see storage only
through the typed interfaces in `twin_assets/domain/stores.py`; the Dagster resources in
`resources/` implement those, and `twin_assets/defs/resources.py` is the one place where they are
configured (environment variables -> resource fields).
"""

from __future__ import annotations

import dagster as dg

from twin_assets.defs.authors.definitions import defs as authors
from twin_assets.defs.collection.definitions import defs as collection
from twin_assets.defs.datasets.definitions import defs as datasets
from twin_assets.defs.deployment.definitions import defs as deployment
from twin_assets.defs.evaluation.definitions import defs as evaluation
from twin_assets.defs.features.definitions import defs as features
from twin_assets.defs.freshness import with_freshness_policies
from twin_assets.defs.jobs import automation_sensor, twin_pipeline_job
from twin_assets.defs.resources import (
    automation_interval_from_env,
    build_resources,
    freshness_policies_from_env,
)
from twin_assets.defs.serving.definitions import defs as serving
from twin_assets.defs.training.definitions import defs as training


@dg.definitions
def defs() -> dg.Definitions:
    """Built when Dagster loads the code location (not at import): the resources read their
    configuration from the environment of the process that loads it."""
    merged = dg.Definitions.merge(
        collection,
        features,
        datasets,
        training,
        evaluation,
        deployment,
        authors,
        serving,
        dg.Definitions(
            jobs=[twin_pipeline_job],
            sensors=[automation_sensor(automation_interval_from_env())],
            resources=build_resources(),
        ),
    )
    # freshness is an operations setting across stages: applied once, see defs/freshness.py
    return with_freshness_policies(merged, freshness_policies_from_env())
