"""Jobs: named selections that sensors, schedules and users launch per author."""

import dagster as dg

from resources.artifacts import ArtifactStoreResource
from resources.author_registry import AuthorRegistryResource
from resources.vector_store import QdrantResource
from resources.warehouse import WarehouseResource
from twin_assets.partitions import authors_partitions

crawl_job = dg.define_asset_job(
    name="crawl_author",
    selection=dg.AssetSelection.assets("raw_documents"),
    partitions_def=authors_partitions,
    description="Re-crawl one author's registered links. Downstream assets follow by automation.",
)

twin_pipeline_job = dg.define_asset_job(
    name="twin_pipeline",
    selection=dg.AssetSelection.all(),
    partitions_def=authors_partitions,
    description="The whole graph for one author, end to end (the README's main job).",
)


class PurgeAuthorConfig(dg.Config):
    """Typing the id twice is the confirmation: a purge cannot be undone."""

    author_id: str
    confirm_author_id: str
    keep_artifacts: bool = False


@dg.op(pool="qdrant", description="Delete one (unregistered) author's documents, vectors, datasets, models and partition.")
def purge_author_op(
    context: dg.OpExecutionContext,
    config: PurgeAuthorConfig,
    authors: AuthorRegistryResource,
    warehouse: WarehouseResource,
    qdrant: QdrantResource,
    artifacts: ArtifactStoreResource,
) -> None:
    from twin_assets.purge import ensure_not_registered, purge_author_everywhere

    if config.author_id != config.confirm_author_id:
        raise dg.Failure(
            f"confirm_author_id {config.confirm_author_id!r} does not match author_id {config.author_id!r}"
        )
    ensure_not_registered(config.author_id, authors.authors())
    report = purge_author_everywhere(
        config.author_id, instance=context.instance, store=warehouse.get_store(), qdrant=qdrant,
        artifacts=artifacts, keep_artifacts=config.keep_artifacts,
    )
    context.log.info(report.summary())


@dg.job(name="purge_author", description="Forget one author: everything stored about them. Refuses while they are registered.")
def purge_author_job():
    purge_author_op()
