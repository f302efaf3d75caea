"""`twin serve`: the inference service wired from the configured resources, run in the
foreground (`run`) or as a background process tracked by a PID file (`start`/`stop`/`status`).

This is the one place where the serving logic (`twin_assets.serving`, no Dagster, no resources)
meets the configured resources: the artifact store (models and index snapshots), the warehouse
(API keys, prompt logs), the embedder (query vectors) and the optional LLM (self-query and
query expansion), all from `twin_assets.defs.resources.build_resources()`.

Configuration: the TWIN_SERVE_* variables (`SERVE_ENV`, read by `settings_from_env`):

| variable | setting | default |
|---|---|---|
| TWIN_SERVE_HOST | host | 127.0.0.1 |
| TWIN_SERVE_PORT | port | 8008 |
| TWIN_SERVE_MODEL | model (the twin SageMaker's /invocations answers as) | - |
| TWIN_SERVE_AUTH | auth (API keys required) | true |
| TWIN_SERVE_AUTHORS | authors served (comma-separated) | every author of the registry |
| TWIN_SERVE_GENERATOR | generator: local or openai | local |
| TWIN_SERVE_BASE_MODEL | base model dir for the local generator | TWIN_BASE_MODEL, else SmolLM2 |
| TWIN_SERVE_DEVICE | device of the local generator | cpu |
| TWIN_SERVE_MAX_BATCH_SIZE | rows per batch of the local generator | 16 |
| TWIN_SERVE_THREADS | torch CPU threads (0: torch's default; 1 on a shared machine) | 0 |
| TWIN_SERVE_OPENAI_BASE_URL | OpenAI-compatible generator URL | - |
| TWIN_SERVE_OPENAI_API_KEY | its key (secret, never logged) | - |
| TWIN_SERVE_OPENAI_MODELS | adapter -> server model (JSON or a=b,c=d) | - |
| TWIN_SERVE_OPENAI_MODEL | server model for anything unmapped | - |
| TWIN_SERVE_MAX_BODY_BYTES | request body cap (413) | 262144 |
| TWIN_SERVE_MAX_MESSAGES | messages per chat request | 64 |
| TWIN_SERVE_MAX_TOKENS | largest max_tokens a request may ask | 512 |
| TWIN_SERVE_DEFAULT_MAX_TOKENS | max_tokens when a request gives none | 256 |
| TWIN_SERVE_MAX_CONTEXT_TOKENS | prompt + completion cap (0: model window) | 0 |
| TWIN_SERVE_RATE_PER_MINUTE | requests per minute per key (0: off) | 120 |
| TWIN_SERVE_RATE_BURST | burst per key | 20 |
| TWIN_SERVE_TIMEOUT_S | per-request timeout | 120 |
| TWIN_SERVE_REFRESH_S (or TWIN_SERVE_POLLING) | poll for new models/indexes every N s (0: never) | 30 |
| TWIN_SERVE_ADAPTER_IDLE_S | unload a pinned, idle version after N s | 900 |
| TWIN_SERVE_RAG_K | chunks cited per answer | 5 |
| TWIN_SERVE_RAG_MAX_K | largest k a request may ask | 20 |
| TWIN_SERVE_CHAT_RAG | chat completions use RAG unless `rag: false` | true |
| TWIN_SERVE_RAG_CONFIG | RagConfig fields as JSON (stages, rerank, ...) | {} |
| TWIN_SERVE_SYSTEM_PROMPT | the twin's system prompt ('{author}' replaced) | built in |
| TWIN_SERVE_PROMPT_LOG_SAMPLE | share of successful requests logged | 1.0 |
| TWIN_SERVE_PROMPT_LOG_RETENTION_DAYS | prompt logs kept N days | 30 |
"""

from __future__ import annotations

import json
import logging
import os
import socket
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from twin_assets import processes
from twin_assets.paths import data_dir
from twin_assets.processes import ProcessInfo
from twin_assets.serving.settings import ServeSettings

log = logging.getLogger(__name__)

