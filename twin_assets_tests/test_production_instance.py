"""The production instance for real: deploy/dagster.yaml against a PostgreSQL server the test
starts itself, with two runs of the real pipeline (raw_documents + cleaned_documents, through
Chromium and the sample site) for two author partitions AT THE SAME TIME.

What is swapped, and only that: the ECS run launcher (no ECS here) is removed, so runs launch
as local processes (Dagster's DefaultRunLauncher), and because that launcher cannot resume a
run on a new worker, run monitoring's `max_resume_run_attempts` goes to 0 (Dagster refuses the
instance otherwise; dead runs are still detected and failed); the S3 compute-log manager gets the local
AWS emulator's endpoint; the Postgres port is the test server's. Storage, concurrency, run
monitoring, retries and retention stay as deployed.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import boto3
import dagster as dg
import pytest
import yaml

from twin_assets.paths import PROJECT_ROOT
from twin_assets.sample_data.prepare import prepare_sample
from twin_assets_tests.postgres import PostgresCluster, postgres_bin_dir

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        postgres_bin_dir() is None, reason="PostgreSQL server not installed (scripts/install.sh)"
    ),
]

DEPLOYED = PROJECT_ROOT / "deploy" / "dagster.yaml"
AUTHORS = ("maya-kowalski", "maya-notes")
BUCKET = "twin-compute-logs"


@pytest.fixture(scope="module")
def postgres():
    cluster = PostgresCluster().start()
    yield cluster
    cluster.stop()


def render_instance(home: Path, postgres: PostgresCluster, s3_endpoint: str) -> dict:
    """$DAGSTER_HOME/dagster.yaml = deploy/dagster.yaml with the swaps in the module docstring."""
    config = yaml.safe_load(DEPLOYED.read_text())
    assert config["run_launcher"]["class"] == "EcsRunLauncher"  # what is being swapped
    del config["run_launcher"]
    assert config["run_monitoring"]["enabled"]
    config["run_monitoring"]["max_resume_run_attempts"] = 0
    config["storage"]["postgres"]["postgres_db"]["port"] = postgres.port
    config["compute_logs"]["config"]["endpoint_url"] = s3_endpoint
    home.mkdir(parents=True, exist_ok=True)
    (home / "dagster.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return config


def _registry(root: Path, site: str) -> Path:
    """The sample author's web links split between two authors (one URL belongs to one author)."""
    links = {
        "maya-kowalski": [
            {"url": f"{site}/medium/@mayakowalski/", "platform": "medium"},
            {"url": f"{site}/substack/archive/", "platform": "substack"},
        ],
        "maya-notes": [
            {"url": f"{site}/blog/", "platform": "web"},
            {"url": f"{site}/linkedin/in/mayakowalski/recent-activity/all/", "platform": "linkedin"},
        ],
    }
    data = {"authors": [{"id": a, "full_name": "Maya Kowalski", "links": links[a]} for a in AUTHORS]}
    path = root / "authors.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_concurrent_runs_on_the_deployed_postgres_instance(
    postgres, moto_url, sample_site, mongo_server, tmp_path, monkeypatch
):
    started = time.monotonic()
    home = tmp_path / "dagster_home"
    deployed = render_instance(home, postgres, moto_url)
    aws = {
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
    }
    boto3.client("s3", endpoint_url=moto_url, **_creds(aws)).create_bucket(Bucket=BUCKET)
    prepare_sample(tmp_path / "data")
    env = {
        **os.environ,
        **aws,
        **postgres.env(),
        "DAGSTER_HOME": str(home),
        "TWIN_S3_BUCKET": BUCKET,
        "TWIN_DATA_DIR": str(tmp_path / "data"),
        "TWIN_AUTHORS_FILE": str(_registry(tmp_path, sample_site)),
        "TWIN_SAMPLE_SITE_URL": sample_site,
        "TWIN_MONGO_URI": mongo_server.uri,
        "TWIN_MONGO_DATABASE": "prod_instance_test",
        "TWIN_CRAWL_ALLOW_HOSTS": "127.0.0.1",
        "TWIN_CRAWL_ALLOW_LOCAL": "1",
        "TWIN_CRAWL_DOMAIN_INTERVAL_S": "0",
    }
    for name, value in env.items():
        if name.startswith(("DAGSTER_", "AWS_", "TWIN_S3")):
            monkeypatch.setenv(name, value)

    with dg.DagsterInstance.get() as instance:
        # the instance really is the deployed one: Postgres storage, S3 logs, the queue's limits
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        assert type(instance.event_log_storage).__name__ == "PostgresEventLogStorage"
        assert type(instance.compute_log_manager).__name__ == "S3ComputeLogManager"
        assert instance.run_monitoring_enabled
        assert instance.run_coordinator is not None
        assert type(instance.run_coordinator).__name__ == "QueuedRunCoordinator"
        assert instance.get_concurrency_config().pool_config.default_pool_limit == 1
        assert deployed["concurrency"]["runs"]["max_concurrent_runs"] >= 2
        instance.add_dynamic_partitions("authors", list(AUTHORS))

    bin_dir = Path(sys.executable).parent
    procs = {
        author: subprocess.Popen(
            [
                str(bin_dir / "dagster"),
                "asset",
                "materialize",
                "-m",
                "twin_assets.definitions",
                "--select",
                "raw_documents,cleaned_documents",
                "--partition",
                author,
            ],
            env=env,
            cwd=PROJECT_ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for author in AUTHORS
    }
    outputs = {author: proc.communicate(timeout=300)[0] for author, proc in procs.items()}
    for author, proc in procs.items():
        assert proc.returncode == 0, f"{author}:\n{outputs[author][-4000:]}"

    with dg.DagsterInstance.get() as instance:
        runs = instance.get_runs()
        assert len(runs) == 2
        assert {r.status for r in runs} == {dg.DagsterRunStatus.SUCCESS}
        assert {r.tags.get("dagster/partition") for r in runs} == set(AUTHORS)
        # the two runs overlapped in time: concurrent writers on one Postgres
        stats = [instance.get_run_stats(r.run_id) for r in runs]
        (a, b) = sorted((s.start_time or 0, s.end_time or 0) for s in stats)
        assert b[0] < a[1], f"runs did not overlap: {stats}"
        for key in ("raw_documents", "cleaned_documents"):
            for author in AUTHORS:
                event = instance.get_latest_materialization_event(dg.AssetKey(key))
                assert event is not None
                record = instance.fetch_materializations(
                    dg.AssetRecordsFilter(asset_key=dg.AssetKey(key), asset_partitions=[author]), limit=1
                ).records
                assert record, f"no {key} materialization for {author}"

    # ... and those records are rows in the server's tables, not in some local SQLite file
    import psycopg2

    with psycopg2.connect(postgres.url) as conn, conn.cursor() as cur:
        cur.execute("SELECT status, count(*) FROM runs GROUP BY status")
        assert dict(cur.fetchall()) == {"SUCCESS": 2}
        cur.execute(
            "SELECT asset_key, partition, count(*) FROM event_logs "
            "WHERE dagster_event_type = 'ASSET_MATERIALIZATION' GROUP BY asset_key, partition"
        )
        rows = {(k, p) for k, p, _ in cur.fetchall()}
    assert rows == {(f'["{k}"]', a) for k in ("raw_documents", "cleaned_documents") for a in AUTHORS}
    assert not list(home.glob("**/*.db")), "a SQLite storage was created next to the Postgres one"

    # the step logs went to the (emulated) S3 bucket, as deployed
    listed = boto3.client("s3", endpoint_url=moto_url, **_creds(aws)).list_objects_v2(
        Bucket=BUCKET, Prefix="dagster-compute-logs/"
    )
    assert listed.get("KeyCount", 0) > 0
    print(f"two concurrent runs on Postgres in {time.monotonic() - started:.1f}s")


def _creds(aws: dict[str, str]) -> dict[str, str]:
    return {
        "aws_access_key_id": aws["AWS_ACCESS_KEY_ID"],
        "aws_secret_access_key": aws["AWS_SECRET_ACCESS_KEY"],
        "region_name": aws["AWS_REGION"],
    }
