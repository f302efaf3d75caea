"""The HTTP API against a real uvicorn server on 127.0.0.1: the OpenAI client (plain and
streaming), /answer and /search with two authors, auth and limits, metrics, prompt logs, and a
hypothesis fuzz of the request bodies that must never produce a 5xx."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from resources.llm import TextGeneratorResource
from resources.warehouse import WarehouseResource
from twin_assets.domain.documents import utcnow
from twin_assets_tests.serving_api_fixtures import ALICE, BOB, ThreadServer, build_world, settings

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture(scope="module")
def stack(tmp_path_factory, mongo_server):
    from twin_assets.server import build_app
    from twin_assets.serving.app import create_app
    from twin_assets.serving.engine import LocalGenerator
    from twin_assets.serving.keys import KeyRing
    from twin_assets.serving.limits import RateLimiter

    world = build_world(tmp_path_factory.mktemp("serving-api"))
    warehouse = WarehouseResource(uri=mongo_server.uri, database=f"t_{uuid.uuid4().hex[:10]}")
    resources = {
        "artifacts": world.artifacts,
        "embedder": world.embedder,
        "llm": TextGeneratorResource(backend="offline"),
        "warehouse": warehouse,
    }
    generator = LocalGenerator(world.base, max_batch_size=8)
    conf = settings(rate_per_minute=100_000, rate_burst=10_000, max_messages=6, max_body_bytes=8192)
    app, closers = build_app(conf, resources, generator=generator)
    store = warehouse.get_store()
    ring = KeyRing(store)
    keys = {
        "all": ring.create("tests")[0],
        "alice": ring.create("alice only", authors=[ALICE])[0],
        "revoked": ring.create("gone")[0],
    }
    ring.revoke(keys["revoked"])
    server = ThreadServer(app).start()
    # a second app over the same service with a strict rate limit (the 429 path)
    strict = create_app(
        app.state.service,
        conf,
        keyring=KeyRing(store),
        limiter=RateLimiter(1, 2),
        prompt_logger=None,
        start_background=False,
    )
    strict_server = ThreadServer(strict).start(ready_path="/healthz")
    yield {
        "world": world,
        "url": server.url,
        "strict_url": strict_server.url,
        "keys": keys,
        "app": app,
        "store": store,
        "closers": closers,
    }
    strict_server.stop()
    server.stop()
    for close in closers:
        close()


def _h(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _post(stack, path: str, body, key: str | None = "all", **kw) -> httpx.Response:
    headers = _h(stack["keys"][key]) if key else {}
    return httpx.post(stack["url"] + path, json=body, headers=headers, timeout=60, **kw)


def _openai(stack, key: str = "all"):
    from openai import OpenAI

    return OpenAI(base_url=stack["url"] + "/v1", api_key=stack["keys"][key], max_retries=0)


QUESTION = "What do you do when a queue backs up and latency grows?"


def test_openai_client_answers_with_citations_of_the_asked_author_only(stack):
    client = _openai(stack)
    for author in (ALICE, BOB):
        resp = client.chat.completions.create(
            model=author, messages=[{"role": "user", "content": QUESTION}], max_tokens=8
        )
        assert resp.object == "chat.completion"
        assert isinstance(resp.choices[0].message.content, str)
        assert resp.choices[0].finish_reason in ("stop", "length")
        assert resp.usage is not None and resp.usage.prompt_tokens > 0
        extra = resp.model_extra or {}
        assert extra["model_version"] == stack["world"].versions[author]
        assert extra["index_version"] == stack["world"].indexes[author]
        links = [c["link"] for c in extra["citations"]]
        assert links and all(link.startswith(f"https://{author}.") for link in links)


def test_openai_streaming_matches_the_plain_answer(stack):
    client = _openai(stack)
    messages: Any = [{"role": "user", "content": "Tell me about caching."}]
    plain = client.chat.completions.create(model=ALICE, messages=messages, max_tokens=12)
    stream = client.chat.completions.create(
        model=ALICE,
        messages=messages,
        max_tokens=12,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == plain.choices[0].message.content  # greedy: the same tokens either way
    assert chunks[0].choices[0].delta.role == "assistant"
    assert (chunks[0].model_extra or {})["citations"]
    finals = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finals == [plain.choices[0].finish_reason]
    assert chunks[-1].usage is not None and plain.usage is not None
    assert chunks[-1].usage.completion_tokens == plain.usage.completion_tokens


def test_raw_sse_ends_with_done(stack):
    body = {
        "model": BOB,
        "messages": [{"role": "user", "content": "queues?"}],
        "stream": True,
        "max_tokens": 4,
    }
    with httpx.stream(
        "POST", stack["url"] + "/v1/chat/completions", json=body, headers=_h(stack["keys"]["all"])
    ) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        frames = [line for line in r.iter_lines() if line.startswith("data: ")]
    assert frames[-1] == "data: [DONE]"
    assert all(json.loads(f[6:])["object"] == "chat.completion.chunk" for f in frames[:-1])


def test_answer_endpoint_cites_the_author_and_reports_versions_and_timings(stack):
    for author in (ALICE, BOB):
        r = _post(stack, f"/v1/twins/{author}/answer", {"question": QUESTION, "max_tokens": 6, "k": 3})
        assert r.status_code == 200, r.text
        data = r.json()
        assert data["model_version"] == stack["world"].versions[author]
        assert data["index_version"] == stack["world"].indexes[author]
        assert 1 <= len(data["citations"]) <= 3
        assert [c["n"] for c in data["citations"]] == list(range(1, len(data["citations"]) + 1))
        assert all(c["link"].startswith(f"https://{author}.") for c in data["citations"])
        for stage in ("search", "rerank", "generation", "total"):
            assert stage in data["timings_ms"]


def test_sagemaker_ping_and_invocations(stack):
    """SageMaker's two routes: /ping is readiness, /invocations answers as the twin named in
    the body (or the pinned TWIN_SERVE_MODEL), with the same keys, scopes and errors."""
    assert httpx.get(stack["url"] + "/ping").status_code == 200
    version = stack["world"].versions[BOB]
    r = _post(
        stack, "/invocations", {"question": QUESTION, "max_tokens": 4, "k": 2, "model": f"{BOB}@{version}"}
    )
    assert r.status_code == 200, r.text
    data = r.json()
    assert data["model_version"] == version and data["author"] == BOB
    assert data["citations"] and all(c["link"].startswith(f"https://{BOB}.") for c in data["citations"])
    # no twin named and none pinned in this process: a precise 400, not a 500
    r = _post(stack, "/invocations", {"question": QUESTION})
    assert r.status_code == 400 and "TWIN_SERVE_MODEL" in r.json()["error"]["message"]
    # the alice-only key may not ask bob, here either; no key at all is a 401
    assert _post(stack, "/invocations", {"question": QUESTION, "model": BOB}, key="alice").status_code == 403
    assert _post(stack, "/invocations", {"question": QUESTION, "model": BOB}, key=None).status_code == 401
    r = _post(stack, "/invocations", {"question": QUESTION, "model": f"{BOB}@nope", "version": version})
    assert r.status_code == 400


def test_answer_streams_start_deltas_end(stack):
    body = {"question": QUESTION, "max_tokens": 6, "stream": True}
    with httpx.stream(
        "POST", f"{stack['url']}/v1/twins/{ALICE}/answer", json=body, headers=_h(stack["keys"]["all"])
    ) as r:
        assert r.status_code == 200
        events = [line[6:] for line in r.iter_lines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    parsed = [json.loads(e) for e in events[:-1]]
    assert parsed[0]["type"] == "start" and parsed[0]["citations"]
    assert parsed[-1]["type"] == "end"
    deltas = "".join(p["content"] for p in parsed if p["type"] == "delta")
    assert deltas == parsed[-1]["answer"]


def test_search_is_isolated_per_author(stack):
    for author, other in ((ALICE, BOB), (BOB, ALICE)):
        r = _post(
            stack, f"/v1/twins/{author}/search", {"question": "queue depth cache stampede latency", "k": 10}
        )
        assert r.status_code == 200, r.text
        results = r.json()["results"]
        assert results, "overlapping topics: something must be found"
        assert {c["author_id"] for c in results} == {author}
        assert not any(c["link"].startswith(f"https://{other}.") for c in results)
    filtered = _post(
        stack, f"/v1/twins/{ALICE}/search", {"question": "cache", "filters": {"platforms": ["linkedin"]}}
    ).json()["results"]
    assert filtered and {c["platform"] for c in filtered} == {"linkedin"}


def test_models_lists_the_twins_a_key_may_ask(stack):
    ids = {m.id for m in _openai(stack).models.list()}
    assert {ALICE, BOB, f"{ALICE}@{stack['world'].versions[ALICE]}"} <= ids
    alice_only = {m.id for m in _openai(stack, "alice").models.list()}
    assert ALICE in alice_only and BOB not in alice_only


def _error(r: httpx.Response, status: int, code: str | None = None) -> dict:
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"} and err["message"]
    if code:
        assert err["code"] == code, err
    return err


def test_auth_errors(stack):
    chat = {"model": ALICE, "messages": [{"role": "user", "content": "hi"}]}
    _error(_post(stack, "/v1/chat/completions", chat, key=None), 401, "missing_api_key")
    r = httpx.post(
        stack["url"] + "/v1/chat/completions", json=chat, headers=_h("twin_not-a-real-key-000000000000")
    )
    _error(r, 401, "invalid_api_key")
    _error(_post(stack, "/v1/chat/completions", chat, key="revoked"), 401, "invalid_api_key")
    r = httpx.post(stack["url"] + "/v1/chat/completions", json=chat, headers={"Authorization": "Basic abc"})
    _error(r, 401)
    scoped = {**chat, "model": BOB}
    _error(_post(stack, "/v1/chat/completions", scoped, key="alice"), 403, "author_not_allowed")
    _error(_post(stack, f"/v1/twins/{BOB}/answer", {"question": "q"}, key="alice"), 403)
    _error(_post(stack, f"/v1/twins/{BOB}/search", {"question": "q"}, key="alice"), 403)
    assert _post(stack, f"/v1/twins/{ALICE}/search", {"question": "q"}, key="alice").status_code == 200
    # the OpenAI client raises its typed errors
    import openai

    with pytest.raises(openai.PermissionDeniedError):
        _openai(stack, "alice").chat.completions.create(
            model=BOB, messages=[{"role": "user", "content": "x"}]
        )


def test_not_found(stack):
    for model in ("nobody", f"{ALICE}@0000000000000000", "../etc", "@", f"{ALICE}@../x"):
        body = {"model": model, "messages": [{"role": "user", "content": "hi"}]}
        _error(_post(stack, "/v1/chat/completions", body), 404)
    _error(_post(stack, "/v1/twins/nobody/answer", {"question": "q"}), 404, "author_not_found")
    _error(_post(stack, "/v1/twins/nobody/search", {"question": "q"}), 404)
    _error(_post(stack, f"/v1/twins/{ALICE}/answer", {"question": "q", "version": "ffffffffffffffff"}), 404)
    _error(httpx.get(stack["url"] + "/v1/nothing-here"), 404)


def test_limits_and_malformed_bodies(stack):
    url = stack["url"] + "/v1/chat/completions"
    h = {**_h(stack["keys"]["all"]), "Content-Type": "application/json"}
    msg = [{"role": "user", "content": "hi"}]
    # body over the cap: 413, declared or streamed
    _error(
        _post(
            stack,
            "/v1/chat/completions",
            {"model": ALICE, "messages": [{"role": "user", "content": "x" * 9000}]},
        ),
        413,
    )

    def chunks():
        for _ in range(20):
            yield b" " * 1000

    _error(httpx.post(url, content=chunks(), headers=h), 413)
    _error(httpx.post(url, content=b"{not json", headers=h), 400, "invalid_json")
    _error(httpx.post(url, content=b"", headers=h), 400, "invalid_json")
    _error(httpx.post(url, content=b"[1, 2]", headers=h), 400, "invalid_json")
    err = _error(_post(stack, "/v1/chat/completions", {"model": ALICE, "messages": []}), 400)
    assert err["param"] == "messages"
    err = _error(_post(stack, "/v1/chat/completions", {"model": ALICE, "messages": "hi"}), 400)
    assert "messages" in err["message"]
    err = _error(
        _post(
            stack, "/v1/chat/completions", {"model": ALICE, "messages": [{"role": "tool", "content": "x"}]}
        ),
        400,
    )
    assert err["param"].startswith("messages.0.role")
    err = _error(
        _post(stack, "/v1/chat/completions", {"model": ALICE, "messages": msg, "max_tokens": 33}), 400
    )
    assert "max_tokens" in err["message"]
    _error(_post(stack, "/v1/chat/completions", {"model": ALICE, "messages": msg, "n": 2}), 400)
    _error(_post(stack, "/v1/chat/completions", {"model": ALICE, "messages": msg, "temperature": "hot"}), 400)
    _error(_post(stack, "/v1/chat/completions", {"model": ALICE, "messages": msg, "max_token": 5}), 400)
    _error(
        _post(
            stack, "/v1/chat/completions", {"model": ALICE, "messages": msg, "tools": [{"type": "function"}]}
        ),
        400,
    )
    _error(_post(stack, "/v1/chat/completions", {"model": ALICE, "messages": msg * 7}), 400, "max_messages")
    last_assistant = [*msg, {"role": "assistant", "content": "ok"}]
    _error(_post(stack, "/v1/chat/completions", {"model": ALICE, "messages": last_assistant}), 400)
    _error(_post(stack, f"/v1/twins/{ALICE}/answer", {"question": "   "}), 400)
    _error(_post(stack, f"/v1/twins/{ALICE}/answer", {"question": "q", "k": 0}), 400)
    _error(_post(stack, f"/v1/twins/{ALICE}/search", {"question": "q", "filters": {"platform": "x"}}), 400)
    # a prompt longer than the tiny model's 1024-token window (within the body cap)
    long_q = " ".join(f"zq{i}" for i in range(1200))
    _error(
        _post(
            stack,
            "/v1/chat/completions",
            {"model": ALICE, "messages": [{"role": "user", "content": long_q}], "rag": False},
        ),
        400,
        "context_length_exceeded",
    )
    # accepted and ignored: fields OpenAI clients send on their own
    ok = _post(
        stack,
        "/v1/chat/completions",
        {
            "model": ALICE,
            "messages": msg,
            "max_tokens": 2,
            "user": "u1",
            "frequency_penalty": 0,
            "rag": {"k": 2},
        },
    )
    assert ok.status_code == 200, ok.text
    assert len(ok.json()["citations"]) <= 2


def test_rate_limit_answers_429_with_retry_after(stack):
    url = stack["strict_url"] + f"/v1/twins/{ALICE}/search"
    statuses = []
    for _ in range(4):
        r = httpx.post(url, json={"question": "cache"}, headers=_h(stack["keys"]["all"]), timeout=30)
        statuses.append(r.status_code)
    assert statuses[:2] == [200, 200] and statuses[-1] == 429
    assert int(r.headers["Retry-After"]) >= 1
    assert r.json()["error"]["code"] == "rate_limit_exceeded"


def test_health_readiness_and_metrics(stack):
    assert httpx.get(stack["url"] + "/healthz").json() == {"status": "ok"}
    ready = httpx.get(stack["url"] + "/readyz").json()
    assert ready["ready"] and set(ready["authors"]) == {ALICE, BOB}
    _post(stack, f"/v1/twins/{ALICE}/answer", {"question": QUESTION, "max_tokens": 4})
    assert _post(stack, "/v1/chat/completions", {"model": ALICE}, key=None).status_code == 401
    text = httpx.get(stack["url"] + "/metrics").text
    assert 'twin_requests_total{route="/v1/twins/{author}/answer",status="200"}' in text
    assert 'twin_requests_total{route="/v1/chat/completions",status="401"}' in text
    for stage in ("self_query", "expansion", "search", "rerank", "generation", "total"):
        assert f'twin_stage_latency_seconds_count{{stage="{stage}"}}' in text
    assert 'twin_tokens_total{direction="out"}' in text
    assert "twin_generator_batch_size_bucket" in text
    assert 'twin_errors_total{code="404"' in text or "twin_errors_total{" in text


def test_prompt_logs_record_requests_without_keys(stack):
    _post(stack, f"/v1/twins/{BOB}/answer", {"question": "How do you handle tail latency?", "max_tokens": 4})
    _post(stack, f"/v1/twins/{BOB}/answer", {"question": "x"}, key="alice")  # 403, logged too
    for close in stack["closers"][1:]:  # flush the prompt logger (it is closed at teardown again)
        owner = getattr(close, "__self__", None)
        if owner is not None and hasattr(owner, "flush"):
            owner.flush()
    now = utcnow()
    logs = stack["store"].find_prompt_logs(now - timedelta(minutes=10), now + timedelta(minutes=1), BOB)
    ok = [entry for entry in logs if entry.status == 200 and entry.route == "/v1/twins/{author}/answer"]
    assert ok, [(e.route, e.status) for e in logs]
    entry = ok[-1]
    assert entry.model_version == stack["world"].versions[BOB]
    assert entry.index_version == stack["world"].indexes[BOB]
    assert entry.retrieved and entry.key_id and entry.prompt_tokens > 0
    assert {"search", "generation", "total"} <= set(entry.timings_ms)
    assert any(e.status == 403 for e in logs)
    dumped = json.dumps([e.model_dump(mode="json") for e in logs])
    assert not any(key in dumped for key in stack["keys"].values())


_json = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)
_message = st.fixed_dictionaries(
    {
        "role": st.sampled_from(["user", "assistant", "system", "tool", ""]) | _json,
        "content": st.text(max_size=40) | _json,
    }
)
_chat = st.fixed_dictionaries(
    {
        "model": st.sampled_from([ALICE, BOB, "nobody", f"{ALICE}@x", ""]) | _json,
        "messages": st.lists(_message, max_size=3) | _json,
    },
    optional={
        "max_tokens": st.integers(-5, 40) | _json,
        "temperature": st.floats(-1, 3) | _json,
        "top_p": st.floats(-1, 2) | _json,
        "stop": st.text(max_size=3) | st.lists(st.text(max_size=3), max_size=5) | _json,
        "stream": st.booleans() | _json,
        "n": st.integers(0, 3),
        "seed": st.integers(-(2**70), 2**70),
        "rag": st.booleans() | st.fixed_dictionaries({"k": st.integers(-2, 30)}) | _json,
    },
)
_answer = st.fixed_dictionaries(
    {"question": st.text(max_size=60) | _json},
    optional={
        "k": st.integers(-2, 300) | _json,
        "filters": st.fixed_dictionaries(
            {}, optional={"platforms": st.lists(st.sampled_from(["medium", "x"]))}
        )
        | _json,
        "history": st.lists(_message, max_size=2) | _json,
        "max_tokens": st.integers(-1, 40),
        "version": st.text(max_size=20) | _json,
        "stream": st.booleans(),
    },
)


@hsettings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    route=st.sampled_from(["chat", "answer", "search"]),
    author=st.sampled_from([ALICE, BOB, "nobody", "A", "%2e%2e"]),
    chat=_chat,
    answer=_answer,
    raw=st.none() | st.binary(max_size=40),
)
def test_fuzzed_requests_never_get_a_5xx(stack, route, author, chat, answer, raw):
    path = {
        "chat": "/v1/chat/completions",
        "answer": f"/v1/twins/{author}/answer",
        "search": f"/v1/twins/{author}/search",
    }[route]
    body = chat if route == "chat" else answer
    headers = {**_h(stack["keys"]["all"]), "Content-Type": "application/json"}
    content = raw if raw is not None else json.dumps(body, allow_nan=True).encode()
    r = httpx.post(stack["url"] + path, content=content, headers=headers, timeout=60)
    assert r.status_code < 500, (r.status_code, r.text[:300], content[:300])
    if r.status_code >= 400:
        assert r.json()["error"]["message"]
