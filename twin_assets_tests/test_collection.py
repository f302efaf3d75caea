"""`raw_documents` end to end: the sample author crawled through real Chromium into the real
wire-protocol server, via Dagster's APIs and via the `dagster asset materialize` CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest
import yaml

from resources.author_registry import AuthorRegistryResource
from resources.crawler import CrawlerResource
from twin_assets.crawling.settings import CrawlSettings
from twin_assets.defs.collection.assets import raw_documents
from twin_assets.defs.partitions import authors_partitions
from twin_assets.defs.resources import registry_placeholders
from twin_assets.paths import PROJECT_ROOT
from twin_assets.sample_data.prepare import prepare_sample
from twin_assets_tests.dagster_processes import CARD_ASSETS

AUTHOR = "maya-kowalski"


@pytest.fixture(scope="module")
def sample_registry(tmp_path_factory, sample_site) -> Path:
    """The bundled registry, pointed at this test's sample site, plus failing links."""
    root = tmp_path_factory.mktemp("collection")
    os.environ["TWIN_SAMPLE_SITE_URL"] = sample_site
    os.environ["TWIN_DATA_DIR"] = str(root / "data")
    prepare_sample(root / "data")
    data = yaml.safe_load((PROJECT_ROOT / "authors.yaml").read_text())
    links = data["authors"][0]["links"]
    links += [
        {"url": f"{sample_site}/no/such/page/", "platform": "web"},
        {"url": f"{sample_site}/linkedin/authwall/", "platform": "linkedin"},
        {"url": "http://10.1.2.3/private/", "platform": "web"},
    ]
    path = root / "authors.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _resources(registry: Path, warehouse) -> dict:
    return {
        "authors": AuthorRegistryResource(path=str(registry), placeholders=registry_placeholders()),
        "crawler": CrawlerResource.from_settings(
            CrawlSettings(
                allow_hosts=["127.0.0.1"],
                allow_local_sources=True,
                page_timeout_s=20,
                min_domain_interval_s=0,
            )
        ),
        "warehouse": warehouse,
    }


def test_raw_documents_crawls_stores_and_is_idempotent(sample_registry, warehouse):
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(authors_partitions.name, [AUTHOR])
        first = dg.materialize(
            [raw_documents],
            resources=_resources(sample_registry, warehouse),
            partition_key=AUTHOR,
            instance=instance,
        )
        assert first.success
        meta = first.asset_materializations_for_node("raw_documents")[0].metadata
        store = warehouse.get_store()
        docs = store.get_documents(AUTHOR)
        platforms = {str(d.platform) for d in docs}
        assert {"medium", "substack", "linkedin", "web", "github"} <= platforms
        assert {str(d.category) for d in docs} == {"articles", "posts", "repositories"}
        assert meta["new"].value == len(docs) and meta["failed"].value == 3
        failures = {f.link.rsplit("/", 2)[-2]: f.kind for f in store.list_failures(AUTHOR)}
        assert failures == {"page": "http_error", "authwall": "login_wall", "private": "refused_address"}
        checks = first.get_asset_check_evaluations()
        assert checks and all(c.passed for c in checks)
        version = first.asset_materializations_for_node("raw_documents")[0].tags["dagster/data_version"]

        second = dg.materialize(
            [raw_documents],
            resources=_resources(sample_registry, warehouse),
            partition_key=AUTHOR,
            instance=instance,
        )
        meta2 = second.asset_materializations_for_node("raw_documents")[0].metadata
        assert (meta2["new"].value, meta2["updated"].value) == (0, 0)
        assert meta2["unchanged"].value == len(docs)
        assert len(store.get_documents(AUTHOR)) == len(docs)
        assert (
            second.asset_materializations_for_node("raw_documents")[0].tags["dagster/data_version"] == version
        )


def test_definitions_load():
    from twin_assets.definitions import defs as load_defs

    defs = load_defs()
    dg.Definitions.validate_loadable(defs)
    assert defs.resolve_asset_graph().get_all_asset_keys() >= {
        dg.AssetKey(k) for k in (*CARD_ASSETS, "base_model")
    }
    assert {j.name for j in defs.jobs} >= {"crawl_author", "twin_pipeline", "purge_author"}


def test_cli_materializes_a_partition(sample_registry, mongo_server, tmp_path, monkeypatch):
    """`dagster asset materialize ... --partition <author>` as a user types it."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text((PROJECT_ROOT / "dagster.yaml").read_text())
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "TWIN_AUTHORS_FILE": str(sample_registry),
        "TWIN_MONGO_URI": mongo_server.uri,
        "TWIN_MONGO_DATABASE": "cli_test",
        "TWIN_CRAWL_ALLOW_HOSTS": "127.0.0.1",
        "TWIN_CRAWL_ALLOW_LOCAL": "1",
        "TWIN_CRAWL_DOMAIN_INTERVAL_S": "0",
    }
    bin_dir = Path(sys.executable).parent
    sync = subprocess.run(
        [str(bin_dir / "twin"), "authors", "sync"], env=env, capture_output=True, text=True, timeout=120
    )
    assert sync.returncode == 0, sync.stderr
    run = subprocess.run(
        [
            str(bin_dir / "dagster"),
            "asset",
            "materialize",
            "-m",
            "twin_assets.definitions",
            "--select",
            "raw_documents",
            "--partition",
            AUTHOR,
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        cwd=PROJECT_ROOT,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    import pymongo

    client = pymongo.MongoClient(mongo_server.uri)
    assert client["cli_test"]["articles"].count_documents({"author_id": AUTHOR}) >= 5
    client.close()
    monkeypatch.setenv("DAGSTER_HOME", str(home))  # dagster.yaml puts storage under $DAGSTER_HOME
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert instance.get_latest_materialization_event(dg.AssetKey("raw_documents")) is not None