SERVE_ENV: dict[str, str] = {
    "TWIN_SERVE_HOST": "host",
    "TWIN_SERVE_PORT": "port",
    "TWIN_SERVE_AUTH": "auth",
    "TWIN_SERVE_AUTHORS": "authors",
    "TWIN_SERVE_MODEL": "model",
    "TWIN_SERVE_GENERATOR": "generator",
    "TWIN_SERVE_BASE_MODEL": "base_model",
    "TWIN_SERVE_DEVICE": "device",
    "TWIN_SERVE_MAX_BATCH_SIZE": "max_batch_size",
    "TWIN_SERVE_THREADS": "threads",
    "TWIN_SERVE_FREQUENCY_PENALTY": "frequency_penalty",
    "TWIN_SERVE_PRESENCE_PENALTY": "presence_penalty",
    "TWIN_SERVE_OPENAI_BASE_URL": "openai_base_url",
    "TWIN_SERVE_OPENAI_API_KEY": "openai_api_key",
    "TWIN_SERVE_OPENAI_MODELS": "openai_models",
    "TWIN_SERVE_OPENAI_MODEL": "openai_default_model",
    "TWIN_SERVE_MAX_BODY_BYTES": "max_body_bytes",
    "TWIN_SERVE_MAX_MESSAGES": "max_messages",
    "TWIN_SERVE_MAX_TOKENS": "max_tokens",
    "TWIN_SERVE_DEFAULT_MAX_TOKENS": "default_max_tokens",
    "TWIN_SERVE_MAX_CONTEXT_TOKENS": "max_context_tokens",
    "TWIN_SERVE_RATE_PER_MINUTE": "rate_per_minute",
    "TWIN_SERVE_RATE_BURST": "rate_burst",
    "TWIN_SERVE_TIMEOUT_S": "request_timeout_s",
    "TWIN_SERVE_REFRESH_S": "refresh_interval_s",
    "TWIN_SERVE_POLLING": "refresh_interval_s",
    "TWIN_SERVE_ADAPTER_IDLE_S": "adapter_idle_s",
    "TWIN_SERVE_RAG_K": "rag_k",
    "TWIN_SERVE_RAG_MAX_K": "rag_max_k",
    "TWIN_SERVE_CHAT_RAG": "chat_rag",
    "TWIN_SERVE_RAG_CONFIG": "rag",
    "TWIN_SERVE_SYSTEM_PROMPT": "system_prompt",
    "TWIN_SERVE_PROMPT_LOG_SAMPLE": "prompt_log_sample_rate",
    "TWIN_SERVE_PROMPT_LOG_RETENTION_DAYS": "prompt_log_retention_days",
}
_FALSE = {"0", "false", "no", "off"}
_SETTINGS_VAR = "TWIN_SERVE__SETTINGS_JSON"  # parent -> background child only (never logged)
PID_FILE = "twin-serve.pid"
STATE_FILE = "twin-serve.json"
LOG_FILE = "twin-serve.log"


class ServeError(RuntimeError):
    """The service could not be started, reached or stopped; the message says why."""


# -- settings ----------------------------------------------------------------------------------


def _mapping(raw: str) -> dict[str, str]:
    raw = raw.strip()
    if raw.startswith("{"):
        value = json.loads(raw)
        if not isinstance(value, dict):
            raise ValueError("expected a JSON object")
        return {str(k): str(v) for k, v in value.items()}
    out: dict[str, str] = {}
    for item in raw.split(","):
        if item.strip():
            key, sep, val = item.partition("=")
            if not sep:
                raise ValueError(f"{item.strip()!r} is not name=value")
            out[key.strip()] = val.strip()
    return out


def settings_from_env(environ: Mapping[str, str] | None = None) -> ServeSettings:
    """ServeSettings from the TWIN_SERVE_* variables (`SERVE_ENV`); unset or empty ones keep the
    defaults. A bad value raises pydantic's ValidationError naming the field (the CLI reports
    it), or ValueError naming the variable for a malformed list/JSON."""
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for name, field in SERVE_ENV.items():
        raw = env.get(name, "").strip()
        if not raw or (field in values and name == "TWIN_SERVE_POLLING"):
            continue
        try:
            if field == "authors":
                values[field] = [a.strip() for a in raw.split(",") if a.strip()]
            elif field == "openai_models":
                values[field] = _mapping(raw)
            elif field == "rag":
                parsed = json.loads(raw)
                if not isinstance(parsed, dict):
                    raise ValueError("expected a JSON object")
                values[field] = parsed
            elif field in ("auth", "chat_rag"):
                values[field] = raw.lower() not in _FALSE
            else:
                values[field] = raw
        except ValueError as exc:
            raise ValueError(f"{name}={raw if 'KEY' not in name else '***'!r} is not valid: {exc}") from None
    if "base_model" not in values and env.get("TWIN_BASE_MODEL", "").strip():
        values["base_model"] = env["TWIN_BASE_MODEL"].strip()
    return ServeSettings.model_validate(values)


# -- wiring -------------------------------------------------------------------------------------


