"""Stage 2, features: raw documents -> cleaned documents -> chunks -> vectors in Qdrant.

Thin assets over `twin_assets.features.*`. All three are partitioned per author like
`raw_documents` and incremental inside a partition (only changed documents are reprocessed);
their data versions are hashes of what they hold, so a no-op re-run keeps the same version and
nothing downstream becomes stale.

Automation: `eager()` — a new or updated upstream partition flows through as soon as the
automation sensor runs. Stricter conditions are not needed: each run is incremental and cheap
when little changed, and the blocking checks stop a bad partition inside the run.

Concurrency: `embedded_chunks` runs in the Dagster pool `qdrant`. Local-mode Qdrant locks its
folder (one client per path per process tree), so two steps writing at once would fail; with
the pool's limit at 1 (`concurrency: pools: default_limit: 1` in dagster.yaml) they queue
instead. With a Qdrant server the pool merely serialises writers, which is harmless.
"""

import dagster as dg

from resources.artifacts import ArtifactStoreResource
from resources.embedder import EmbedderResource
from resources.vector_store import QdrantResource
from resources.warehouse import WarehouseResource
from twin_assets.defs.partitions import authors_partitions
from twin_assets.domain.features import failure_table
from twin_assets.features import incremental, validation
from twin_assets.features.chunking import CHUNKER_VERSION
from twin_assets.features.cleaning import CLEANER_VERSION
from twin_assets.features.reporting import category_table, chunk_preview, token_histogram
from twin_assets.serving.snapshot import build_snapshot, index_uri, latest_index_version, publish_snapshot
from twin_assets.serving.snapshot_retention import prune_index_versions

RAW_DOCUMENTS = dg.AssetKey("raw_documents")
TOKEN_LIMIT = "chunks_within_token_limit"
EMBEDDED_ONCE = "every_chunk_embedded_once"
VECTOR_DIMENSION = "vector_dimension_matches_model"
NO_ORPHANS = "no_orphan_points"
NO_FAILED = "no_failed_documents"
QDRANT_POOL = "qdrant"


def _stats_metadata(stats: incremental.StageStats) -> dict:
    meta: dict[str, object] = {
        "new": stats.new,
        "updated": stats.updated,
        "unchanged": stats.unchanged,
        "deleted": stats.deleted,
        "failed": stats.failed,
    }
    if stats.failed_documents:
        meta["failed_documents"] = dg.MetadataValue.md(failure_table(stats.failed_documents))
    return meta


def _prune_metadata(
    context: dg.AssetExecutionContext, artifacts: ArtifactStoreResource, author_id: str, previous: str | None
) -> dict[str, dg.MetadataValue]:
    """Retention after a publish: the author's versions beyond the newest `index_keep` go,
    aliased ones and `previous` (what `latest` named until now, which a service may be loading)
    stay. A failure is reported, never raised: the new version is already published."""
    report = prune_index_versions(artifacts, author_id, artifacts.index_keep, also_keep=[previous or ""])
    for error in report.errors:
        context.log.warning(f"index retention: {error}")
    if report.pruned:
        context.log.info(
            f"index retention: deleted {len(report.pruned)} old version(s) {', '.join(report.pruned)}"
        )
    meta: dict[str, dg.MetadataValue] = {
        "index_versions_kept": dg.MetadataValue.json(report.kept),
        "pruned_index_versions": dg.MetadataValue.json(report.pruned),
        "prune_errors": dg.MetadataValue.json(report.errors),
    }
    if report.skipped:
        meta["prune_skipped"] = dg.MetadataValue.json(report.skipped)
    return meta


def _no_failed_spec(asset: str) -> dg.AssetCheckSpec:
    return dg.AssetCheckSpec(
        NO_FAILED,
        asset=asset,
        blocking=False,
        description="No document failed in this run. A failed document is skipped (reason in "
        "the metadata), keeps what earlier runs stored for it and is retried next run; the "
        "others are written, so this only warns.",
    )


def _no_failed_result(stats: incremental.StageStats) -> dg.AssetCheckResult:
    passed, meta = validation.check_failed_documents(stats.failed_documents)
    meta["failures"] = dg.MetadataValue.md(meta["failures"])
    return dg.AssetCheckResult(
        check_name=NO_FAILED,
        passed=passed,
        severity=dg.AssetCheckSeverity.WARN,
        description=f"{stats.failed} document(s) failed and were skipped" if not passed else "none failed",
        metadata=meta,
    )


