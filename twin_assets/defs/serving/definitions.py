"""Serving: the daily summary of the inference service's prompt logs, and its schedule."""

import dagster as dg

from twin_assets.defs.serving import assets

defs = dg.Definitions(
    assets=dg.load_assets_from_modules([assets]),
    jobs=[assets.prompt_log_summary_job],
    schedules=[assets.daily_prompt_log_summary],
)
