"""Authors: forgetting an author everywhere (the `purge_author` job)."""

import dagster as dg

from twin_assets.defs.authors.jobs import purge_author_job

defs = dg.Definitions(jobs=[purge_author_job])