def _fail_if_nothing_usable(stage: str, stats: incremental.StageStats) -> None:
    """Every document the stage handled failed and none was usable before: nothing useful was
    produced, so the step fails (with the reasons) instead of reporting success."""
    if stats.all_failed:
        raise dg.Failure(
            description=f"{stage}: every document failed ({stats.failed}); nothing was produced. "
            f"First reason: {stats.failed_documents[0].reason}",
            metadata={"failed_documents": dg.MetadataValue.md(failure_table(stats.failed_documents))},
        )


@dg.asset(
    deps=[RAW_DOCUMENTS],
    partitions_def=authors_partitions,
    group_name="features",
    kinds={"python", "mongodb"},
    code_version=f"cleaner-{CLEANER_VERSION}",
    automation_condition=dg.AutomationCondition.eager(),
    check_specs=[_no_failed_spec("cleaned_documents")],
)
def cleaned_documents(
    context: dg.AssetExecutionContext, warehouse: WarehouseResource
) -> dg.MaterializeResult:
    """The author's first snapshot: category-aware cleaned documents in the warehouse.

    Fine-tuning datasets are built from it; each keeps the raw document's id and content hash.
    Only raw documents whose hash (or the cleaner version) changed are re-cleaned.
    """
    author_id = context.partition_key
    store = warehouse.get_store()
    stats = incremental.clean_author(store, author_id, log=context.log.info)
    _fail_if_nothing_usable("cleaned_documents", stats)
    docs = store.get_cleaned(author_id)
    by_category: dict[str, int] = {}
    languages: dict[str, int] = {}
    for d in docs:
        by_category[d.category.value] = by_category.get(d.category.value, 0) + 1
        languages[d.language] = languages.get(d.language, 0) + 1
    return dg.MaterializeResult(
        metadata={
            **_stats_metadata(stats),
            "documents": len(docs),
            "by_category": dg.MetadataValue.md(category_table(by_category)),
            "languages": dg.MetadataValue.json(languages),
        },
        data_version=dg.DataVersion(incremental.cleaned_version(store, author_id)),
        check_results=[_no_failed_result(stats)],
    )


@dg.asset(
    deps=[cleaned_documents],
    partitions_def=authors_partitions,
    group_name="features",
    kinds={"python", "mongodb"},
    code_version=f"chunker-{CHUNKER_VERSION}",
    automation_condition=dg.AutomationCondition.eager(),
    check_specs=[
        dg.AssetCheckSpec(
            TOKEN_LIMIT,
            asset="chunks",
            blocking=True,
            description="No chunk is longer than the embedding model's max_seq_length "
            "(special tokens included), re-measured with its tokenizer.",
        ),
        _no_failed_spec("chunks"),
    ],
)
def chunks(
    context: dg.AssetExecutionContext, warehouse: WarehouseResource, embedder: EmbedderResource
) -> dg.MaterializeResult:
    """Token-exact, category-aware chunks in the warehouse collection `chunks`.

    They live in the warehouse (not only in Qdrant) so they are inspectable and checkable on
    their own, dataset builders can read them without the vector store, and `embedded_chunks`
    fetches only the chunks of documents that changed.
    """
    author_id = context.partition_key
    store = warehouse.get_store()
    budget = embedder.token_budget()
    stats = incremental.chunk_author(store, author_id, budget, embedder.model_name, log=context.log.info)
    _fail_if_nothing_usable("chunks", stats)
    by_category, tokens = incremental.chunk_profile(store, author_id)
    passed, check_meta = validation.check_token_limit(store, author_id, budget)
    sample = incremental.get_chunks(store, author_id, None)[:200]
    return dg.MaterializeResult(
        metadata={
            **_stats_metadata(stats),
            "chunks": len(tokens),
            "by_category": dg.MetadataValue.md(category_table(dict(by_category))),
            "token_histogram": dg.MetadataValue.md(token_histogram(tokens, budget.max_seq_length)),
            "max_tokens": max(tokens, default=0),
            "preview": dg.MetadataValue.md(chunk_preview(sample)),
        },
        data_version=dg.DataVersion(incremental.chunks_version(store, author_id)),
        check_results=[
            dg.AssetCheckResult(check_name=TOKEN_LIMIT, passed=passed, metadata=check_meta),
            _no_failed_result(stats),
        ],
    )


