"""A small OpenAI-compatible chat-completions server for tests: real HTTP on 127.0.0.1, so the
real `openai` client (and its error classes) is exercised end to end.

Behaviour is scripted: `server.script("429", "ok")` makes the next two requests answer 429 then
normally; when the script is empty every request gets `server.default` ("ok"). "ok" answers like
a cooperative model: JSON `{"instruction": ...}` when asked for an instruction, JSON
`{"score": 4, ...}` when asked to judge, plain generic prose otherwise. Every request is counted
and kept (`requests`, `bodies`), so tests can assert retries and prove the LLM was used.

ragas' structured prompts (0.4.3 `metrics.collections`: Faithfulness' statement generation and
NLI verdicts, AnswerRelevancy's question generation) get valid JSON for their schemas, computed
deterministically from the prompt's `input:` object, so a test can predict the score: each
sentence of the answer is one statement; a statement is supported (verdict 1) when at least
half of its words (3+ letters) occur in the context; the generated question is the answer's
first sentence turned into a question, noncommittal when the answer hedges ("it depends", "not
sure", "I don't know"). `wrong_schema` answers valid JSON of the wrong shape.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

BEHAVIOURS = ("ok", "429", "500", "slow", "bad_json", "empty", "truncated", "wrong_schema")

RAGAS_INPUT = "Now perform the same with the following input\ninput: "
HEDGES = ("it depends", "not sure", "i don't know", "i do not know")


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]{3,}", text.lower())


def _sentences(text: str) -> list[str]:
    return [s.strip() for s in re.split(r"(?<=[.!?])\s+|\n+", text) if s.strip()]


def supported(statement: str, context: str) -> bool:
    """The fake judge's NLI verdict: most of the statement's words occur in the context."""
    words = _words(statement)
    known = set(_words(context))
    return bool(words) and sum(w in known for w in words) * 2 >= len(words)


def _ragas_answer(prompt: str) -> str | None:
    """Valid JSON for ragas' structured prompts, or None when `prompt` is not one of them."""
    if RAGAS_INPUT not in prompt:
        return None
    raw = prompt.rsplit(RAGAS_INPUT, 1)[1].rsplit("\nOutput:", 1)[0]
    data = json.loads(raw)
    if "fully understandable statements" in prompt:  # Faithfulness, step 1
        return json.dumps({"statements": _sentences(data["answer"])})
    if "judge the faithfulness of a series of statements" in prompt:  # Faithfulness, step 2
        verdicts = [
            {
                "statement": st,
                "reason": "words found in the context" if ok else "not in the context",
                "verdict": int(ok),
            }
            for st in data["statements"]
            for ok in [supported(st, data["context"])]
        ]
        return json.dumps({"statements": verdicts})
    if "noncommittal" in prompt and "response" in data:  # AnswerRelevancy
        response = data["response"]
        first = (_sentences(response) or [response])[0].rstrip(".!?")
        hedging = any(h in response.lower() for h in HEDGES)
        return json.dumps({"question": f"{first}?", "noncommittal": int(hedging)})
    return None


def _answer(body: dict) -> str:
    messages = body.get("messages", [])
    system = " ".join(m.get("content", "") for m in messages if m.get("role") == "system")
    user = " ".join(m.get("content", "") for m in messages if m.get("role") == "user")
    ragas = _ragas_answer(user)
    if ragas is not None:
        return ragas
    if '"instruction"' in system:
        title = re.search(r"^Title: (.+)$", user, re.M)
        heading = re.search(r"^Section/symbol: (.+)$", user, re.M)
        found = heading or title
        subject = found.group(1) if found else "my latest thinking"
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
                elif behaviour == "wrong_schema":
                    content = json.dumps({"unexpected": "a reply of the wrong shape"})
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