def _resolved(resource: Any) -> Any:
    """A resource with its `EnvVar` fields replaced by their values (used outside a Dagster run)."""
    import dagster as dg

    update = {
        name: getattr(resource, name).get_value()
        for name in type(resource).model_fields
        if isinstance(getattr(resource, name, None), dg.EnvVar)
    }
    return resource.model_copy(update=update) if update else resource


def build_generator(settings: ServeSettings):
    """The configured `Generator`: the in-process base model with LoRA adapters, or a server."""
    if settings.generator == "openai":
        from twin_assets.serving.remote import OpenAIGenerator

        return OpenAIGenerator(
            settings.openai_base_url,
            api_key=settings.openai_api_key,
            model_map=settings.openai_models,
            default_model=settings.openai_default_model,
            timeout_s=settings.request_timeout_s,
        )
    from transformers import AutoTokenizer

    from twin_assets.serving.engine import LocalGenerator
    from twin_assets.training.base_model import resolve_base_model
    from twin_assets.training.chat import resolve_chat_template

    base = resolve_base_model(settings.base_model or None)
    # the template the adapters were trained with (training resolves it from the same base
    # tokenizer), not the base model's own default, which adds a system prompt of its own
    template = resolve_chat_template(AutoTokenizer.from_pretrained(base))
    return LocalGenerator(
        base,
        device=settings.device,
        max_batch_size=settings.max_batch_size,
        chat_template=template,
    )


def build_service(settings: ServeSettings, resources: Mapping[str, Any] | None = None, *, generator=None):
    """A `TwinService` over the configured artifact store, embedder and LLM (`resources`:
    `build_resources()` unless given; `generator`: built from `settings` unless given)."""
    from twin_assets.serving.rag import RagConfig, RagPipeline
    from twin_assets.serving.service import TwinService

    if resources is None:
        from twin_assets.defs.resources import build_resources

        resources = build_resources()
    artifacts = _resolved(resources["artifacts"])
    embedder = resources["embedder"]
    llm_resource = _resolved(resources["llm"])
    llm = llm_resource.get_generator() if llm_resource.uses_llm else None
    try:
        config = RagConfig.model_validate({"k": settings.rag_k, **settings.rag})
    except ValidationError as exc:
        raise ValueError(f"TWIN_SERVE_RAG_CONFIG is not valid: {exc}") from None
    pipeline = RagPipeline(embedder, config, llm=llm)

    def registered() -> list[str]:
        return [a.id for a in resources["authors"].authors()]

    authors: Any = list(settings.authors) if settings.authors is not None else registered

    return TwinService(
        artifacts,
        generator if generator is not None else build_generator(settings),
        pipeline,
        authors=authors,
        system_prompt=settings.system_prompt,
        default_k=settings.rag_k,
        max_k=settings.rag_max_k,
        context_limit=settings.max_context_tokens,
        adapter_idle_s=settings.adapter_idle_s,
    )


def build_app(settings: ServeSettings, resources: Mapping[str, Any] | None = None, *, generator=None):
    """The whole app: service, keys and prompt logs from the warehouse, rate limiter.
    Returns (app, closers): call each closer on shutdown."""
    from twin_assets.serving.app import create_app
    from twin_assets.serving.keys import KeyRing
    from twin_assets.serving.limits import RateLimiter
    from twin_assets.serving.prompt_logs import PromptLogger

    if resources is None:
        from twin_assets.defs.resources import build_resources

        resources = build_resources()
    service = build_service(settings, resources, generator=generator)
    keyring = prompt_logger = None
    if settings.auth or settings.prompt_log_sample_rate > 0:
        store = _resolved(resources["warehouse"]).get_store()
        keyring = KeyRing(store) if settings.auth else None
        prompt_logger = PromptLogger(
            store, settings.prompt_log_sample_rate, settings.prompt_log_retention_days
        )
    limiter = (
        RateLimiter(settings.rate_per_minute, settings.rate_burst) if settings.rate_per_minute > 0 else None
    )
    app = create_app(service, settings, keyring=keyring, limiter=limiter, prompt_logger=prompt_logger)
    closers = [service.close] + ([prompt_logger.close] if prompt_logger is not None else [])
    return app, closers


# -- foreground ---------------------------------------------------------------------------------


