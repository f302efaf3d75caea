"""The continuous loop under the real daemon, with no manual step: `dagster dev` (webserver,
daemon, the registry sensor and the automation sensor as the code defines them) on a temporary
DAGSTER_HOME with the project's dagster.yaml (queued runs, pools, run monitoring).

1. A new author is added to the registry file. Nothing else is done: the registry sensor adds the
   partition and crawls, and declarative automation carries the author through features,
   datasets, SFT, DPO, the evaluation and its deploy gate, and `deployed_endpoint`, which starts
   the local `twin serve` process by PID. The endpoint answers the author's question over HTTP
   with citations from the author's own documents.
2. One new document is added (a new link in the registry, as a user adds one): it is crawled,
   embedded and retrievable from the running endpoint; the models retrain if and only if a
   dataset version changed.

The smallest honest set-up: a tiny Llama built from a config with a tokenizer trained locally
(TWIN_BASE_MODEL) and a few SFT and DPO steps; the LLM that writes instructions, rejected answers
and judges is a local OpenAI-compatible test server over real HTTP (TWIN_LLM_BASE_URL), as a
deployment configures a real one (the random-weights base model writes nothing a preference pair
can use). Every other setting is the code's default.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import dagster as dg
import httpx
import pytest
import yaml

from twin_assets.paths import PROJECT_ROOT
from twin_assets_tests.conftest import free_port
from twin_assets_tests.dagster_processes import CARD_ASSETS, dagster_home, stop_group
from twin_assets_tests.fake_openai_server import FakeOpenAIServer
from twin_assets_tests.training_fixtures import POSTS

pytestmark = pytest.mark.slow

AUTHOR = "ines-okafor"
LINKS = [  # the sample site's listings (11 articles and posts): enough rows for both datasets
    {"url": "/medium/@mayakowalski/", "platform": "medium"},
    {"url": "/substack/archive/", "platform": "substack"},
    {"url": "/linkedin/in/mayakowalski/recent-activity/all/", "platform": "linkedin"},
    {"url": "/blog/", "platform": "web"},
]
NEW_DOCUMENT = "/notes/product-quantization-on-a-budget/"  # on the site, linked from nowhere
NEW_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Product Quantization on a Budget</title>
<meta name="author" content="Ines Okafor"></head>
<body><article><h1>Product Quantization on a Budget</h1>
<p>Our vector index outgrew the one machine we could afford, so I compressed it. Product
quantization splits every embedding into eight sub-vectors and replaces each with the id of
its nearest centroid: 384 floats become 8 bytes, and the whole index fits in memory again.</p>
<p>The cost is recall. On our golden set, recall@10 fell from 0.91 to 0.86 with plain product
quantization. Re-scoring the top 100 candidates with the full-precision vectors, kept on disk,
brought it back to 0.90 for 4 ms of extra latency.</p>
<p>Train the codebooks on a sample of real queries' neighbours, not on random documents, and
re-train them when the embedding model changes. A stale codebook is a silent recall bug.</p>
</article></body></html>
"""
ACTIVE = (
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
    dg.DagsterRunStatus.CANCELING,
)
FIRST_DEPLOY_TIMEOUT_S = 1500
AUTOMATION_INTERVAL_S = 8  # TWIN_AUTOMATION_INTERVAL_S (default 30): each stage waits one tick
SETTLE_S = 4 * AUTOMATION_INTERVAL_S  # no run queued or running for this long: nothing more is coming


