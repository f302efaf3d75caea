"""Forgetting an author: every store keyed by that author is cleared, nobody else is touched,
a registered author is refused, and a failing store neither stops the rest nor hides."""

from __future__ import annotations

import uuid
from pathlib import Path

import dagster as dg
import pytest
from dagster_aws.s3 import S3Resource
from qdrant_client import models

from resources.artifacts import ArtifactStoreResource
from resources.author_registry import AuthorRegistryResource
from resources.vector_store import QdrantResource
from resources.warehouse import AUTHOR_COLLECTIONS, AUTHORS
from twin_assets.authors.purge import (
    AuthorStillRegistered,
    PurgeFailed,
    ensure_not_registered,
    purge_author,
)
from twin_assets.defs.authors.jobs import purge_author_job
from twin_assets.defs.collection.sensors import author_registry_sensor
from twin_assets.defs.partitions import authors_partitions

GONE, KEPT = "ola-nowak", "maya-kowalski"
REGISTRY_KEPT = f"""authors:
  - id: {KEPT}
    full_name: Maya Kowalski
    links:
      - url: https://medium.com/@mayakowalski
"""
REGISTRY_BOTH = (
    REGISTRY_KEPT
    + f"""  - id: {GONE}
    full_name: Ola Nowak
    links:
      - url: https://olanowak.substack.com/archive
"""
)


def _fill(db, qdrant: QdrantResource, artifacts: ArtifactStoreResource) -> None:
    """Two authors' rows in every per-author collection, points and artifact files."""
    for author in (GONE, KEPT):
        for name in AUTHOR_COLLECTIONS:
            db[name].insert_many(
                [{"_id": f"{author}-{name}-{i}", "author_id": author, "link": f"l{i}"} for i in range(3)]
            )
        db[AUTHORS].insert_one({"_id": author, "id": author})
        for key in (
            f"datasets/{author}/instruction/v1/train.parquet",
            f"models/{author}/sft/v1/adapter.bin",
            f"models/{author}/sft/aliases/latest.json",
        ):
            artifacts.put_bytes(key, b"x")
    with qdrant.open() as index:
        index.ensure_collection(4)
        index.client.upsert(
            index.collection,
            points=[
                models.PointStruct(
                    id=str(uuid.uuid4()),
                    vector=[0.1, 0.2, 0.3, float(i)],
                    payload={"author_id": author, "document_id": f"d{i}"},
                )
                for author in (GONE, KEPT)
                for i in range(5)
            ],
            wait=True,
        )


@pytest.fixture
def db(warehouse):
    """The warehouse database through stock pymongo (the store hides its collections)."""
    return warehouse.get_client()[warehouse.database]


@pytest.fixture
def stores(warehouse, db, tmp_path):
    qdrant = QdrantResource(path=str(tmp_path / "qdrant"), collection="purge_test")
    artifacts = ArtifactStoreResource(root_dir=str(tmp_path / "artifacts"))
    store = warehouse.get_store()
    _fill(db, qdrant, artifacts)
    return store, qdrant, artifacts


def _counts(db, qdrant, artifacts, author):
    rows = sum(db[n].count_documents({"author_id": author}) for n in AUTHOR_COLLECTIONS)
    rows += db[AUTHORS].count_documents({"_id": author})
    with qdrant.open() as index:
        points = index.count(author)
    files = sum(
        1
        for prefix in ("datasets", "models")
        for p in (Path(artifacts.root_dir) / prefix / author).rglob("*")
        if p.is_file()
    )
    return rows, points, files


