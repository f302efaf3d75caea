"""End to end: a new adapter version and a new index version swapped in while a request is
streaming (the stream finishes on what it started with; the next request gets the new ones),
and `twin serve start|status|stop` as a real background process answering the OpenAI client."""

from __future__ import annotations

import json
import threading

import httpx
import pytest

from resources.llm import TextGeneratorResource
from twin_assets.training import registry
from twin_assets_tests.serving_api_fixtures import (
    ALICE,
    BOB,
    ThreadServer,
    build_world,
    free_port,
    publish_index,
    register_model,
    settings,
)

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return build_world(tmp_path_factory.mktemp("serving-e2e"))


def test_hot_swap_while_streaming(world):
    from twin_assets.server import build_app
    from twin_assets.serving.engine import LocalGenerator

    resources = {
        "artifacts": world.artifacts,
        "embedder": world.embedder,
        "llm": TextGeneratorResource(backend="offline"),
    }
    generator = LocalGenerator(world.base, max_batch_size=4)
    conf = settings(auth=False, prompt_log_sample_rate=0.0, max_tokens=64, adapter_idle_s=0)
    app, closers = build_app(conf, resources, generator=generator)
    service = app.state.service
    server = ThreadServer(app).start()
    try:
        old_model, old_index = world.versions[ALICE], world.indexes[ALICE]
        body = {"question": "How do you handle a queue that backs up?", "max_tokens": 64, "stream": True}
        events: list[dict] = []
        first_seen = threading.Event()

        def consume() -> None:
            with httpx.stream("POST", f"{server.url}/v1/twins/{ALICE}/answer", json=body, timeout=60) as r:
                assert r.status_code == 200
                for line in r.iter_lines():
                    if line.startswith("data: ") and line != "data: [DONE]":
                        events.append(json.loads(line[6:]))
                        first_seen.set()
                    elif line == "data: [DONE]":
                        events.append({"type": "done"})

        reader = threading.Thread(target=consume)
        reader.start()
        assert first_seen.wait(30), "the stream did not start"
        # while it streams: a new production adapter and a new index version are published...
        new_model = register_model(world.artifacts, world.base, world.root, ALICE, seed=7)
        new_index = publish_index(
            world.artifacts,
            world.embedder,
            ALICE,
            extra=["Backpressure beats buffering when queues back up."],
        )
        assert (new_model, new_index) != (old_model, old_index)
        swapped = service.refresh()  # ...and swapped in (the poller's call)
        assert swapped["model"] == [f"{ALICE}@{new_model}"] and swapped["index"] == [f"{ALICE}@{new_index}"]
        reader.join(60)
        start, end = events[0], [e for e in events if e.get("type") == "end"]
        assert start["model_version"] == old_model and start["index_version"] == old_index
        assert end and end[0]["model_version"] == old_model and end[0]["finish_reason"] in ("stop", "length")
        assert events[-1] == {"type": "done"}
        # the next request is served by the new versions; the old adapter is gone once idle
        r = httpx.post(
            f"{server.url}/v1/twins/{ALICE}/answer",
            json={"question": "backpressure and buffering?", "max_tokens": 4},
            timeout=60,
        )
        assert r.status_code == 200, r.text
        data = r.json()
        assert data["model_version"] == new_model and data["index_version"] == new_index
        assert f"{ALICE}@{old_model}" not in service.loaded_adapters()
        assert f"{ALICE}@{new_model}" in service.loaded_adapters()
        # a pinned older version is still servable by name
        pinned = httpx.post(
            f"{server.url}/v1/chat/completions",
            json={
                "model": f"{ALICE}@{old_model}",
                "messages": [{"role": "user", "content": "hi"}],
                "max_tokens": 2,
            },
            timeout=60,
        )
        assert pinned.status_code == 200 and pinned.json()["model_version"] == old_model
        # Bob was untouched
        assert service.index_version(BOB) == world.indexes[BOB]
        metrics = httpx.get(server.url + "/metrics").text
        assert 'twin_hot_swaps_total{kind="model"} 1.0' in metrics
        assert 'twin_hot_swaps_total{kind="index"} 1.0' in metrics
    finally:
        server.stop()
        for close in closers:
            close()
        registry.set_production(world.artifacts, ALICE, "sft", world.versions[ALICE])


def test_background_process_start_status_stop(world, tmp_path, monkeypatch):
    from openai import OpenAI

    from twin_assets import server

    port = free_port()
    env = {
        "TWIN_DATA_DIR": str(tmp_path / "data"),
        "TWIN_ARTIFACT_DIR": str(world.artifacts.root_dir),
        "TWIN_SERVE_BASE_MODEL": str(world.base),
        "TWIN_SERVE_PORT": str(port),
        "TWIN_SERVE_AUTH": "false",
        "TWIN_SERVE_AUTHORS": f"{ALICE},{BOB}",
        "TWIN_SERVE_PROMPT_LOG_SAMPLE": "0",
        "TWIN_SERVE_MAX_TOKENS": "16",
        "TWIN_SERVE_DEFAULT_MAX_TOKENS": "4",
        "TWIN_SERVE_REFRESH_S": "0",
        "TWIN_SERVE_RAG_CONFIG": '{"expansion": false}',
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    conf = server.settings_from_env()
    assert conf.port == port and conf.auth is False and conf.authors == [ALICE, BOB]
    assert server.status() == {}
    pid = server.start(conf, timeout_s=120)
    try:
        assert server.start(conf) == pid  # already running: the same process
        state = server.status()
        assert state["running"] and state["pid"] == pid and state["ready"]
        client = OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="unused", max_retries=0)
        resp = client.chat.completions.create(model=BOB, messages=[{"role": "user", "content": "queues?"}])
        citations = (resp.model_extra or {})["citations"]
        assert citations and all(c["link"].startswith(f"https://{BOB}.") for c in citations)
    finally:
        assert server.stop() is True
    assert server.status() == {}
    assert server.stop() is False


def test_settings_from_env_rejects_bad_values():
    from pydantic import ValidationError

    from twin_assets.server import settings_from_env

    assert settings_from_env({}).port == 8008
    assert settings_from_env({"TWIN_SERVE_POLLING": "5"}).refresh_interval_s == 5
    assert settings_from_env(
        {
            "TWIN_SERVE_OPENAI_MODELS": "a=b,c=d",
            "TWIN_SERVE_GENERATOR": "openai",
            "TWIN_SERVE_OPENAI_BASE_URL": "http://x",
        }
    ).openai_models == {"a": "b", "c": "d"}
    with pytest.raises(ValidationError):
        settings_from_env({"TWIN_SERVE_PORT": "eighty"})
    with pytest.raises(ValidationError):
        settings_from_env({"TWIN_SERVE_GENERATOR": "openai"})  # no URL
    with pytest.raises(ValueError, match="TWIN_SERVE_RAG_CONFIG"):
        settings_from_env({"TWIN_SERVE_RAG_CONFIG": "[1]"})