class Loop:
    """The daemon's world as the test sees it: the instance, the registry file, the endpoint."""

    def __init__(self, root: Path, home: Path, env: dict[str, str], site: str, log: Path):
        self.root, self.home, self.env, self.site, self.log = root, home, env, site, log
        self.instance = dg.DagsterInstance.from_config(str(home))
        self.registry = Path(env["TWIN_AUTHORS_FILE"])
        self.url = f"http://127.0.0.1:{env['TWIN_SERVE_PORT']}"

    def register(self, links: list[dict[str, str]]) -> None:
        entry = {
            "id": AUTHOR,
            "full_name": "Ines Okafor",
            "links": [{**link, "url": self.site + link["url"]} for link in links],
        }
        tmp = self.registry.with_suffix(".tmp")
        tmp.write_text(yaml.safe_dump({"authors": [entry]}))
        tmp.replace(self.registry)  # one atomic edit, as an editor's save

    def materializations(self, asset: str) -> list[dg.EventLogRecord]:
        result = self.instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=dg.AssetKey(asset), asset_partitions=[AUTHOR]), limit=100
        )
        return list(result.records)

    def trainings(self, asset: str) -> int:
        """Materializations that trained (a request on unchanged inputs reuses the registered
        version and says `retrained: False`)."""
        return sum(
            1
            for r in self.materializations(asset)
            if r.asset_materialization is not None
            and r.asset_materialization.metadata.get("retrained", dg.MetadataValue.bool(True)).value is True
        )

    def data_version(self, asset: str) -> str | None:
        records = self.materializations(asset)
        if not records:
            return None
        mat = records[0].asset_materialization
        assert mat is not None
        return mat.tags.get("dagster/data_version")

    def document_links(self) -> set[str]:
        """The links of the author's crawled documents, as the warehouse holds them."""
        from pymongo import MongoClient

        from twin_assets.domain.documents import Category

        with MongoClient(self.env["TWIN_MONGO_URI"]) as client:
            db = client[self.env["TWIN_MONGO_DATABASE"]]
            return {
                row["link"]
                for category in Category
                for row in db[category.value].find({"author_id": AUTHOR}, {"link": 1})
            }

    def failures(self) -> list[str]:
        """Every failed run, with its failed steps' messages (the test fails on the first one)."""
        found = []
        for run in self.instance.get_runs(dg.RunsFilter(statuses=[dg.DagsterRunStatus.FAILURE])):
            messages = [
                f"{e.step_key}: {e.dagster_event.event_specific_data.error.message.strip()}"  # type: ignore[union-attr]
                for e in self.instance.all_logs(run.run_id)
                if e.dagster_event is not None
                and e.dagster_event.event_type == dg.DagsterEventType.STEP_FAILURE
                and getattr(e.dagster_event.event_specific_data, "error", None) is not None
            ]
            found.append(
                f"run {run.run_id[:8]} ({run.job_name}, {run.tags.get('dagster/partition')}): {messages}"
            )
        return found

    def active_runs(self) -> int:
        return len(self.instance.get_runs(dg.RunsFilter(statuses=list(ACTIVE))))

    def wait(self, what: str, done, timeout_s: float, poll_s: float = 3.0) -> Any:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            failed = self.failures()
            assert not failed, f"while waiting for {what}: {failed}\n{self.tail()}"
            value = done()
            if value:
                return value
            time.sleep(poll_s)
        pytest.fail(f"timed out after {timeout_s:.0f} s waiting for {what}\n{self.runs()}\n{self.tail()}")

    def settle(self, timeout_s: float = 900) -> None:
        """Until no run is queued or running for SETTLE_S: the automation has nothing left."""
        quiet_since = [time.monotonic()]

        def quiet() -> bool:
            if self.active_runs():
                quiet_since[0] = time.monotonic()
            return time.monotonic() - quiet_since[0] >= SETTLE_S

        self.wait("the automation to settle", quiet, timeout_s)

    def runs(self) -> str:
        return "\n".join(
            f"{r.run_id[:8]} {r.status.value} {r.job_name} {sorted(str(k.to_user_string()) for k in (r.asset_selection or []))}"
            for r in self.instance.get_runs(limit=50)
        )

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-4000:] if self.log.exists() else ""

    def twin(self, *args: str) -> str:
        out = subprocess.run(
            [sys.executable, "-m", "twin_assets.cli", *args],
            cwd=PROJECT_ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert out.returncode == 0, out.stderr
        return out.stdout.strip()


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """A private copy of the sample site with one more page, reachable only by its own URL."""
    import shutil

    from twin_assets.sample_data.server import SITE_DIR, SampleSite

    root = tmp_path_factory.mktemp("daemon-site") / "site"
    shutil.copytree(SITE_DIR, root)
    page = root / NEW_DOCUMENT.strip("/") / "index.html"
    page.parent.mkdir(parents=True)
    page.write_text(NEW_PAGE)
    server = SampleSite(port=free_port(), root=root)
    server.start()
    yield server.base_url
    server.stop()


@pytest.fixture(scope="module")
def llm():
    server = FakeOpenAIServer().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def loop(tmp_path_factory, site, llm, mongo_server):
    from twin_assets.training.base_model import build_tiny_llama

    root = tmp_path_factory.mktemp("daemon")
    home = dagster_home(root)
    registry = root / "authors.yaml"
    registry.write_text(yaml.safe_dump({"authors": []}))
    base = build_tiny_llama(root / "tiny-llama", POSTS * 4, context_window=4096)
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("TWIN_", "DAGSTER_"))}
    env = {
        **clean,
        "DAGSTER_HOME": str(home),
        "TWIN_DATA_DIR": str(root / "data"),
        "TWIN_AUTHORS_FILE": str(registry),
        "TWIN_MONGO_URI": mongo_server.uri,
        "TWIN_MONGO_DATABASE": "daemon_e2e",
        "TWIN_CRAWL_ALLOW_HOSTS": "127.0.0.1",
        "TWIN_CRAWL_DOMAIN_INTERVAL_S": "0",
        "TWIN_BASE_MODEL": str(base),
        "TWIN_LLM_BASE_URL": llm.base_url,
        "TWIN_LLM_MODEL": "fake-llm",
        "TWIN_LLM_API_KEY": "test-key",
        "TWIN_AUTOMATION_INTERVAL_S": str(AUTOMATION_INTERVAL_S),
        "TWIN_SFT_MAX_STEPS": "12",
        "TWIN_SFT_MAX_LENGTH": "512",
        "TWIN_DPO_MAX_STEPS": "3",
        "TWIN_DPO_MAX_LENGTH": "512",
        "TWIN_WANDB_ENABLED": "false",
        "TWIN_SERVE_PORT": str(free_port()),
        "TWIN_SERVE_THREADS": "1",
        "WANDB_MODE": "offline",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    log_path = root / "dagster-dev.log"
    # the instance's SQLite storage is created here, before `dagster dev` starts: processes that
    # create it at the same moment can stamp its schema twice and break every later open
    world = Loop(root, home, env, site, log_path)
    log = open(log_path, "w")  # noqa: SIM115
    proc = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "dagster"),
            "dev",
            "-m",
            "twin_assets.definitions",
            "-h",
            "127.0.0.1",
            "-p",
            str(free_port()),
        ],
        cwd=PROJECT_ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        yield world
    finally:
        stop_group(proc, timeout_s=60)
        subprocess.run(
            [sys.executable, "-m", "twin_assets.cli", "serve", "stop"], cwd=PROJECT_ROOT, env=env, check=False
        )
        world.instance.dispose()
        log.close()