def test_purge_deletes_one_author_everywhere_and_is_rerunnable(stores, db):
    store, qdrant, artifacts = stores
    deleted_partitions: list[str] = []
    with qdrant.open() as index:
        report = purge_author(
            GONE,
            store=store,
            delete_vectors=index.delete_author,
            artifacts=artifacts,
            delete_partition=lambda a: deleted_partitions.append(a) or True,
        )
    assert _counts(db, qdrant, artifacts, GONE) == (0, 0, 0)
    assert _counts(db, qdrant, artifacts, KEPT) == (3 * len(AUTHOR_COLLECTIONS) + 1, 5, 3)
    assert report.warehouse["chunks"] == 3 and report.warehouse[AUTHORS] == 1
    assert report.vectors == 5
    assert report.artifacts == {f"datasets/{GONE}": 1, f"models/{GONE}": 2}
    assert report.partition_deleted and deleted_partitions == [GONE]
    assert report.total == 3 * len(AUTHOR_COLLECTIONS) + 1 + 5 + 3

    with qdrant.open() as index:  # again: nothing left, still a success
        again = purge_author(GONE, store=store, delete_vectors=index.delete_author, artifacts=artifacts)
    assert again.total == 0 and not again.errors


def test_keep_artifacts_keeps_datasets_and_models(stores, db):
    store, qdrant, artifacts = stores
    purge_author(GONE, store=store, artifacts=artifacts, keep_artifacts=True)
    rows, points, files = _counts(db, qdrant, artifacts, GONE)
    assert rows == 0 and points == 5 and files == 3  # no vector deleter given: vectors untouched


def test_a_failing_store_does_not_stop_the_others_and_keeps_the_partition(stores, db):
    store, qdrant, artifacts = stores

    def broken(author_id: str) -> int:
        raise ConnectionError("qdrant unreachable")

    partition_calls: list[str] = []
    with pytest.raises(PurgeFailed, match="vector store: ConnectionError: qdrant unreachable") as info:
        purge_author(
            GONE,
            store=store,
            delete_vectors=broken,
            artifacts=artifacts,
            delete_partition=lambda a: partition_calls.append(a) or True,
        )
    assert info.value.report.warehouse["chunks"] == 3
    rows, points, files = _counts(db, qdrant, artifacts, GONE)
    assert (rows, points, files) == (0, 5, 0)
    assert partition_calls == []  # the partition stays so the purge can be retried from the UI


@pytest.mark.parametrize("bad", ["", "..", "a/b"])
def test_purge_refuses_ids_that_are_not_author_ids(stores, bad):
    with pytest.raises(ValueError, match="not an author id"):
        purge_author(bad, store=stores[0])


def test_registered_author_is_refused(tmp_path):
    registry = tmp_path / "authors.yaml"
    registry.write_text(REGISTRY_BOTH)
    with pytest.raises(AuthorStillRegistered, match="still in the registry"):
        ensure_not_registered(GONE, AuthorRegistryResource(path=str(registry)).authors())


def test_s3_prefix_delete_removes_the_remote_copies(moto_url, tmp_path):
    s3 = S3Resource(
        endpoint_url=moto_url, region_name="us-east-1", aws_access_key_id="test", aws_secret_access_key="test"
    )
    artifacts = ArtifactStoreResource(root_dir=str(tmp_path / "a"), s3_bucket="purge-bucket", s3=s3)
    client = artifacts._client()
    client.create_bucket(Bucket="purge-bucket")
    for author in (GONE, KEPT):
        for i in range(3):
            artifacts.put_bytes(f"models/{author}/sft/v{i}/adapter.bin", b"w")
    assert artifacts.delete_prefix(f"models/{GONE}") == 3
    keys = [o["Key"] for o in client.list_objects_v2(Bucket="purge-bucket").get("Contents", [])]
    assert keys and all(f"/{KEPT}/" in k for k in keys) and len(keys) == 3
    assert not (tmp_path / "a" / "models" / GONE).exists()
    with pytest.raises(ValueError):
        artifacts.delete_prefix("")


def _run_purge(instance, resources, author_id, confirm):
    return purge_author_job.execute_in_process(
        instance=instance,
        resources=resources,
        run_config={
            "ops": {"purge_author_op": {"config": {"author_id": author_id, "confirm_author_id": confirm}}}
        },
        raise_on_error=False,
    )


