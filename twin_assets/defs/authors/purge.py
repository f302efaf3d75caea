"""The purge as the CLI and the `purge_author` job run it: the plain `purge_author` wired to this
Dagster instance's author partition."""

from __future__ import annotations

import dagster as dg

from resources.vector_store import QdrantResource
from twin_assets.authors.purge import PurgeReport, purge_author
from twin_assets.defs.partitions import authors_partitions
from twin_assets.domain.stores import ArtifactStore, AuthorDataStore


def purge_author_everywhere(
    author_id: str,
    *,
    instance: dg.DagsterInstance,
    store: AuthorDataStore,
    qdrant: QdrantResource,
    artifacts: ArtifactStore,
    keep_artifacts: bool = False,
) -> PurgeReport:
    """The purge as the CLI and the `purge_author` job run it: the warehouse, the Qdrant
    collection (opened here and closed again, for local mode's one-client lock), the artifact
    store and the author's partition on this Dagster `instance`."""

    partitions = authors_partitions.name
    assert partitions is not None  # a DynamicPartitionsDefinition always has one here

    def delete_partition(key: str) -> bool:
        if not instance.has_dynamic_partition(partitions, key):
            return False
        instance.delete_dynamic_partition(partitions, key)
        return True

    with qdrant.open() as index:
        return purge_author(
            author_id,
            store=store,
            delete_vectors=index.delete_author,
            artifacts=artifacts,
            delete_partition=delete_partition,
            keep_artifacts=keep_artifacts,
        )
