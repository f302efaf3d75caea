"""Shared fixtures: a real MongoDB wire-protocol server and the sample site over HTTP.

Servers are started by the tests themselves on 127.0.0.1 and stopped by their PID.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from pathlib import Path

import httpx
import pytest
from dagster_aws.s3 import S3Resource

from resources.artifacts import ArtifactStoreResource
from resources.embedded_mongo import EmbeddedMongo
from resources.warehouse import WarehouseResource

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def mongo_server(tmp_path_factory) -> EmbeddedMongo:
    server = EmbeddedMongo(data_dir=tmp_path_factory.mktemp("mongo"), port=free_port())
    server.start()
    yield server
    server.stop()


@pytest.fixture
def warehouse(mongo_server) -> WarehouseResource:
    """A warehouse on the shared server with a database of its own (tests stay independent)."""
    return WarehouseResource(uri=mongo_server.uri, database=f"t_{uuid.uuid4().hex[:10]}")


@pytest.fixture(scope="session")
def sample_site():
    """The bundled sample site served on 127.0.0.1; yields its base URL."""
    from twin_assets.sample_data.server import SampleSite

    site = SampleSite(port=free_port())
    site.start()
    yield site.base_url
    site.stop()


@pytest.fixture(scope="module")
def browser():
    """Debian's Chromium through Playwright, one per test module (launch_browser's flags,
    including the no-resolver backstop), closed with its Playwright driver."""
    from twin_assets.crawling.fetch import close_browser, launch_browser
    from twin_assets.crawling.settings import CrawlSettings

    b = launch_browser(CrawlSettings())
    yield b
    close_browser(b)


@pytest.fixture
def tmp_data_dir(tmp_path: Path, monkeypatch) -> Path:
    monkeypatch.setenv("TWIN_DATA_DIR", str(tmp_path / "data"))
    return tmp_path / "data"


@pytest.fixture(scope="session")
def moto_url():
    """A moto AWS emulator (S3, SageMaker) on 127.0.0.1, stopped by its process group."""
    exe = shutil.which("moto_server") or os.path.join(os.path.dirname(os.sys.executable), "moto_server")
    port = free_port()
    env = {**os.environ, "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test"}
    proc = subprocess.Popen(
        [exe, "-H", "127.0.0.1", "-p", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            httpx.get(url + "/moto-api/", timeout=0.5)
            break
        except httpx.HTTPError:
            time.sleep(0.1)
    yield url
    os.killpg(proc.pid, signal.SIGTERM)
    proc.wait(timeout=10)


@pytest.fixture(autouse=True)
def _no_leaked_dagster_instance_context(request):
    """A DagsterInstance entered with `with` publishes its defs-state storage in a context
    variable until it exits; an instance whose exit never ran to the end (its dispose raised)
    leaves it behind, and every later definitions load in this process then fails with
    "Attempted to resolve undefined DagsterInstance weakref". Each test starts clean, and the
    test that leaked is named in a warning."""
    import warnings

    from dagster._core.storage.defs_state import base

    base._current_storage.set(None)  # no test inherits one (a leak may predate this fixture)
    yield
    if base.DefsStateStorage.get() is not None:
        warnings.warn(f"{request.node.nodeid} left a DagsterInstance's state storage set", stacklevel=1)
        base._current_storage.set(None)


def s3_artifact_store(moto_url: str, root: Path, bucket: str) -> ArtifactStoreResource:
    """An artifact store on the moto S3 server (`moto_url`), mirrored under `root`."""
    return ArtifactStoreResource(
        root_dir=str(root),
        s3_bucket=bucket,
        s3_prefix="llm-twin",
        s3=S3Resource(
            endpoint_url=moto_url,
            region_name="us-east-1",
            aws_access_key_id="test",
            aws_secret_access_key="test",
        ),
    )
