"""A small OpenAI-compatible chat-completions server for tests: real HTTP on 127.0.0.1, so the
real `openai` client (and its error classes) is exercised end to end.

Behaviour is scripted: `server.script("429", "ok")` makes the next two requests answer 429 then
normally; when the script is empty every request gets `server.default` ("ok"). "ok" answers like
a cooperative model: JSON `{"instruction": ...}` when asked for an instruction, JSON
`{"score": 4, ...}` when asked to judge, plain generic prose otherwise. Every request is counted
and kept (`requests`, `bodies`), so tests can assert retries and prove the LLM was used.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

BEHAVIOURS = ("ok", "429", "500", "slow", "bad_json", "empty", "truncated")


def _answer(body: dict) -> str:
    messages = body.get("messages", [])
    system = " ".join(m.get("content", "") for m in messages if m.get("role") == "system")
    user = " ".join(m.get("content", "") for m in messages if m.get("role") == "user")
    if '"instruction"' in system:
        title = re.search(r"^Title: (.+)$", user, re.M)
        heading = re.search(r"^Section/symbol: (.+)$", user, re.M)
        subject = (heading or title).group(1) if (heading or title) else "my latest thinking"
        return json.dumps({"instruction": f"[fake-llm] Write about {subject}, in my own words."})
    if '"score"' in system:
        return json.dumps({"score": 4, "reason": "a natural request this text fulfils"})
    return (
        "[fake-llm] Great question! This is an important topic. There are several key aspects "
        "to consider, and best practices can help teams achieve better results. In conclusion, "
        "it depends on your specific needs."
    )


class FakeOpenAIServer:
    def __init__(self, slow_seconds: float = 3.0):
        self.slow_seconds = slow_seconds
        self.default = "ok"
        self._script: list[str] = []
        self._lock = threading.Lock()
        self.requests = 0
        self.by_behaviour: Counter[str] = Counter()
        self.bodies: list[dict] = []
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- control ---------------------------------------------------------------------------------
    def script(self, *behaviours: str) -> None:
        for b in behaviours:
            if b not in BEHAVIOURS:
                raise ValueError(f"unknown behaviour {b!r}")
        with self._lock:
            self._script.extend(behaviours)

    def reset(self) -> None:
        with self._lock:
            self._script.clear()
            self.requests = 0
            self.by_behaviour.clear()
            self.bodies.clear()
            self.default = "ok"

    def _next(self, body: dict) -> str:
        with self._lock:
            self.requests += 1
            self.bodies.append(body)
            behaviour = self._script.pop(0) if self._script else self.default
            self.by_behaviour[behaviour] += 1
            return behaviour

    @property
    def base_url(self) -> str:
        assert self._httpd is not None
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}/v1"

    def start(self) -> FakeOpenAIServer:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format, *args):  # quiet
                pass

            def _json(self, code: int, payload: dict, headers: dict | None = None) -> None:
                data = json.dumps(payload).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                try:
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def do_POST(self):
                length = int(self.headers.get("Content-Length", "0"))
                body = json.loads(self.rfile.read(length) or b"{}")
                if self.path.rstrip("/") != "/v1/chat/completions":
                    return self._json(404, {"error": {"message": "not found"}})
                behaviour = server._next(body)
                if behaviour == "429":
                    return self._json(
                        429,
                        {"error": {"message": "rate limited", "type": "rate_limit"}},
                        {"retry-after": "0"},
                    )
                if behaviour == "500":
                    return self._json(500, {"error": {"message": "boom", "type": "server_error"}})
                if behaviour == "slow":
                    time.sleep(server.slow_seconds)
                content = _answer(body)
                finish = "stop"
                if behaviour == "bad_json":
                    content = '{"instruction": "unterminated'
                elif behaviour == "empty":
                    content = ""
                elif behaviour == "truncated":
                    content, finish = content[: len(content) // 2], "length"
                prompt_tokens = sum(len(m.get("content", "").split()) for m in body.get("messages", []))
                completion_tokens = len(content.split())
                return self._json(
                    200,
                    {
                        "id": f"chatcmpl-{server.requests}",
                        "object": "chat.completion",
                        "created": int(time.time()),
                        "model": body.get("model", "fake"),
                        "choices": [
                            {
                                "index": 0,
                                "finish_reason": finish,
                                "message": {"role": "assistant", "content": content},
                            }
                        ],
                        "usage": {
                            "prompt_tokens": prompt_tokens,
                            "completion_tokens": completion_tokens,
                            "total_tokens": prompt_tokens + completion_tokens,
                        },
                    },
                )

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
