"""Freshness policies applied to the merged definitions, not in each asset's decorator.

The policies are operations settings (how stale may the index or the endpoint get before someone
is told), configured through `twin_assets/defs/resources.py` like every other setting, and they
span stages owned by different folders; applying them once over the merged definitions keeps
the asset modules free of environment reads and gives one place that says which asset is
watched. The freshness daemon (`freshness: {enabled: true}` in dagster.yaml) evaluates them and
the UI shows each asset's policy and state.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping

import dagster as dg


def with_freshness_policies(
    defs: dg.Definitions, policies: Mapping[str, dg.FreshnessPolicy | None]
) -> dg.Definitions:
    """`defs` with each named asset's freshness policy replaced by the configured one (None
    removes it). Assets not in `defs` are skipped: a stage that is not registered has nothing to
    watch."""

    def apply(spec: dg.AssetSpec) -> dg.AssetSpec:
        name = spec.key.to_user_string()
        if name not in policies:
            return spec
        policy = policies[name]
        if policy is None:
            return spec.replace_attributes(freshness_policy=None)
        return dg.apply_freshness_policy(spec, policy, overwrite_existing=True)

    # Definitions.map_asset_specs is the documented way to attach a policy to built assets
    # (see dg.apply_freshness_policy); it is marked preview in 1.13, which only means its
    # signature may still move.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.PreviewWarning)
        return defs.map_asset_specs(func=apply)
