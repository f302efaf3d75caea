"""The Dagster UI in a real browser (Playwright + Debian's Chromium): every asset of the card is
on the lineage graph, and one author's raw_documents is materialized by clicking through the UI
(asset page -> Materialize -> pick the partition -> Launch 1 run) until the run page says Success.

The webserver runs alone on a temporary DAGSTER_HOME with the local dagster.yaml, its run queue
swapped for Dagster's immediate coordinator: a daemon would also start the registry sensor and
the automation sensor, which request the whole training graph (that is the daemon end-to-end
test's job); here the launch goes straight from the UI to a run worker process.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import httpx
import pytest
import yaml

from twin_assets.paths import PROJECT_ROOT
from twin_assets_tests.conftest import free_port
from twin_assets_tests.dagster_processes import CARD_ASSETS, dagster_home, stop_group

pytestmark = pytest.mark.slow

AUTHOR = "maya-kowalski"
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--no-first-run",
]


def _card_assets(env: dict[str, str]) -> dict[str, str]:
    """asset name -> group, from the definitions themselves (so new assets are checked too)."""
    from twin_assets.definitions import defs as load_defs

    old = dict(os.environ)
    os.environ.update(env)
    try:
        # a live instance in scope: loading definitions reads its defs-state storage
        with dg.instance_for_test():
            specs = load_defs().resolve_all_asset_specs()
    finally:
        os.environ.clear()
        os.environ.update(old)
    return {s.key.to_user_string(): s.group_name or "default" for s in specs}


@pytest.fixture(scope="module")
def webserver(tmp_path_factory, sample_site, mongo_server):
    root = tmp_path_factory.mktemp("ui")

    def launch_directly(config: dict) -> None:
        config.setdefault("concurrency", {}).pop("runs", None)  # run limits belong to the queue
        config["run_coordinator"] = {
            "module": "dagster.core.run_coordinator",
            "class": "DefaultRunCoordinator",
        }

    home = dagster_home(root, launch_directly)
    registry = root / "authors.yaml"
    links = [{"url": f"{sample_site}/blog/", "platform": "web"}]
    registry.write_text(
        yaml.safe_dump({"authors": [{"id": AUTHOR, "full_name": "Maya Kowalski", "links": links}]})
    )
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "TWIN_DATA_DIR": str(root / "data"),
        "TWIN_AUTHORS_FILE": str(registry),
        "TWIN_MONGO_URI": mongo_server.uri,
        "TWIN_MONGO_DATABASE": "ui_test",
        "TWIN_CRAWL_ALLOW_HOSTS": "127.0.0.1",
        "TWIN_CRAWL_DOMAIN_INTERVAL_S": "0",
    }
    with dg.DagsterInstance.from_config(str(home)) as instance:
        instance.add_dynamic_partitions("authors", [AUTHOR])
    port = free_port()
    log = open(root / "webserver.log", "w")  # noqa: SIM115
    proc = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "dagster-webserver"),
            "-m",
            "twin_assets.definitions",
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
        ],
        cwd=PROJECT_ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            assert proc.poll() is None, (root / "webserver.log").read_text()[-3000:]
            try:
                if httpx.get(f"{url}/server_info", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        else:
            pytest.fail("webserver did not start: " + (root / "webserver.log").read_text()[-3000:])
        yield url, env, home
    finally:
        stop_group(proc)
        log.close()


@pytest.fixture(scope="module")
def page(webserver):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1600, "height": 1000})
        page.set_default_timeout(60_000)
        yield page
        browser.close()


def _dismiss_welcome(page) -> None:
    """The first visit shows a 'Join the Dagster community' dialog over everything."""
    skip = page.get_by_role("button", name="Skip")
    try:
        skip.click(timeout=5_000)
    except Exception:  # not shown: already dismissed
        pass


def test_asset_graph_shows_every_asset_of_the_card(webserver, page):
    url, env, _ = webserver
    assets = _card_assets(env)
    assert set(CARD_ASSETS) <= set(assets)
    for group in sorted(set(assets.values())):
        page.goto(f"{url}/locations/twin_assets.definitions/asset-groups/{group}")
        _dismiss_welcome(page)
        for name in (a for a, g in assets.items() if g == group):
            # each asset's node on the group's lineage graph
            page.get_by_text(name, exact=True).filter(visible=True).first.wait_for(state="visible")


def test_materialize_one_partition_from_the_ui(webserver, page):
    url, _, home = webserver
    page.goto(f"{url}/assets/raw_documents")
    _dismiss_welcome(page)
    page.get_by_role("button", name="Materialize").first.click()
    dialog = page.get_by_role("dialog").filter(has_text="Launch runs to materialize raw_documents")
    dialog.wait_for()
    dialog.get_by_text("Select a partition or create one").click()
    page.keyboard.type(AUTHOR)
    page.locator("label,li,[role=option],[role=menuitem]").filter(has_text=AUTHOR).last.click()
    page.keyboard.press("Escape")
    dialog.get_by_role("button", name="Launch 1 run").click()

    # the run the UI launched, opened from the Runs page
    deadline = time.monotonic() + 60
    run_id = None
    while run_id is None and time.monotonic() < deadline:
        with dg.DagsterInstance.from_config(str(home)) as instance:
            runs = instance.get_runs()
            run_id = runs[0].run_id if runs else None
        time.sleep(0.5)
    assert run_id, "the UI launched no run"
    page.goto(f"{url}/runs/{run_id}")
    page.get_by_text("Success", exact=True).first.wait_for(state="visible", timeout=150_000)
    with dg.DagsterInstance.from_config(str(home)) as instance:
        run = instance.get_run_by_id(run_id)
        assert run is not None and run.status == dg.DagsterRunStatus.SUCCESS
        assert run.tags.get("dagster/partition") == AUTHOR
