"""Retention of published index snapshots: the newest versions by publish time stay, aliased
ones and the one a service may be loading are never deleted, a failed deletion is reported
rather than raised, and on S3 the bucket and this worker's mirror are pruned together."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from resources.artifacts import ArtifactStoreResource
from twin_assets.defs.resources import ConfigurationError, build_resources
from twin_assets.domain.documents import Category, Platform, sha256_text
from twin_assets.domain.features import Chunk
from twin_assets.domain.stores import VectorPoint
from twin_assets.features.chunking import chunk_id
from twin_assets.serving.snapshot import (
    CARD,
    IndexSnapshot,
    build_snapshot,
    index_key,
    latest_index_version,
    load_index,
    publish_snapshot,
)
from twin_assets.serving.snapshot_retention import (
    DEFAULT_KEEP,
    prune_index_versions,
    published_versions,
    validate_keep,
)
from twin_assets_tests.conftest import s3_artifact_store

AUTHOR = "ada"
T0 = datetime(2025, 1, 6, 3, 0, tzinfo=UTC)


def _snapshot(n: int) -> IndexSnapshot:
    """A snapshot of `n + 1` chunks: every `n` gives a different content, so another version."""
    rng = np.random.default_rng(n)
    points = []
    for position in range(n + 1):
        text = f"note {position} of revision {n}"
        chunk = Chunk(
            id=chunk_id("ada-notes", position, text),
            author_id=AUTHOR,
            document_id="ada-notes",
            category=Category.ARTICLES,
            platform=Platform.WEB,
            link="https://ada.example/notes",
            title="Notes",
            position=position,
            content=text,
            token_count=5,
            source_hash=sha256_text(text),
        )
        vector = rng.normal(size=8)
        points.append(
            VectorPoint(id=chunk.id, payload=chunk.payload(), vector=list(vector / np.linalg.norm(vector)))
        )
    return build_snapshot(points, {"ada-notes": T0}, "test-model")


def _timed_snapshots(count: int) -> list[IndexSnapshot]:
    """`count` snapshots, oldest first, dated so that publish order is the REVERSE of version
    string order: a prune that sorted the hashes would keep exactly the wrong ones."""
    snapshots = sorted((_snapshot(n) for n in range(count)), key=lambda s: s.version, reverse=True)
    return [dataclasses.replace(s, created_at=T0 + timedelta(hours=i)) for i, s in enumerate(snapshots)]


def _publish_all(artifacts, snapshots: list[IndexSnapshot], keep: int):
    """What `embedded_chunks` does for each: note the alias, publish, prune."""
    report = None
    for snapshot in snapshots:
        previous = latest_index_version(artifacts, AUTHOR)
        publish_snapshot(artifacts, AUTHOR, snapshot)
        report = prune_index_versions(artifacts, AUTHOR, keep, also_keep=[previous or ""])
        assert report.errors == []
    return report


def _stored(root: Path) -> list[str]:
    return sorted(p.name for p in (root / "indexes" / AUTHOR).iterdir())


def test_five_publishes_keep_the_newest_three_by_publish_time(tmp_path):
    artifacts = ArtifactStoreResource(root_dir=str(tmp_path))
    snapshots = _timed_snapshots(5)
    by_hash = sorted(s.version for s in snapshots)
    newest = [s.version for s in reversed(snapshots)][:3]
    assert set(newest) != set(by_hash[-3:])  # the test tells publish time from hash order

    report = _publish_all(artifacts, snapshots, keep=3)

    assert report is not None and report.kept == newest
    assert report.pruned == [snapshots[1].version]  # the oldest went at the previous publish
    assert _stored(tmp_path) == sorted([*newest, "aliases"])  # no hidden leftovers either
    assert [v.version for v in published_versions(artifacts, AUTHOR)] == newest
    latest = load_index(artifacts, AUTHOR)
    assert latest.version == snapshots[-1].version and latest.size == snapshots[-1].count


def test_an_aliased_old_version_and_the_previous_latest_survive(tmp_path):
    artifacts = ArtifactStoreResource(root_dir=str(tmp_path))
    snapshots = _timed_snapshots(5)
    for snapshot in snapshots:
        publish_snapshot(artifacts, AUTHOR, snapshot)
    oldest, second, third = (s.version for s in snapshots[:3])
    artifacts.write_alias(index_key(AUTHOR), "pinned", oldest)
    # an upload that never finished (no card): it cannot be dated, so it is left alone
    unfinished = tmp_path / "indexes" / AUTHOR / "00000000deadbeef"
    unfinished.mkdir()
    (unfinished / "vectors.npy").write_bytes(b"partial")

    report = prune_index_versions(artifacts, AUTHOR, keep=1, also_keep=[third])

    assert report.kept == [snapshots[-1].version, third, oldest]
    assert sorted(report.pruned) == sorted([second, snapshots[3].version])
    assert report.protected == {
        snapshots[-1].version: ["latest"],
        oldest: ["pinned"],
        third: ["in use before this publish"],
    }
    assert report.skipped == {"00000000deadbeef": f"no {CARD} (an unfinished upload)"}
    assert _stored(tmp_path) == sorted([snapshots[-1].version, third, oldest, "00000000deadbeef", "aliases"])
    assert load_index(artifacts, AUTHOR, oldest).size == snapshots[0].count  # still loads whole
    assert load_index(artifacts, AUTHOR).version == snapshots[-1].version


class _FailingDeletes(ArtifactStoreResource):
    """An artifact store whose deletion of one key fails (a permission error, a full disk)."""

    failing: str = ""

    def delete_prefix(self, key: str) -> int:
        if key == self.failing:
            raise PermissionError(f"cannot remove {key}")
        return super().delete_prefix(key)


def test_a_failed_deletion_is_reported_and_the_rest_is_pruned(tmp_path):
    artifacts = ArtifactStoreResource(root_dir=str(tmp_path))
    snapshots = _timed_snapshots(4)
    for snapshot in snapshots:
        publish_snapshot(artifacts, AUTHOR, snapshot)
    stuck = snapshots[0].version
    failing = _FailingDeletes(root_dir=str(tmp_path), failing=index_key(AUTHOR, stuck))
    report = prune_index_versions(failing, AUTHOR, keep=2)
    assert report.pruned == [snapshots[1].version]
    assert stuck in report.kept and len(report.errors) == 1 and "PermissionError" in report.errors[0]
    assert stuck in _stored(tmp_path)
    # the next prune retries it
    assert prune_index_versions(artifacts, AUTHOR, keep=2).pruned == [stuck]


def test_keep_is_validated_where_it_is_configured(tmp_path):
    for bad in (0, -1, True, 2.5, "3"):
        with pytest.raises(ValueError, match="at least 1"):
            validate_keep(bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="at least 1"):
        prune_index_versions(ArtifactStoreResource(root_dir=str(tmp_path)), AUTHOR, keep=0)
    with pytest.raises(ValidationError):
        ArtifactStoreResource(root_dir=str(tmp_path), index_keep=0)
    assert build_resources({"TWIN_DATA_DIR": str(tmp_path)})["artifacts"].index_keep == DEFAULT_KEEP == 3
    assert (
        build_resources({"TWIN_DATA_DIR": str(tmp_path), "TWIN_INDEX_KEEP": "5"})["artifacts"].index_keep == 5
    )
    for bad in ("0", "two", "-3"):
        with pytest.raises(ConfigurationError, match=f"TWIN_INDEX_KEEP={bad!r} is not valid"):
            build_resources({"TWIN_DATA_DIR": str(tmp_path), "TWIN_INDEX_KEEP": bad})


def test_nothing_published_prunes_nothing(tmp_path):
    report = prune_index_versions(ArtifactStoreResource(root_dir=str(tmp_path)), AUTHOR)
    assert (report.kept, report.pruned, report.errors) == ([], [], [])


# -- S3 (moto) ---------------------------------------------------------------------------------

BUCKET = "twin-index-retention"


def _s3_versions(store: ArtifactStoreResource) -> set[str]:
    prefix = f"llm-twin/indexes/{AUTHOR}/"
    keys = [
        o["Key"] for o in store._client().list_objects_v2(Bucket=BUCKET, Prefix=prefix).get("Contents", [])
    ]
    return {k[len(prefix) :].split("/")[0] for k in keys}


def test_s3_prunes_the_bucket_and_the_mirror_without_partial_copies(moto_url, tmp_path, monkeypatch):
    writer = s3_artifact_store(moto_url, tmp_path / "w1", BUCKET)
    writer._client().create_bucket(Bucket=BUCKET)
    snapshots = _timed_snapshots(5)
    for snapshot in snapshots[:4]:
        publish_snapshot(writer, AUTHOR, snapshot)
    assert writer.list_children(index_key(AUTHOR)) == sorted([*(s.version for s in snapshots[:4]), "aliases"])

    # another worker, whose mirror holds none of them, publishes the fifth and prunes from S3
    other = s3_artifact_store(moto_url, tmp_path / "w2", BUCKET)
    deletes: list[list[str]] = []
    real_client = ArtifactStoreResource._client

    def recording_client(self):
        client = real_client(self)
        delete = client.delete_objects

        def delete_objects(**kwargs):
            deletes.append([o["Key"].rsplit("/", 1)[-1] for o in kwargs["Delete"]["Objects"]])
            return delete(**kwargs)

        client.delete_objects = delete_objects
        return client

    monkeypatch.setattr(ArtifactStoreResource, "_client", recording_client)
    previous = latest_index_version(other, AUTHOR)
    publish_snapshot(other, AUTHOR, snapshots[4])
    report = prune_index_versions(other, AUTHOR, keep=3, also_keep=[previous or ""])

    newest = [s.version for s in reversed(snapshots)][:3]
    assert report.errors == [] and report.kept == newest
    assert sorted(report.pruned) == sorted(s.version for s in snapshots[:2])
    assert _s3_versions(other) == {*newest, "aliases"}
    assert deletes == [[CARD], ["chunks.jsonl", "vectors.npy"]] * 2  # each card before its files
    # reading the cards left no card-only copy in the mirror that get_dir would take as complete
    assert not other.local_path(index_key(AUTHOR, snapshots[2].version)).exists()
    assert load_index(other, AUTHOR, snapshots[2].version).size == snapshots[2].count  # downloaded whole
    # the first worker's mirror still holds the pruned ones: its own next prune removes them
    assert prune_index_versions(writer, AUTHOR, keep=3).pruned == [snapshots[1].version, snapshots[0].version]
    assert _stored(tmp_path / "w1") == sorted([*(s.version for s in snapshots[2:4]), "aliases"])
    assert load_index(writer, AUTHOR).version == snapshots[4].version
