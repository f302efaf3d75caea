"""The sample author through collection and features, as the README's main job runs them:
retrieval returns sensible, cited chunks, and editing one page re-embeds only that page."""

from __future__ import annotations

import shutil

import dagster as dg
import pytest
import yaml

from resources.artifacts import ArtifactStoreResource
from resources.author_registry import AuthorRegistryResource
from resources.crawler import CrawlerResource
from resources.embedder import EmbedderResource
from resources.vector_store import QdrantResource
from twin_assets.crawling.settings import CrawlSettings
from twin_assets.defs.collection.assets import raw_documents
from twin_assets.defs.features.assets import chunks, cleaned_documents, embedded_chunks
from twin_assets.defs.partitions import authors_partitions
from twin_assets.paths import PROJECT_ROOT
from twin_assets.sample_data.prepare import prepare_sample
from twin_assets.sample_data.server import SITE_DIR, SampleSite
from twin_assets_tests.conftest import free_port

AUTHOR = "maya-kowalski"
EDITED = "medium/@mayakowalski/small-language-models-are-boring/index.html"


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory, mongo_server):
    """A private copy of the sample site (so one page can be edited) and resources for it."""
    from resources.warehouse import WarehouseResource

    root = tmp_path_factory.mktemp("e2e")
    site_root = root / "site"
    shutil.copytree(SITE_DIR, site_root)
    site = SampleSite(port=free_port(), root=site_root)
    site.start()
    data = root / "data"
    prepare_sample(data)
    registry = yaml.safe_load((PROJECT_ROOT / "authors.yaml").read_text())
    for link in registry["authors"][0]["links"]:
        link["url"] = (
            link["url"]
            .replace("${TWIN_SAMPLE_SITE_URL}", site.base_url)
            .replace("${TWIN_DATA_DIR}", str(data))
        )
    (root / "authors.yaml").write_text(yaml.safe_dump(registry))
    resources = {
        "authors": AuthorRegistryResource(path=str(root / "authors.yaml")),
        "crawler": CrawlerResource.from_settings(
            CrawlSettings(allow_hosts=["127.0.0.1"], allow_local_sources=True, min_domain_interval_s=0)
        ),
        "warehouse": WarehouseResource(uri=mongo_server.uri, database="e2e"),
        "embedder": EmbedderResource(),
        "qdrant": QdrantResource(path=str(root / "qdrant")),
        "artifacts": ArtifactStoreResource(root_dir=str(root / "artifacts")),
    }
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(authors_partitions.name, [AUTHOR])
        yield site_root, resources, instance
    site.stop()


def _run(resources, instance):
    result = dg.materialize(
        [raw_documents, cleaned_documents, chunks, embedded_chunks],
        resources=resources,
        partition_key=AUTHOR,
        instance=instance,
    )
    assert result.success
    assert all(c.passed for c in result.get_asset_check_evaluations())
    return {
        node: result.asset_materializations_for_node(node)[0]
        for node in ("raw_documents", "cleaned_documents", "chunks", "embedded_chunks")
    }


def test_sample_author_is_retrievable_with_citations_and_edits_are_incremental(pipeline):
    site_root, resources, instance = pipeline
    first = _run(resources, instance)
    assert first["embedded_chunks"].metadata["chunks_embedded"].value > 50

    with resources["qdrant"].open() as index:
        from twin_assets.features.retrieval import retrieve

        hits = retrieve(
            "How do I make a pipeline idempotent so that re-runs never duplicate rows?",
            AUTHOR,
            5,
            embedder=resources["embedder"],
            index=index,
        )
        assert "idempotent" in hits[0].link
        assert hits[0].title and hits[0].content and hits[0].score > 0.3
        code_hits = retrieve(
            "split python source into chunks by top-level functions with ast",
            AUTHOR,
            3,
            embedder=resources["embedder"],
            index=index,
            categories=["repositories"],
        )
        assert code_hits and all(h.category == "repositories" for h in code_hits)
        assert code_hits[0].file_path and code_hits[0].file_path.endswith(".py")

    # a no-op re-run: nothing re-embedded, same data versions downstream
    second = _run(resources, instance)
    assert second["embedded_chunks"].metadata["chunks_embedded"].value == 0
    for node in ("raw_documents", "cleaned_documents", "chunks", "embedded_chunks"):
        assert second[node].tags["dagster/data_version"] == first[node].tags["dagster/data_version"]

    # the author edits one article: only that document is re-cleaned, re-chunked, re-embedded
    page = site_root / EDITED
    html = page.read_text()
    marker = "</h2>"
    assert marker in html
    page.write_text(
        html.replace(
            marker,
            marker + '<p class="pw-post-body-paragraph">Update: I re-ran the numbers on a '
            "quantised 360M model and the boring answer still holds.</p>",
            1,
        )
    )
    third = _run(resources, instance)
    assert third["raw_documents"].metadata["updated"].value == 1
    assert third["raw_documents"].metadata["new"].value == 0
    assert third["cleaned_documents"].metadata["updated"].value == 1
    assert (
        third["cleaned_documents"].metadata["unchanged"].value
        == first["cleaned_documents"].metadata["new"].value - 1
    )
    embedded = third["embedded_chunks"].metadata
    assert 0 < embedded["chunks_embedded"].value <= 12
    assert embedded["points"].value >= first["embedded_chunks"].metadata["points"].value
    assert (
        third["embedded_chunks"].tags["dagster/data_version"]
        != first["embedded_chunks"].tags["dagster/data_version"]
    )
