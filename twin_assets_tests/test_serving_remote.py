"""The OpenAI-compatible generator against a fake OpenAI-compatible server on 127.0.0.1 that
streams server-sent events like vLLM does (role chunk, content chunks, finish chunk, usage)."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from pathlib import Path

import pytest

from twin_assets.serving.remote import OpenAIGenerator
from twin_assets.serving.types import GenerationParams

PIECES = [
    "Queues ",
    "back ",
    "up ",
    "when ",
    "retries ",
    "pile ",
    "café ",
    "🙂 ",
    "then ",
    "latency ",
    "hides.",
]


class FakeServer:
    def __init__(self):
        self.requests: list[dict] = []
        self.disconnected: list[str] = []

    def app(self):
        from starlette.applications import Starlette
        from starlette.requests import Request
        from starlette.responses import JSONResponse, StreamingResponse
        from starlette.routing import Route

        async def chat(request: Request):
            if request.headers.get("authorization") != "Bearer sekret":
                return JSONResponse({"error": {"message": "bad key", "type": "auth"}}, status_code=401)
            body = await request.json()
            self.requests.append(body)
            model = body["model"]
            if model == "broken":
                return JSONResponse(
                    {"error": {"message": "model exploded", "type": "server_error"}}, status_code=500
                )
            delay = 0.25 if model == "slow" else 0.0
            n = min(len(PIECES), int(body.get("max_tokens") or len(PIECES)))
            created = int(time.time())

            def chunk(delta: dict, finish: str | None = None, usage: dict | None = None) -> str:
                payload = {
                    "id": "c1",
                    "object": "chat.completion.chunk",
                    "created": created,
                    "model": model,
                    "choices": [] if usage else [{"index": 0, "delta": delta, "finish_reason": finish}],
                }
                if usage:
                    payload["usage"] = usage
                return f"data: {json.dumps(payload)}\n\n"

            async def events():
                try:
                    yield chunk({"role": "assistant", "content": ""})
                    for piece in PIECES[:n]:
                        if delay:
                            await asyncio.sleep(delay)
                        if model == "midstream" and piece == "when ":
                            yield 'data: {"error": {"message": "worker died"}}\n\n'
                            return
                        yield chunk({"content": piece})
                    yield chunk({}, "length" if n < len(PIECES) else "stop")
                    if (body.get("stream_options") or {}).get("include_usage"):
                        yield chunk(
                            {}, usage={"prompt_tokens": 42, "completion_tokens": n, "total_tokens": 42 + n}
                        )
                    yield "data: [DONE]\n\n"
                except BaseException:
                    self.disconnected.append(model)
                    raise

            return StreamingResponse(events(), media_type="text/event-stream")

        return Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"])])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server():
    import uvicorn

    fake = FakeServer()
    port = _free_port()
    config = uvicorn.Config(fake.app(), host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    uv = uvicorn.Server(config)
    thread = threading.Thread(target=uv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not uv.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert uv.started
    fake.url = f"http://127.0.0.1:{port}/v1"  # type: ignore[attr-defined]
    yield fake
    uv.should_exit = True
    thread.join(10)


@pytest.fixture
def gen(server):
    generator = OpenAIGenerator(
        server.url,
        api_key="sekret",
        model_map={"bob@2": "bob-lora", "__base__": "base-model"},
        context_window=512,
    )
    generator.load_adapter("alice@1", Path("/adapters/alice/1"))
    yield generator
    generator.close()


def _messages(text: str = "Why do queues back up?") -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


async def _collect(handle):
    deltas = [d async for d in handle]
    return deltas, await handle.result()


def test_streams_deltas_that_make_the_result(gen, server):
    params = GenerationParams(max_tokens=50, temperature=0.7, top_p=0.9, seed=3)
    deltas, out = asyncio.run(_collect(gen.submit("alice@1", _messages(), params)))
    assert out.text == "".join(PIECES) == "".join(deltas)
    assert len(deltas) > 3
    assert (out.finish_reason, out.prompt_tokens, out.completion_tokens, out.model) == (
        "stop",
        42,
        11,
        "alice@1",
    )
    sent = server.requests[-1]
    assert sent["model"] == "alice@1" and sent["stream"] is True
    assert (sent["max_tokens"], sent["temperature"], sent["top_p"], sent["seed"]) == (50, 0.7, 0.9, 3)


def test_model_mapping_length_and_base(gen, server):
    out = gen.submit("bob@2", _messages(), GenerationParams(max_tokens=3)).wait(10)
    assert server.requests[-1]["model"] == "bob-lora"
    assert (out.text, out.finish_reason, out.completion_tokens) == ("Queues back up ", "length", 3)
    gen.submit(None, _messages(), GenerationParams(max_tokens=2)).wait(10)
    assert server.requests[-1]["model"] == "base-model"
    assert gen.resolve_model("alice@1") == "alice@1"
    with pytest.raises(ValueError, match="unknown adapter"):
        gen.submit("carol@1", _messages(), GenerationParams())
    gen.unload_adapter("alice@1")
    assert gen.adapters() == []
    with pytest.raises(ValueError, match="unknown adapter"):
        gen.submit("alice@1", _messages(), GenerationParams())


def test_stop_strings_are_cut_client_side_and_never_emitted(gen, server):
    # the fake server ignores `stop`, as some servers do: the client still enforces it
    deltas, out = asyncio.run(
        _collect(gen.submit("alice@1", _messages(), GenerationParams(stop=["pile c", "ries p"])))
    )
    assert server.requests[-1]["stop"] == ["pile c", "ries p"]
    assert out.finish_reason == "stop"
    assert out.text == "Queues back up when ret" == "".join(deltas)


def test_server_errors_end_the_handle_never_raise(gen, server):
    out = gen.submit(None, _messages(), GenerationParams()).wait(10)
    assert out.finish_reason == "stop"
    gen.model_map["__base__"] = "broken"
    out = gen.submit(None, _messages(), GenerationParams()).wait(10)
    assert (
        out.finish_reason == "error" and "500" in (out.error or "") and "model exploded" in (out.error or "")
    )
    gen.model_map["__base__"] = "midstream"
    deltas, out = asyncio.run(_collect(gen.submit(None, _messages(), GenerationParams())))
    assert out.finish_reason == "error" and "worker died" in (out.error or "")
    assert out.text == "Queues back up " == "".join(deltas)

    unauthorised = OpenAIGenerator(server.url, api_key="wrong", default_model="m")
    try:
        out = unauthorised.submit(None, _messages(), GenerationParams()).wait(10)
        assert out.finish_reason == "error" and "401" in (out.error or "")
    finally:
        unauthorised.close()

    nowhere = OpenAIGenerator(f"http://127.0.0.1:{_free_port()}/v1", default_model="m")
    try:
        out = nowhere.submit(None, _messages(), GenerationParams()).wait(10)
        assert out.finish_reason == "error" and "Connection" in (out.error or "")
    finally:
        nowhere.close()


def test_timeout_and_cancel_keep_the_text_so_far(gen, server):
    gen.model_map["__base__"] = "slow"

    async def cancel_after_two():
        handle = gen.submit(None, _messages(), GenerationParams())
        got = []
        async for delta in handle:
            got.append(delta)
            if len(got) == 2:
                handle.cancel()
        return got, await handle.result()

    got, out = asyncio.run(cancel_after_two())
    assert out.finish_reason == "cancelled"
    assert out.text == "".join(got) and out.text.startswith("Queues back ")
    deadline = time.monotonic() + 5
    while "slow" not in server.disconnected and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "slow" in server.disconnected  # the HTTP stream was closed: the server stops generating

    started = time.monotonic()
    deltas, out = asyncio.run(_collect(gen.submit(None, _messages(), GenerationParams(timeout_s=0.9))))
    assert time.monotonic() - started < 3
    assert out.finish_reason == "timeout"
    assert out.text == "".join(deltas) and 0 < len(out.text) < len("".join(PIECES))


def test_context_window_and_prompt_rendering(gen):
    with pytest.raises(ValueError, match="context window of 512"):
        gen.submit("alice@1", _messages("word " * 400), GenerationParams(max_tokens=100))
    assert gen.count_tokens("abcd" * 10) == 10  # approximate: UTF-8 bytes / 4
    rendered = gen.render_prompt([{"role": "system", "content": "Be brief."}, *_messages("Hi")])
    assert "Be brief." in rendered and "Hi" in rendered and rendered.endswith("<|assistant|>\n")


def test_concurrent_requests_from_threads(gen):
    results: list = []

    def worker():
        results.append(gen.submit("alice@1", _messages(), GenerationParams()).wait(20))

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(results) == 8 and all(r.text == "".join(PIECES) for r in results)
    stats = gen.stats()
    assert stats.finished >= 8 and stats.running == 0
