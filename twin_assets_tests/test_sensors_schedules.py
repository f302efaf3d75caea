"""The author-registry sensor and the weekly re-crawl schedule, through Dagster's test APIs."""

from __future__ import annotations

from datetime import UTC, datetime

import dagster as dg

from resources.author_registry import AuthorRegistryResource
from twin_assets.defs.collection.schedules import weekly_recrawl
from twin_assets.defs.collection.sensors import author_registry_sensor
from twin_assets.defs.partitions import authors_partitions

ONE = """authors:
  - id: maya-kowalski
    full_name: Maya Kowalski
    links:
      - url: https://medium.com/@mayakowalski
"""
TWO = (
    ONE
    + """  - id: ola-nowak
    full_name: Ola Nowak
    links:
      - url: https://olanowak.substack.com/archive
"""
)


def _tick(instance, path, cursor=None):
    """One sensor evaluation; its context is closed after it (an open one would leave the
    instance published in a context variable for every later definitions load)."""
    with dg.build_sensor_context(
        instance=instance, cursor=cursor, resources={"authors": AuthorRegistryResource(path=str(path))}
    ) as ctx:
        return author_registry_sensor(ctx)


def _apply(instance, result):
    for req in result.dynamic_partitions_requests:
        instance.add_dynamic_partitions(req.partitions_def_name, list(req.partition_keys))


def test_sensor_registers_new_authors_and_requests_crawls(tmp_path):
    registry = tmp_path / "authors.yaml"
    registry.write_text(ONE)
    with dg.instance_for_test() as instance:
        result = _tick(instance, registry)
        assert [r.partition_key for r in result.run_requests] == ["maya-kowalski"]
        assert list(result.dynamic_partitions_requests[0].partition_keys) == ["maya-kowalski"]
        _apply(instance, result)

        # nothing changed: no crawl
        again = _tick(instance, registry, cursor=result.cursor)
        assert isinstance(again, dg.SkipReason)

        # a second author: only that one is crawled
        registry.write_text(TWO)
        third = _tick(instance, registry, cursor=result.cursor)
        assert [r.partition_key for r in third.run_requests] == ["ola-nowak"]
        _apply(instance, third)
        assert sorted(instance.get_dynamic_partitions(authors_partitions.name)) == [
            "maya-kowalski",
            "ola-nowak",
        ]

        # a changed link re-crawls that author, with no new partition
        registry.write_text(TWO.replace("@mayakowalski", "@maya"))
        fourth = _tick(instance, registry, cursor=third.cursor)
        assert [r.partition_key for r in fourth.run_requests] == ["maya-kowalski"]
        assert fourth.dynamic_partitions_requests == []


def test_broken_registry_edit_changes_nothing(tmp_path):
    registry = tmp_path / "authors.yaml"
    registry.write_text(ONE)
    with dg.instance_for_test() as instance:
        result = _tick(instance, registry)
        registry.write_text("authors: [")
        broken = _tick(instance, registry, cursor=result.cursor)
        assert isinstance(broken, dg.SkipReason)
        assert "not valid YAML" in broken.skip_message


def test_links_changed_back_and_forth_crawl_every_time(tmp_path):
    """A -> B -> A: the second A is a real change and must not reuse the first A's run key."""
    registry = tmp_path / "authors.yaml"
    registry.write_text(ONE)
    with dg.instance_for_test() as instance:
        first = _tick(instance, registry)
        _apply(instance, first)
        registry.write_text(ONE.replace("@mayakowalski", "@maya"))
        second = _tick(instance, registry, cursor=first.cursor)
        registry.write_text(ONE)
        third = _tick(instance, registry, cursor=second.cursor)
        keys = [r.run_key for res in (first, second, third) for r in res.run_requests]
        assert [r.partition_key for r in third.run_requests] == ["maya-kowalski"]
        assert len(keys) == 3 and len(set(keys)) == 3
        # the same tick evaluated again (same cursor) asks for the same run: Dagster dedupes it
        retried = _tick(instance, registry, cursor=second.cursor)
        assert [r.run_key for r in retried.run_requests] == [r.run_key for r in third.run_requests]
        assert isinstance(_tick(instance, registry, cursor=third.cursor), dg.SkipReason)


def test_sensor_reads_a_cursor_of_the_older_format_without_recrawling(tmp_path):
    import json

    from twin_assets.authors.registry import author_fingerprint, load_registry

    registry = tmp_path / "authors.yaml"
    registry.write_text(ONE)
    old = json.dumps({a.id: author_fingerprint(a) for a in load_registry(registry)})
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(authors_partitions.name, ["maya-kowalski"])
        assert isinstance(_tick(instance, registry, cursor=old), dg.SkipReason)


def _recrawl(instance, registry):
    """One evaluation of the weekly schedule, its context closed after it (see `_tick`)."""
    with dg.build_schedule_context(
        instance=instance,
        scheduled_execution_time=datetime(2026, 11, 30, 3, tzinfo=UTC),
        resources={"authors": AuthorRegistryResource(path=str(registry))},
    ) as ctx:
        return weekly_recrawl(ctx)


def test_weekly_schedule_requests_every_author_once_per_week(tmp_path):
    registry = tmp_path / "authors.yaml"
    registry.write_text(TWO)
    with dg.instance_for_test() as instance:
        assert isinstance(_recrawl(instance, registry), dg.SkipReason)
        instance.add_dynamic_partitions(authors_partitions.name, ["ola-nowak", "maya-kowalski"])
        requests = _recrawl(instance, registry)
        assert [r.partition_key for r in requests] == ["maya-kowalski", "ola-nowak"]
        assert requests[0].run_key == "maya-kowalski:2026-W49"


def test_weekly_schedule_skips_authors_removed_from_the_registry(tmp_path):
    registry = tmp_path / "authors.yaml"
    registry.write_text(ONE)
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(authors_partitions.name, ["ola-nowak", "maya-kowalski"])
        requests = _recrawl(instance, registry)
        assert [r.partition_key for r in requests] == ["maya-kowalski"]  # ola was removed
        registry.write_text("authors: []\n")
        none_left = _recrawl(instance, registry)
        assert isinstance(none_left, dg.SkipReason) and "ola-nowak" in none_left.skip_message
        registry.write_text("authors: [")
        broken = _recrawl(instance, registry)
        assert isinstance(broken, dg.SkipReason) and "not valid YAML" in broken.skip_message
