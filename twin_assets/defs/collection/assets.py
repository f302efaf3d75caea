"""Stage 1, data collection: the author's own writing, crawled into the warehouse."""

import dagster as dg

from resources.author_registry import AuthorRegistryResource
from resources.crawler import CrawlerResource
from resources.warehouse import WarehouseResource
from twin_assets.crawling.collect import collect_author, collection_metadata
from twin_assets.defs.partitions import authors_partitions

NO_DUPLICATE_LINKS = "no_duplicate_links"
NON_EMPTY_CONTENT = "non_empty_content"


@dg.asset(
    partitions_def=authors_partitions,
    group_name="collection",
    kinds={"python", "mongodb", "playwright"},
    code_version="1",
    check_specs=[
        dg.AssetCheckSpec(
            NO_DUPLICATE_LINKS,
            asset="raw_documents",
            blocking=True,
            description="Each (author, link) is stored once in every category.",
        ),
        dg.AssetCheckSpec(
            NON_EMPTY_CONTENT,
            asset="raw_documents",
            blocking=True,
            description="Every stored document has non-empty content.",
        ),
    ],
)
def raw_documents(
    context: dg.AssetExecutionContext,
    authors: AuthorRegistryResource,
    crawler: CrawlerResource,
    warehouse: WarehouseResource,
) -> dg.MaterializeResult:
    """Every registered link of one author, crawled and upserted into the MongoDB warehouse.

    Failures (404, timeout, refused address, login wall, ...) are recorded with their reason in
    `crawl_failures` and shown here; they never stop the other links. The data version changes
    only when stored content changes, so a re-crawl of an unchanged author is a no-op downstream.
    """
    author = authors.get(context.partition_key)
    store = warehouse.get_store()
    result = collect_author(author, crawler.settings(), store, log=context.log)
    duplicates = store.duplicate_links(author.id)
    empty = store.empty_documents(author.id)
    return dg.MaterializeResult(
        metadata=collection_metadata(result),
        data_version=dg.DataVersion(result.data_version),
        check_results=[
            dg.AssetCheckResult(
                check_name=NO_DUPLICATE_LINKS,
                passed=not duplicates,
                metadata={"duplicates": len(duplicates), "examples": str(duplicates[:5])},
            ),
            dg.AssetCheckResult(
                check_name=NON_EMPTY_CONTENT,
                passed=not empty,
                metadata={"empty_documents": len(empty), "examples": str(empty[:5])},
            ),
        ],
    )