@dg.asset(
    deps=[chunks],
    partitions_def=authors_partitions,
    group_name="features",
    kinds={"python", "qdrant", "pytorch"},
    code_version="embed-1",
    automation_condition=dg.AutomationCondition.eager(),
    # freshness: configured in one place for the whole code location (defs/freshness.py)
    pool=QDRANT_POOL,
    check_specs=[
        dg.AssetCheckSpec(
            EMBEDDED_ONCE,
            asset="embedded_chunks",
            blocking=True,
            description="Every chunk in the warehouse has exactly one Qdrant point, and no point is extra.",
        ),
        dg.AssetCheckSpec(
            VECTOR_DIMENSION,
            asset="embedded_chunks",
            blocking=True,
            description="The collection and stored vectors have the embedding model's dimension and unit norm.",
        ),
        dg.AssetCheckSpec(
            NO_ORPHANS,
            asset="embedded_chunks",
            blocking=True,
            description="No point belongs to a deleted document or a replaced chunk.",
        ),
        _no_failed_spec("embedded_chunks"),
    ],
)
def embedded_chunks(
    context: dg.AssetExecutionContext,
    warehouse: WarehouseResource,
    embedder: EmbedderResource,
    qdrant: QdrantResource,
    artifacts: ArtifactStoreResource,
) -> dg.MaterializeResult:
    """Chunk vectors in Qdrant (the RAG snapshot), with citation payloads, and the read-only
    index version the inference service loads.

    Only chunks of new/changed documents are embedded; points of changed or deleted documents
    are removed. The checks run in this step, on the same client (the local folder is locked).
    When they pass, the author's points are published as an immutable, content-addressed index
    version (`indexes/<author>/<version>`, alias `latest`): the service never opens the Qdrant
    folder this step writes, and an unchanged author publishes nothing new. Then the author's
    older versions are pruned to the newest `TWIN_INDEX_KEEP` (aliased ones stay), so that
    re-embedding does not fill the disk; what was deleted or failed to be is in the metadata.
    """
    author_id = context.partition_key
    store = warehouse.get_store()
    with qdrant.open() as index:
        stats = incremental.embed_author(store, index, embedder, author_id, log=context.log.info)
        _fail_if_nothing_usable("embedded_chunks", stats)
        excused = {f.document_id for f in stats.failed_documents}
        once_ok, once_meta = validation.check_embedded_once(store, index, author_id, excused)
        dim_ok, dim_meta = validation.check_dimension(index, author_id, embedder.dimension)
        orphan_ok, orphan_meta = validation.check_no_orphans(store, index, author_id, excused)
        points = index.count(author_id)
        publish: dict[str, str | dg.MetadataValue] = {}
        if once_ok and dim_ok and orphan_ok:  # a failed check blocks downstream: publish nothing
            dates = {d.id: d.published_at for d in store.get_documents(author_id)}
            snapshot = build_snapshot(index.scroll(author_id, with_vectors=True), dates, embedder.model_name)
            previous = latest_index_version(artifacts, author_id)
            version = publish_snapshot(artifacts, author_id, snapshot)
            publish = {"index_version": version, "index_uri": index_uri(artifacts, author_id, version)}
            context.log.info(f"retrieval index {version} published ({snapshot.count} chunks)")
            publish.update(_prune_metadata(context, artifacts, author_id, previous))
    return dg.MaterializeResult(
        metadata={
            **_stats_metadata(stats),
            "chunks_embedded": stats.chunks_embedded,
            "chunks_reused": stats.chunks_reused,
            "points_deleted": stats.points_deleted,
            "orphans_repaired": stats.orphans_repaired,
            "points": points,
            "model": embedder.model_name,
            "dimension": embedder.dimension,
            "collection": qdrant.collection,
            "qdrant": "server" if not qdrant.is_local else "local",
            **publish,
        },
        data_version=dg.DataVersion(incremental.embedded_version(store, author_id, embedder.model_name)),
        check_results=[
            dg.AssetCheckResult(check_name=EMBEDDED_ONCE, passed=once_ok, metadata=once_meta),
            dg.AssetCheckResult(check_name=VECTOR_DIMENSION, passed=dim_ok, metadata=dim_meta),
            dg.AssetCheckResult(check_name=NO_ORPHANS, passed=orphan_ok, metadata=orphan_meta),
            _no_failed_result(stats),
        ],
    )