def _ask(loop: Loop, key: str, route: str, body: dict) -> dict:
    response = httpx.post(
        f"{loop.url}/v1/twins/{AUTHOR}/{route}",
        json=body,
        headers={"Authorization": f"Bearer {key}"},
        timeout=180,
    )
    assert response.status_code == 200, response.text
    return response.json()


def test_a_registered_author_becomes_a_live_twin_and_new_documents_flow_in(loop):
    # 1. a new author in the registry, and nothing else
    loop.register(LINKS)
    loop.wait(
        "the author's deployed endpoint",
        lambda: loop.materializations("deployed_endpoint"),
        FIRST_DEPLOY_TIMEOUT_S,
    )
    for asset in CARD_ASSETS:
        assert loop.materializations(asset), f"{asset} was never materialized\n{loop.runs()}"
    automatic = {"dagster/sensor_name", "dagster/from_automation_condition", "dagster/parent_run_id"}
    by_hand = [r.run_id for r in loop.instance.get_runs() if not automatic & set(r.tags)]
    assert not by_hand, f"every run comes from a sensor, automation or a retry of one\n{loop.runs()}"

    key = loop.twin("keys", "create", "e2e", "--author", AUTHOR)
    answer = _ask(
        loop, key, "answer", {"question": "Why are small language models boring?", "max_tokens": 24}
    )
    own = loop.document_links()
    assert len(own) >= 10, own
    assert answer["citations"], answer
    for citation in answer["citations"]:
        assert citation["link"] in own, citation
    assert answer["model_version"]

    # 2. one new document for the author
    loop.settle()
    sft_before = loop.trainings("sft_model")
    dpo_before = loop.trainings("dpo_model")
    datasets_before = {k: loop.data_version(k) for k in ("instruction_dataset", "preference_dataset")}
    raw_before = len(loop.materializations("raw_documents"))
    loop.register([*LINKS, {"url": NEW_DOCUMENT, "platform": "web"}])
    new_link = loop.site + NEW_DOCUMENT

    def retrievable() -> bool:
        hits = _ask(loop, key, "search", {"question": "How did product quantization change recall?", "k": 5})
        return any(h["link"] == new_link for h in hits["results"])

    loop.wait(
        "the new document to be crawled",
        lambda: len(loop.materializations("raw_documents")) > raw_before,
        600,
    )
    loop.wait("the new document to be retrievable from the endpoint", retrievable, 900, poll_s=5)
    loop.settle()
    datasets_after = {k: loop.data_version(k) for k in datasets_before}
    retrained = loop.trainings("sft_model") > sft_before
    if datasets_after["instruction_dataset"] != datasets_before["instruction_dataset"]:
        assert retrained, f"a new instruction dataset version did not retrain SFT\n{loop.runs()}"
    else:
        assert not retrained, f"SFT retrained on an unchanged dataset version\n{loop.runs()}"
    changed = datasets_after != datasets_before
    assert (loop.trainings("dpo_model") > dpo_before) == changed, loop.runs()
