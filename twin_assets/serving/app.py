"""The HTTP API: OpenAI-compatible chat completions, the twin's answer and search endpoints,
health, readiness and Prometheus metrics.

Every request goes through the same steps, in an order that refuses cheap mistakes before
expensive work: authenticate (401), rate-limit per key (429 + Retry-After), read the body under
its size cap (413), parse and validate it (400 with the field and the reason), check the key's
author scope (403), resolve the model (404), then retrieve and generate. A client mistake is
always a 4xx with OpenAI's error body `{"error": {"message", "type", "param", "code"}}`; a 5xx
means the service itself failed.

Every request that reached a route, successful or not, is offered to the prompt logger (which
samples) with what is known at its end; the key's id is recorded, never the key, and anything in
a question that looks like a key is redacted.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from twin_assets.domain.serving import PromptLog, RetrievedRef
from twin_assets.serving import schemas
from twin_assets.serving.keys import KeyRing, KeyStoreUnavailable, redact_keys
from twin_assets.serving.limits import LimitExceeded, RateLimiter, RequestLimits
from twin_assets.serving.metrics import CONTENT_TYPE, ServiceMetrics
from twin_assets.serving.service import (
    AnswerResult,
    InvalidRequest,
    RagOptions,
    ServiceError,
    Turn,
    TwinService,
)
from twin_assets.serving.settings import ServeSettings
from twin_assets.serving.types import GenerationParams, RetrievalResult, SearchFilters

log = logging.getLogger(__name__)
M = TypeVar("M", bound=BaseModel)

ROUTE_CHAT = "/v1/chat/completions"
ROUTE_MODELS = "/v1/models"
ROUTE_ANSWER = "/v1/twins/{author}/answer"
ROUTE_SEARCH = "/v1/twins/{author}/search"


class PromptRecorder(Protocol):
    """`prompt_logs.PromptLogger`: takes a log without blocking (it samples and writes later)."""

    def record(self, entry: PromptLog, /) -> Any: ...


class ApiError(Exception):
    """An HTTP-level refusal (auth, scope, limits, body) with OpenAI's error fields."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
        headers: dict[str, str] | None = None,
    ):
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.code = code
        self.param = param
        self.headers = headers or {}


