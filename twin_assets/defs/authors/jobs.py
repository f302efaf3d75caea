"""The `purge_author` job: forgetting one author everywhere, from the UI."""

import dagster as dg

from resources.artifacts import ArtifactStoreResource
from resources.author_registry import AuthorRegistryResource
from resources.vector_store import QdrantResource
from resources.warehouse import WarehouseResource
from twin_assets.authors.purge import ensure_not_registered
from twin_assets.defs.authors.purge import purge_author_everywhere


class PurgeAuthorConfig(dg.Config):
    """Typing the id twice is the confirmation: a purge cannot be undone."""

    author_id: str
    confirm_author_id: str
    keep_artifacts: bool = False


@dg.op(
    pool="qdrant",
    description="Delete one (unregistered) author's documents, vectors, datasets, models and partition.",
)
def purge_author_op(
    context: dg.OpExecutionContext,
    config: PurgeAuthorConfig,
    authors: AuthorRegistryResource,
    warehouse: WarehouseResource,
    qdrant: QdrantResource,
    artifacts: ArtifactStoreResource,
) -> None:
    if config.author_id != config.confirm_author_id:
        raise dg.Failure(
            f"confirm_author_id {config.confirm_author_id!r} does not match author_id {config.author_id!r}"
        )
    ensure_not_registered(config.author_id, authors.authors())
    report = purge_author_everywhere(
        config.author_id,
        instance=context.instance,
        store=warehouse.get_store(),
        qdrant=qdrant,
        artifacts=artifacts,
        keep_artifacts=config.keep_artifacts,
    )
    context.log.info(report.summary())


@dg.job(
    name="purge_author",
    description="Forget one author: everything stored about them. Refuses while they are registered.",
)
def purge_author_job():
    purge_author_op()