def run(settings: ServeSettings) -> None:
    """Serve in the foreground until SIGINT/SIGTERM; then finish, close the generator (its
    worker thread) and flush the prompt logs."""
    import uvicorn

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if settings.threads:
        # the generator and the query embedder share the process's torch threads; on a machine
        # shared with other jobs, oversubscribed threads cost far more than they give
        import torch

        torch.set_num_threads(settings.threads)
    app, closers = build_app(settings)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level="info",
        timeout_graceful_shutdown=int(min(settings.request_timeout_s, 30)),
        access_log=True,  # method, path and status: never a header, so never a key
    )
    try:
        uvicorn.Server(config).run()
    finally:
        for close in closers:
            try:
                close()
            except Exception:
                log.exception("closing %s failed", close)


# -- background process -------------------------------------------------------------------------


def _files() -> tuple[Path, Path, Path]:
    root = data_dir()
    return root / PID_FILE, root / STATE_FILE, root / LOG_FILE


def _is_ours(proc: ProcessInfo) -> bool:
    """Whether a process is a twin service process (a stale PID file may name anything)."""
    return "twin_assets.server" in proc.argv


def _pid() -> int | None:
    pid_file, _, _ = _files()
    return processes.read_pid(pid_file, _is_ours)


def _port_in_use(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex((host if host not in ("0.0.0.0", "") else "127.0.0.1", port)) == 0


def _probe(base_url: str, path: str, timeout: float = 2.0) -> tuple[int | None, Any]:
    import httpx

    try:
        response = httpx.get(base_url + path, timeout=timeout)
    except httpx.HTTPError:
        return None, None
    try:
        return response.status_code, response.json()
    except ValueError:
        return response.status_code, None


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _local_url(settings: ServeSettings) -> str:
    host = "127.0.0.1" if settings.host in ("0.0.0.0", "", "::") else settings.host
    return f"http://{host}:{settings.port}"


def start(settings: ServeSettings, timeout_s: float = 180.0) -> int:
    """Start the service as a detached process and wait until /readyz answers 200; returns its
    PID. Already running: its PID. Not ready in time or exited: ServeError with the log tail."""
    pid_file, state_file, log_file = _files()
    running = _pid()
    if running is not None:
        return running
    if _port_in_use(settings.host, settings.port):
        raise ServeError(f"{settings.host}:{settings.port} is in use by another process; set TWIN_SERVE_PORT")
    env = {**os.environ, _SETTINGS_VAR: settings.model_dump_json()}
    proc = processes.start_detached(
        [sys.executable, "-m", "twin_assets.server"], log_file=log_file, pid_file=pid_file, env=env
    )
    base = _local_url(settings)
    state_file.write_text(json.dumps({"pid": proc.pid, "url": base, "started_at": time.time()}))
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pid_file.unlink(missing_ok=True)
            state_file.unlink(missing_ok=True)
            raise ServeError(
                f"the service exited with status {proc.returncode} before it was ready; "
                f"last lines of {log_file}:\n{_tail(log_file)}"
            )
        code, body = _probe(base, "/readyz")
        if code == 200:
            return proc.pid
        last = body if code else last
        time.sleep(0.25)
    processes.terminate(proc.pid, _is_ours, pid_file=pid_file)
    state_file.unlink(missing_ok=True)
    raise ServeError(
        f"the service was not ready within {timeout_s:g}s (last readiness: {last}); stopped it. "
        f"Last lines of {log_file}:\n{_tail(log_file)}"
    )


def stop(timeout_s: float = 30.0) -> bool:
    """Stop the background service (SIGTERM: uvicorn finishes in-flight requests, then the
    generator is closed). False when it was not running; a stale PID file is just removed."""
    pid_file, state_file, _ = _files()
    stopped = processes.stop(pid_file, _is_ours, timeout_s=timeout_s)
    state_file.unlink(missing_ok=True)
    return stopped is not None


def status() -> dict[str, Any]:
    """{} when not running; else pid, url, ready and the authors it serves."""
    _, state_file, log_file = _files()
    pid = _pid()
    if pid is None:
        return {}
    try:
        state = json.loads(state_file.read_text())
    except (OSError, ValueError):
        state = {}
    url = state.get("url", "")
    code, body = _probe(url, "/readyz") if url else (None, None)
    out: dict[str, Any] = {"running": True, "pid": pid, "url": url or "?", "ready": code == 200}
    if isinstance(body, dict):
        out["authors"] = ",".join(body.get("authors", [])) or "-"
    out["log"] = str(log_file)
    return out


def _main() -> None:
    raw = os.environ.pop(_SETTINGS_VAR, "")
    settings = ServeSettings.model_validate_json(raw) if raw else settings_from_env()
    run(settings)


if __name__ == "__main__":
    _main()