def test_purge_job_deletes_data_and_partition_and_the_sensor_recrawls_a_returning_author(
    stores, db, warehouse, tmp_path
):
    _, qdrant, artifacts = stores
    registry = tmp_path / "authors.yaml"
    registry.write_text(REGISTRY_BOTH)
    resources = {
        "authors": AuthorRegistryResource(path=str(registry)),
        "warehouse": warehouse,
        "qdrant": qdrant,
        "artifacts": artifacts,
    }
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(authors_partitions.name, [KEPT, GONE])

        def tick(cursor):
            ctx = dg.build_sensor_context(
                instance=instance,
                cursor=cursor,
                resources={"authors": AuthorRegistryResource(path=str(registry))},
            )
            return author_registry_sensor(ctx)

        first = tick(None)
        assert sorted(r.partition_key for r in first.run_requests) == sorted([GONE, KEPT])

        # still registered: refused, nothing deleted
        refused = _run_purge(instance, resources, GONE, GONE)
        assert not refused.success
        assert _counts(db, qdrant, artifacts, GONE)[1] == 5

        registry.write_text(REGISTRY_KEPT)
        removed = tick(first.cursor)  # removal: no run, no deletion, the cursor forgets the author
        assert isinstance(removed, dg.SensorResult) and removed.run_requests == []
        assert GONE in instance.get_dynamic_partitions(authors_partitions.name)

        mismatch = _run_purge(instance, resources, GONE, KEPT)
        assert not mismatch.success
        assert _counts(db, qdrant, artifacts, GONE)[0] > 0

        done = _run_purge(instance, resources, GONE, GONE)
        assert done.success
        assert _counts(db, qdrant, artifacts, GONE) == (0, 0, 0)
        assert _counts(db, qdrant, artifacts, KEPT)[1] == 5
        assert instance.get_dynamic_partitions(authors_partitions.name) == [KEPT]

        # registered again with the same links: a new partition and a fresh crawl
        registry.write_text(REGISTRY_BOTH)
        back = tick(removed.cursor)
        assert [r.partition_key for r in back.run_requests] == [GONE]
        assert list(back.dynamic_partitions_requests[0].partition_keys) == [GONE]


def test_cli_purge_refuses_registered_and_forgets_unregistered(
    stores, db, warehouse, tmp_path, monkeypatch, capsys
):
    from twin_assets.cli import main

    _, qdrant, artifacts = stores
    registry = tmp_path / "authors.yaml"
    registry.write_text(REGISTRY_BOTH)
    monkeypatch.setenv("TWIN_AUTHORS_FILE", str(registry))
    monkeypatch.setenv("TWIN_MONGO_URI", warehouse.uri)
    monkeypatch.setenv("TWIN_MONGO_DATABASE", warehouse.database)
    monkeypatch.setenv("TWIN_QDRANT_COLLECTION", qdrant.collection)
    monkeypatch.setenv("TWIN_DATA_DIR", str(tmp_path))  # qdrant at <data>/qdrant, as the fixture
    monkeypatch.setenv("TWIN_ARTIFACT_DIR", artifacts.root_dir)
    (tmp_path / "dagster_home").mkdir()
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))

    assert main(["authors", "purge", GONE, "--yes"]) == 1
    assert "still in the registry" in capsys.readouterr().err
    registry.write_text(REGISTRY_KEPT)
    monkeypatch.setattr("builtins.input", lambda prompt: "no")
    assert main(["authors", "purge", GONE]) == 1
    assert _counts(db, qdrant, artifacts, GONE)[1] == 5
    monkeypatch.setattr("builtins.input", lambda prompt: GONE)
    assert main(["authors", "purge", GONE]) == 0
    assert f"purged {GONE}" in capsys.readouterr().out
    assert _counts(db, qdrant, artifacts, GONE) == (0, 0, 0)
    assert _counts(db, qdrant, artifacts, KEPT)[0] > 0
