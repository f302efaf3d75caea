"""Freshness: the loaded code location carries a configurable policy on embedded_chunks (and on
deployed_endpoint once that stage is registered), the freshness daemon's own evaluator grades it
PASS/WARN/FAIL as configured, and the weekly re-crawl plus the eager conditions really refresh
embedded_chunks inside the window (an unchanged re-crawl still flows down)."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta

import dagster as dg
import pytest
from dagster._core.definitions.freshness import FreshnessState, TimeWindowFreshnessPolicy
from dagster._core.definitions.freshness_evaluator import FRESHNESS_EVALUATORS_BY_POLICY_TYPE
from dagster._core.loader import LoadingContextForTest
from dagster._core.test_utils import freeze_time
from dagster._utils.schedules import cron_string_iterator

from twin_assets.defs.partitions import AUTHORS_PARTITION
from twin_assets.defs.resources import (
    FRESHNESS_ENV,
    ConfigurationError,
    freshness_policies_from_env,
    parse_freshness_policy,
)

AUTHOR = "maya-kowalski"
EMBEDDED = dg.AssetKey("embedded_chunks")
DEPLOYED = dg.AssetKey("deployed_endpoint")


@pytest.fixture
def clean_env(monkeypatch, tmp_path):
    for name in FRESHNESS_ENV.values():
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TWIN_DATA_DIR", str(tmp_path / "data"))
    return monkeypatch


def _load() -> dg.Definitions:
    from twin_assets.definitions import defs as load_defs

    return load_defs()


def _specs(defs: dg.Definitions) -> dict[dg.AssetKey, dg.AssetSpec]:
    return {spec.key: spec for spec in defs.resolve_all_asset_specs()}


def test_default_policies_are_attached_to_the_loaded_definitions(clean_env):
    defs = _load()
    dg.Definitions.validate_loadable(defs)
    specs = _specs(defs)
    defaults = freshness_policies_from_env({})
    assert specs[EMBEDDED].freshness_policy == defaults["embedded_chunks"]
    assert specs[EMBEDDED].freshness_policy == dg.FreshnessPolicy.time_window(
        fail_window=timedelta(days=9), warn_window=timedelta(days=8)
    )
    if DEPLOYED in specs:  # the deployment stage registers it; once it does, it is watched too
        assert specs[DEPLOYED].freshness_policy == defaults["deployed_endpoint"]
    # the asset graph the webserver and the freshness daemon read carries the same policy
    node = defs.resolve_asset_graph().get(EMBEDDED)
    assert node.freshness_policy_or_from_metadata == defaults["embedded_chunks"]
    # nothing else got a policy by accident
    watched = {k for k, s in specs.items() if s.freshness_policy is not None}
    assert watched <= {EMBEDDED, DEPLOYED}


def test_policies_are_configured_by_environment(clean_env):
    clean_env.setenv("TWIN_FRESHNESS_EMBEDDED_CHUNKS", "cron=0 9 * * 1;lower=30h;tz=Europe/Berlin")
    clean_env.setenv("TWIN_FRESHNESS_DEPLOYED_ENDPOINT", "off")
    specs = _specs(_load())
    assert specs[EMBEDDED].freshness_policy == dg.FreshnessPolicy.cron(
        deadline_cron="0 9 * * 1", lower_bound_delta=timedelta(hours=30), timezone="Europe/Berlin"
    )
    if DEPLOYED in specs:
        assert specs[DEPLOYED].freshness_policy is None

    clean_env.setenv("TWIN_FRESHNESS_EMBEDDED_CHUNKS", "off")
    assert _specs(_load())[EMBEDDED].freshness_policy is None


def test_an_invalid_policy_fails_the_load_naming_its_variable(clean_env):
    clean_env.setenv("TWIN_FRESHNESS_EMBEDDED_CHUNKS", "1d/2d")
    with pytest.raises(ConfigurationError, match=r"TWIN_FRESHNESS_EMBEDDED_CHUNKS.*warn_window must be less"):
        _load()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("9d", dg.FreshnessPolicy.time_window(fail_window=timedelta(days=9))),
        (
            "36h/90m",
            dg.FreshnessPolicy.time_window(
                fail_window=timedelta(hours=36), warn_window=timedelta(minutes=90)
            ),
        ),
        (
            " fail=2w ; warn=8d ",
            dg.FreshnessPolicy.time_window(fail_window=timedelta(weeks=2), warn_window=timedelta(days=8)),
        ),
        (
            "cron=0 3 * * *;lower=2h",
            dg.FreshnessPolicy.cron(deadline_cron="0 3 * * *", lower_bound_delta=timedelta(hours=2)),
        ),
        ("OFF", None),
    ],
)
def test_policy_text_forms(text, expected):
    assert parse_freshness_policy(text) == expected


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("nine days", "not a duration"),
        ("9x", "not a duration"),
        ("-1d", "not a duration"),
        ("fail=9d;lower=1h", "time-window policy takes"),
        ("cron=0 9 * * 1", "cron policy takes"),
        ("cron=0 9 * * 1;lower=8d", "lower_bound_delta must be less"),
        ("cron=61 9 * * 1;lower=1h", "cron"),
        ("warn=1d", "time-window policy takes"),
        ("fail=2d;often=1d", "unknown key"),
    ],
)
def test_bad_policy_text_is_a_clear_error(text, problem):
    with pytest.raises(ValueError, match=problem):
        parse_freshness_policy(text)


def _state(instance: dg.DagsterInstance, defs: dg.Definitions, key: dg.AssetKey, at: float) -> FreshnessState:
    """What the freshness daemon would record for `key` at time `at` (its own evaluator)."""
    node = defs.resolve_asset_graph().get(key)
    policy = node.freshness_policy_or_from_metadata
    assert policy is not None
    evaluator = FRESHNESS_EVALUATORS_BY_POLICY_TYPE[type(policy)]()
    with freeze_time(at):
        return asyncio.run(evaluator.evaluate_freshness(LoadingContextForTest(instance), node))


def test_the_daemon_grades_embedded_chunks_against_the_configured_window(clean_env):
    defs = _load()
    with dg.instance_for_test() as instance:
        assert _state(instance, defs, EMBEDDED, time.time()) == FreshnessState.UNKNOWN  # never built
        instance.add_dynamic_partitions(AUTHORS_PARTITION, [AUTHOR])
        instance.report_runless_asset_event(dg.AssetMaterialization(asset_key=EMBEDDED, partition=AUTHOR))
        now = time.time()
        day = 86_400
        assert _state(instance, defs, EMBEDDED, now + 1 * day) == FreshnessState.PASS
        assert _state(instance, defs, EMBEDDED, now + 7.9 * day) == FreshnessState.PASS
        assert _state(instance, defs, EMBEDDED, now + 8.5 * day) == FreshnessState.WARN
        assert _state(instance, defs, EMBEDDED, now + 9.5 * day) == FreshnessState.FAIL


def test_weekly_recrawl_keeps_embedded_chunks_inside_the_window(clean_env):
    """The schedule ticks every 7 days (< the 8-day warn window), and an UNCHANGED re-crawl still
    flows down: after raw_documents materializes, cleaned_documents, chunks and embedded_chunks are
    requested by their eager conditions, even with the same data version."""
    defs = _load()
    schedule = defs.resolve_schedule_def("weekly_recrawl")
    assert isinstance(schedule.cron_schedule, str)
    ticks = cron_string_iterator(time.time(), schedule.cron_schedule, "UTC")
    first, second = next(ticks), next(ticks)
    gap = second.timestamp() - first.timestamp()
    policy = _specs(defs)[EMBEDDED].freshness_policy
    assert isinstance(policy, TimeWindowFreshnessPolicy) and policy.warn_window is not None
    assert gap == 7 * 86_400 < policy.warn_window.to_timedelta().total_seconds()

    chain = [dg.AssetKey(k) for k in ("raw_documents", "cleaned_documents", "chunks", "embedded_chunks")]
    graph = defs.resolve_asset_graph()
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(AUTHORS_PARTITION, [AUTHOR])
        # the author's whole graph built once (last week's cycle), every asset with its version
        for key in graph.get_all_asset_keys():
            partitioned = graph.get(key).partitions_def is not None
            instance.report_runless_asset_event(
                dg.AssetMaterialization(
                    asset_key=key,
                    partition=AUTHOR if partitioned else None,
                    tags={"dagster/data_version": "v1"},
                )
            )
        result = dg.evaluate_automation_conditions(defs=defs, instance=instance)
        for key in chain[1:]:
            assert AUTHOR not in result.get_requested_partitions(key)  # settled: nothing to do
        # the weekly run re-crawls and finds nothing new: same data version, one more materialization
        instance.report_runless_asset_event(
            dg.AssetMaterialization(asset_key=chain[0], partition=AUTHOR, tags={"dagster/data_version": "v1"})
        )
        result = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=result.cursor)
        # one tick requests the whole chain (eager counts a dep that will be requested as updated)
        for key in chain[1:]:
            assert result.get_requested_partitions(key) == {AUTHOR}, f"the re-crawl did not refresh {key}"
        # and once that run has built them, nothing more is asked for
        for key in chain[1:]:
            instance.report_runless_asset_event(
                dg.AssetMaterialization(asset_key=key, partition=AUTHOR, tags={"dagster/data_version": "v1"})
            )
        result = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=result.cursor)
        for key in chain[1:]:
            assert AUTHOR not in result.get_requested_partitions(key)