def error_response(
    status: int,
    message: str,
    *,
    type: str = "invalid_request_error",
    code: str | None = None,
    param: str | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body = schemas.ErrorBody(error=schemas.ErrorDetail(message=message, type=type, param=param, code=code))
    return JSONResponse(body.model_dump(), status_code=status, headers=headers)


def _validation_message(exc: ValidationError | RequestValidationError) -> tuple[str, str | None]:
    """'field.path: reason' for each problem (at most five), and the first field's path."""
    problems, first = [], None
    for err in exc.errors()[:5]:
        loc = ".".join(str(p) for p in err.get("loc", ()) if p not in ("body",))
        # a union reports each alternative's path ('content.str'): keep the request's own path
        first = first or loc or None
        msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
        problems.append(f"{loc}: {msg}" if loc else msg)
    more = len(exc.errors()) - 5
    if more > 0:
        problems.append(f"and {more} more")
    return "; ".join(problems) or "invalid request", first


@dataclass
class _Call:
    """What one request did, for metrics and the prompt log."""

    route: str
    key_id: str | None = None
    author: str = ""
    model: str = ""
    model_version: str | None = None
    index_version: str | None = None
    question: str = ""
    retrieved: list[RetrievedRef] = field(default_factory=list)
    answer: str = ""
    timings_ms: dict[str, float] = field(default_factory=dict)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    status: int = 200
    error: str | None = None
    finish_reason: str | None = None
    started: float = field(default_factory=time.perf_counter)

    def take_retrieval(self, retrieval: RetrievalResult | None) -> None:
        if retrieval is None:
            return
        self.index_version = retrieval.index_version or self.index_version
        self.retrieved = [
            RetrievedRef(chunk_id=c.chunk_id, document_id=c.document_id, score=c.score)
            for c in retrieval.chunks
        ]
        self.timings_ms.update(retrieval.timings_ms)

    def take_turn(self, turn: Turn) -> None:
        self.author, self.model_version = turn.author, turn.ref.version
        self.index_version = turn.index_version
        self.take_retrieval(turn.retrieval)

    def take_result(self, result: AnswerResult) -> None:
        self.answer = result.answer
        self.finish_reason = result.finish_reason
        self.prompt_tokens = result.usage.prompt_tokens
        self.completion_tokens = result.usage.completion_tokens
        self.timings_ms.update(result.timings_ms)
        if result.error:
            self.error = result.error


class _RouteMetrics:
    """Pure ASGI middleware counting every response by route template and status (a
    BaseHTTPMiddleware would break streaming disconnect detection)."""

    def __init__(self, app: ASGIApp, metrics: ServiceMetrics):
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = {"code": 500}

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = scope.get("route")
            path = getattr(route, "path", None) or "other"
            self.metrics.requests.labels(route=path, status=str(status["code"])).inc()


def create_app(
    service: TwinService,
    settings: ServeSettings,
    *,
    keyring: KeyRing | None,
    limiter: RateLimiter | None,
    prompt_logger: PromptRecorder | None,
    start_background: bool = True,
) -> FastAPI:
    """The FastAPI app over `service`. `keyring` may be None only when `settings.auth` is off.
    `start_background`: warm up and poll for new versions (off in tests that drive `refresh`)."""
    if settings.auth and keyring is None:
        raise ValueError("settings.auth is on: a keyring is required")
    limits = RequestLimits(
        max_body_bytes=settings.max_body_bytes,
        max_messages=settings.max_messages,
        max_tokens=settings.max_tokens,
        max_context_tokens=settings.max_context_tokens,
    )
    stats = getattr(service.generator, "stats", None)
    metrics = ServiceMetrics(stats if callable(stats) else None)
    service.on_swap = lambda kind: metrics.swaps.labels(kind=kind).inc()

    @asynccontextmanager
    async def lifespan(_: FastAPI):
        if start_background:
            await service.start(settings.refresh_interval_s)
        try:
            yield
        finally:
            if start_background:
                await service.stop()

    app = FastAPI(title="LLM Twin", version="1", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.service = service
    app.state.metrics = metrics
    app.state.settings = settings

    # -- errors ------------------------------------------------------------------------------------
    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code)
        return error_response(exc.status_code, str(exc.detail), code=code)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        message, param = _validation_message(exc)
        return error_response(400, message, code="invalid_request", param=param)

    # -- request steps -------------------------------------------------------------------------------
    def authenticate(request: Request) -> tuple[str | None, Any]:
        """(key id, key record) of the request; anonymous (None, None) when auth is off."""
        if not settings.auth:
            return None, None
        header = request.headers.get("authorization", "")
        scheme, _, raw = header.partition(" ")
        if not header:
            raise ApiError(
                401,
                "missing API key: send 'Authorization: Bearer <key>' (create one with `twin keys create`)",
                type="authentication_error",
                code="missing_api_key",
                headers={"WWW-Authenticate": "Bearer"},
            )
        if scheme.lower() != "bearer" or not raw.strip():
            raise ApiError(
                401,
                "malformed Authorization header: expected 'Bearer <key>'",
                type="authentication_error",
                code="invalid_api_key",
                headers={"WWW-Authenticate": "Bearer"},
            )
        assert keyring is not None
        try:
            record = keyring.verify(raw.strip())
        except KeyStoreUnavailable as exc:
            raise ApiError(503, str(exc), type="server_error", code="key_store_unavailable") from None
        if record is None:
            raise ApiError(
                401,
                "invalid or revoked API key",
                type="authentication_error",
                code="invalid_api_key",
                headers={"WWW-Authenticate": "Bearer"},
            )
        return record.id, record

    def rate_limit(request: Request, key_id: str | None) -> None:
        if limiter is None:
            return
        who = key_id or f"ip:{request.client.host if request.client else '-'}"
        wait = limiter.check(who)
        if wait is not None:
            seconds = max(1, math.ceil(wait))
            raise ApiError(
                429,
                f"rate limit of {limiter.rate_per_minute:g} requests per minute exceeded; retry in {seconds}s",
                type="rate_limit_error",
                code="rate_limit_exceeded",
                headers={"Retry-After": str(seconds)},
            )

    def check_scope(record: Any, author: str) -> None:
        if record is None or not author:
            return
        if not KeyRing.allows(record, author):
            raise ApiError(
                403,
                f"this API key is not allowed to ask the twin of {author!r}",
                type="permission_error",
                code="author_not_allowed",
                param="model",
            )

    async def read_body(request: Request, model: type[M]) -> M:
        declared = request.headers.get("content-length")
        if declared is not None:
            try:
                size = int(declared)
            except ValueError:
                raise ApiError(400, "Content-Length is not a number", code="invalid_request") from None
            try:
                limits.check_body(size)
            except LimitExceeded as exc:
                raise ApiError(exc.status, str(exc), code="request_too_large") from None
        chunks, total = [], 0
        async for chunk in request.stream():
            total += len(chunk)
            if total > limits.max_body_bytes:
                raise ApiError(
                    413,
                    f"request body exceeds the limit of {limits.max_body_bytes} bytes",
                    code="request_too_large",
                )
            chunks.append(chunk)
        raw = b"".join(chunks)
        if not raw.strip():
            raise ApiError(400, "the request body is empty: send a JSON object", code="invalid_json")
        try:
            data = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ApiError(400, f"malformed JSON: {exc}", code="invalid_json") from None
        except RecursionError:
            raise ApiError(400, "malformed JSON: nested too deeply", code="invalid_json") from None
        if not isinstance(data, dict):
            raise ApiError(
                400, f"the body must be a JSON object, not {type(data).__name__}", code="invalid_json"
            )
        try:
            return model.model_validate(data)
        except ValidationError as exc:
            message, param = _validation_message(exc)
            raise ApiError(400, message, code="invalid_request", param=param) from None
        except RecursionError:
            raise ApiError(400, "the body is nested too deeply", code="invalid_request") from None

    def generation_params(
        max_tokens: int | None,
        temperature: float | None,
        top_p: float | None,
        stop: list[str],
        seed: int | None,
        frequency_penalty: float | None = None,
        presence_penalty: float | None = None,
    ) -> GenerationParams:
        try:
            budget = limits.check_max_tokens(max_tokens)
        except LimitExceeded as exc:
            raise ApiError(400, str(exc), code="max_tokens_exceeded", param="max_tokens") from None
        if max_tokens is None:
            budget = min(budget, settings.default_max_tokens)
        return GenerationParams(
            max_tokens=budget,
            temperature=0.0 if temperature is None else temperature,
            top_p=1.0 if top_p is None else top_p,
            stop=stop,
            seed=seed,
            frequency_penalty=settings.frequency_penalty if frequency_penalty is None else frequency_penalty,
            presence_penalty=settings.presence_penalty if presence_penalty is None else presence_penalty,
            timeout_s=settings.request_timeout_s,
        )

    def record(call: _Call) -> None:
        call.timings_ms.setdefault("total", (time.perf_counter() - call.started) * 1000)
        metrics.observe_timings(call.timings_ms)
        metrics.observe_tokens(call.prompt_tokens, call.completion_tokens)
        if call.status >= 400:
            metrics.errors.labels(route=call.route, code=str(call.status)).inc()
        if prompt_logger is None:
            return
        try:
            prompt_logger.record(
                PromptLog(
                    author_id=call.author,
                    model=call.model,
                    model_version=call.model_version,
                    index_version=call.index_version,
                    route=call.route,
                    question=redact_keys(call.question),
                    retrieved=call.retrieved,
                    answer=call.answer,
                    timings_ms={k: round(v, 3) for k, v in call.timings_ms.items()},
                    prompt_tokens=call.prompt_tokens,
                    completion_tokens=call.completion_tokens,
                    key_id=call.key_id,
                    status=call.status,
                    error=redact_keys(call.error) if call.error else None,
                    finish_reason=call.finish_reason,
                )
            )
        except Exception:  # monitoring must never fail a request
            log.exception("prompt log dropped")

    def failure(call: _Call, exc: BaseException) -> JSONResponse:
        """The error response for `exc`, recorded on `call`."""
        if isinstance(exc, ApiError):
            call.status, call.error = exc.status, exc.message
            return error_response(
                exc.status, exc.message, type=exc.type, code=exc.code, param=exc.param, headers=exc.headers
            )
        if isinstance(exc, ServiceError):
            call.status, call.error = exc.status, exc.message
            return error_response(exc.status, exc.message, type=exc.type, code=exc.code, param=exc.param)
        if isinstance(exc, LimitExceeded):
            call.status, call.error = exc.status, str(exc)
            return error_response(exc.status, str(exc), code=exc.limit or "limit_exceeded")
        if isinstance(exc, TimeoutError):
            call.status = 504
            call.error = f"no answer within {settings.request_timeout_s:g}s"
            return error_response(504, call.error, type="server_error", code="timeout")
        log.exception("request failed", exc_info=exc)
        call.status, call.error = 500, f"internal error ({type(exc).__name__})"
        return error_response(
            500, "internal error; see the service log", type="server_error", code="internal"
        )

    async def guarded(call: _Call, work: Callable[[], Awaitable[Response]]) -> Response:
        """Run a route's work; any failure becomes its error response. A streaming response
        records itself when the stream ends; everything else is recorded here."""
        streaming = False
        try:
            response = await work()
            streaming = isinstance(response, StreamingResponse)
            return response
        except Exception as exc:
            return failure(call, exc)
        finally:
            if not streaming:
                record(call)

    def completion_status(call: _Call, result: AnswerResult) -> None:
        if result.finish_reason == "timeout":
            raise TimeoutError
        if result.finish_reason == "error":
            call.status = 502
            raise ApiError(
                502,
                f"generation failed: {result.error or 'unknown error'}",
                type="server_error",
                code="generation_failed",
            )

    def sse(data: BaseModel | dict) -> str:
        payload = data.model_dump_json(exclude_none=True) if isinstance(data, BaseModel) else json.dumps(data)
        return f"data: {payload}\n\n"

    async def stream_turn(
        call: _Call,
        turn: Turn,
        first: Callable[[], str | None],
        delta: Callable[[str], str],
        last: Callable[[AnswerResult], list[str]],
    ) -> AsyncIterator[str]:
        """SSE frames of one turn: `first` (head), a frame per delta, `last` frames, [DONE].
        Client gone (the task is cancelled) or timeout: the generation is cancelled."""
        deadline = time.monotonic() + settings.request_timeout_s
        finished = False
        try:
            head = first()
            if head:
                yield head
            deltas = turn.deltas().__aiter__()
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError
                try:
                    piece = await asyncio.wait_for(deltas.__anext__(), timeout=remaining)
                except StopAsyncIteration:
                    break
                if piece:
                    yield delta(piece)
            result = await asyncio.wait_for(turn.finish(), timeout=max(deadline - time.monotonic(), 0.001))
            finished = True
            call.take_result(result)
            if result.finish_reason in ("timeout", "error"):
                call.status = 504 if result.finish_reason == "timeout" else 502
                message = (
                    f"no answer within {settings.request_timeout_s:g}s"
                    if result.finish_reason == "timeout"
                    else f"generation failed: {result.error or 'unknown error'}"
                )
                call.error = message
                yield sse(
                    {"error": {"message": message, "type": "server_error", "code": result.finish_reason}}
                )
            else:
                for frame in last(result):
                    yield frame
            yield "data: [DONE]\n\n"
        except TimeoutError:
            call.status, call.error = 504, f"no answer within {settings.request_timeout_s:g}s"
            yield sse({"error": {"message": call.error, "type": "server_error", "code": "timeout"}})
            yield "data: [DONE]\n\n"
        except asyncio.CancelledError:
            call.status, call.error = 499, "client disconnected"
            raise
        except Exception as exc:
            log.exception("stream failed")
            call.status, call.error = 500, f"internal error ({type(exc).__name__})"
            yield sse({"error": {"message": "internal error", "type": "server_error", "code": "internal"}})
        finally:
            if not finished:
                turn.cancel()
            record(call)

    async def finish_turn(call: _Call, turn: Turn) -> AnswerResult:
        """A non-streamed turn to its end within the request timeout (cancelled on failure or
        timeout, so its batch row is freed), recorded on the call."""
        try:
            result = await asyncio.wait_for(turn.finish(), timeout=settings.request_timeout_s)
        except BaseException:
            turn.cancel()
            raise
        call.take_result(result)
        completion_status(call, result)
        return result

    def finish_reason(reason: str) -> str:
        return reason if reason in ("stop", "length") else "stop"

    def rag_options(rag: bool | schemas.RagIn | None) -> RagOptions | None:
        if rag is None:
            rag = settings.chat_rag
        if rag is False:
            return None
        if rag is True:
            return RagOptions()
        return RagOptions(
            k=rag.k, filters=SearchFilters.model_validate(rag.filters.model_dump()) if rag.filters else None
        )

    # -- routes ---------------------------------------------------------------------------------
    @app.get("/healthz")
    async def healthz() -> dict:
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz() -> JSONResponse:
        state = service.readiness()
        return JSONResponse(state, status_code=200 if state["ready"] else 503)

    @app.get("/metrics")
    async def metrics_endpoint() -> Response:
        return Response(metrics.render(), media_type=CONTENT_TYPE)

    @app.get(ROUTE_MODELS)
    async def list_models(request: Request) -> Response:
        call = _Call(route=ROUTE_MODELS)

        async def work() -> Response:
            call.key_id, record_ = authenticate(request)
            rate_limit(request, call.key_id)
            models = await asyncio.to_thread(service.models)
            visible = [m for m in models if record_ is None or KeyRing.allows(record_, m.author)]
            body = schemas.ModelList(
                data=[
                    schemas.ModelCard(id=m.id, created=m.created, version=m.version, kind=m.kind)
                    for m in visible
                ]
            )
            return JSONResponse(body.model_dump())

        return await guarded(call, work)

    @app.post(ROUTE_CHAT)
    async def chat_completions(request: Request) -> Response:
        call = _Call(route=ROUTE_CHAT)

        async def work() -> Response:
            call.key_id, record_ = authenticate(request)
            rate_limit(request, call.key_id)
            body = await read_body(request, schemas.ChatCompletionRequest)
            call.model = body.model
            call.author = service.author_of(body.model)
            call.question = body.messages[-1].text
            limits.check_messages(len(body.messages))
            check_scope(record_, call.author)
            params = generation_params(
                body.requested_max_tokens,
                body.temperature,
                body.top_p,
                body.stop_list,
                body.seed,
                body.frequency_penalty,
                body.presence_penalty,
            )
            messages = [m.as_message() for m in body.messages]
            turn = await service.start_chat(body.model, messages, params, rag=rag_options(body.rag))
            call.take_turn(turn)
            if not body.stream:
                result = await finish_turn(call, turn)
                response = schemas.ChatCompletion(
                    model=body.model,
                    choices=[
                        schemas.Choice(
                            message=schemas.AssistantMessage(content=result.answer),
                            finish_reason=finish_reason(result.finish_reason),
                        )
                    ],
                    usage=schemas.Usage(**result.usage.model_dump()),
                    model_version=result.model_version,
                    index_version=result.index_version,
                    citations=result.citations,
                )
                return JSONResponse(response.model_dump(mode="json"))
            cid, created = schemas.completion_id(), int(time.time())
            include_usage = bool(body.stream_options and body.stream_options.include_usage)

            def chunk(delta: schemas.Delta, reason: str | None = None, **extra: Any) -> str:
                return sse(
                    schemas.ChatCompletionChunk(
                        id=cid,
                        created=created,
                        model=body.model,
                        choices=[schemas.ChunkChoice(delta=delta, finish_reason=reason)],
                        **extra,
                    )
                )

            def first() -> str:
                return chunk(
                    schemas.Delta(role="assistant", content=""),
                    model_version=turn.ref.version,
                    index_version=turn.index_version,
                    citations=turn.citations or None,
                )

            def last(result: AnswerResult) -> list[str]:
                frames = [chunk(schemas.Delta(), finish_reason(result.finish_reason))]
                if include_usage:
                    frames.append(
                        sse(
                            schemas.ChatCompletionChunk(
                                id=cid,
                                created=created,
                                model=body.model,
                                choices=[],
                                usage=schemas.Usage(**result.usage.model_dump()),
                            )
                        )
                    )
                return frames

            return StreamingResponse(
                stream_turn(call, turn, first, lambda piece: chunk(schemas.Delta(content=piece)), last),
                media_type="text/event-stream",
                headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
            )

        return await guarded(call, work)

    @app.get("/ping")
    async def ping() -> JSONResponse:
        """SageMaker's health check: 200 once warmed up (same as /readyz)."""
        return await readyz()

    @app.post("/invocations")
    async def invocations(request: Request) -> Response:
        """SageMaker's inference route: an /answer request whose twin is named in `model`, or
        the container's pinned twin (TWIN_SERVE_MODEL). The endpoint is reached through AWS's
        signed InvokeEndpoint, so the container usually runs with TWIN_SERVE_AUTH=false; with
        auth on, the same bearer keys apply."""
        call = _Call(route="/invocations")

        async def work() -> Response:
            call.key_id, record_ = authenticate(request)
            rate_limit(request, call.key_id)
            body = await read_body(request, schemas.InvocationRequest)
            model = body.model or settings.model
            if not model:
                raise InvalidRequest("no twin named: send 'model' or set TWIN_SERVE_MODEL")
            author, _, version = model.partition("@")
            if version and body.version and version != body.version:
                raise InvalidRequest(f"'model' pins {version} but 'version' asks for {body.version}")
            pinned = body.model_copy(update={"version": version or body.version})
            return await run_answer(call, request, author, pinned, record_)

        return await guarded(call, work)

    @app.post(ROUTE_ANSWER)
    async def answer(author: str, request: Request) -> Response:
        call = _Call(route=ROUTE_ANSWER, author=author, model=author)

        async def work() -> Response:
            return await run_answer(call, request, author, None)

        return await guarded(call, work)

    async def run_answer(
        call: _Call,
        request: Request,
        author: str,
        parsed: schemas.AnswerRequest | None,
        authenticated: Any = None,
    ) -> Response:
        """One body for /v1/twins/{author}/answer and /invocations (which authenticates and
        parses first, since its twin comes from the body)."""
        call.author = call.model = author
        if parsed is None:
            call.key_id, record_ = authenticate(request)
            rate_limit(request, call.key_id)
        else:
            record_ = authenticated
        check_scope(record_, author)
        service.check_author(author)
        body = parsed if parsed is not None else await read_body(request, schemas.AnswerRequest)
        call.question = body.question
        call.model = f"{author}@{body.version}" if body.version else author
        limits.check_messages(len(body.history) + 1)
        params = generation_params(
            body.max_tokens,
            body.temperature,
            body.top_p,
            body.stop or [],
            body.seed,
            body.frequency_penalty,
            body.presence_penalty,
        )
        filters = SearchFilters.model_validate(body.filters.model_dump()) if body.filters else None
        turn = await service.start_answer(
            author,
            body.question,
            [m.model_dump() for m in body.history],
            params,
            rag=RagOptions(k=body.k, filters=filters),
            version=body.version,
        )
        call.take_turn(turn)
        answer_id = f"ans-{schemas.completion_id()[9:]}"
        if not body.stream:
            result = await finish_turn(call, turn)
            return JSONResponse(answer_body(answer_id, result).model_dump(mode="json"))

        def first() -> str:
            return sse(
                {
                    "type": "start",
                    "id": answer_id,
                    "model": call.model,
                    "model_version": turn.ref.version,
                    "index_version": turn.index_version,
                    "citations": [c.model_dump(mode="json") for c in turn.citations],
                }
            )

        def last(result: AnswerResult) -> list[str]:
            final = answer_body(answer_id, result).model_dump(mode="json")
            return [sse({"type": "end", **final})]

        return StreamingResponse(
            stream_turn(call, turn, first, lambda piece: sse({"type": "delta", "content": piece}), last),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    def answer_body(answer_id: str, result: AnswerResult) -> schemas.AnswerResponse:
        return schemas.AnswerResponse(
            id=answer_id,
            author=result.author,
            question=result.question,
            answer=result.answer,
            finish_reason=result.finish_reason,
            citations=result.citations,
            model=result.model,
            model_version=result.model_version,
            index_version=result.index_version,
            usage=schemas.Usage(**result.usage.model_dump()),
            timings_ms={k: round(v, 3) for k, v in result.timings_ms.items()},
        )

    @app.post(ROUTE_SEARCH)
    async def search(author: str, request: Request) -> Response:
        call = _Call(route=ROUTE_SEARCH, author=author)

        async def work() -> Response:
            call.key_id, record_ = authenticate(request)
            rate_limit(request, call.key_id)
            check_scope(record_, author)
            service.check_author(author)
            body = await read_body(request, schemas.SearchRequest)
            call.question = body.question
            filters = SearchFilters.model_validate(body.filters.model_dump()) if body.filters else None
            result = await service.search(author, body.question, k=body.k, filters=filters)
            call.take_retrieval(result)
            response = schemas.SearchResponse(
                author=author,
                question=body.question,
                index_version=result.index_version,
                queries=result.queries,
                filters=result.filters,
                results=result.chunks,
                timings_ms={k: round(v, 3) for k, v in result.timings_ms.items()},
            )
            return JSONResponse(response.model_dump(mode="json"))

        return await guarded(call, work)

    return _with_metrics(app, metrics)


def _with_metrics(app: FastAPI, metrics: ServiceMetrics) -> FastAPI:
    app.add_middleware(_RouteMetrics, metrics=metrics)  # pyright: ignore[reportArgumentType]
    return app
