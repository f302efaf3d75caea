"""The service behind the HTTP API: which model and index answer a request, and the answer.

`TwinService` owns the one `Generator` (base model + every author's adapter), the retrieval
pipeline, and per author the production model version and the loaded index snapshot. It knows
nothing about HTTP: the app maps its typed errors (`ServiceError` subclasses) to status codes.

Hot swap: a request resolves its author's model and index ONCE, at its start, and keeps those
objects to its end (a `Turn` holds them). `refresh()` loads a new production adapter or index
version beside the old one and then swaps a reference, so a request never sees half of a swap
and never loses the objects it started with. An adapter that is no longer production is unloaded
only when the last request using it has finished (reference counts per adapter).

Everything read from the registry goes through `ArtifactStore` and `twin_assets.training.registry`
(aliases, cards, `model_dir`), so the same code serves from a local directory or from S3.
"""

from __future__ import annotations

import asyncio
import logging
import re
import threading
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from pydantic import BaseModel, Field

from twin_assets.domain.generation import Message
from twin_assets.domain.models import ModelKind
from twin_assets.domain.stores import ArtifactStore
from twin_assets.serving.types import (
    Citation,
    GenerationHandle,
    GenerationOutput,
    GenerationParams,
    Generator,
    RetrievalResult,
    SearchFilters,
)
from twin_assets.training import registry

log = logging.getLogger(__name__)

AUTHOR_PATTERN = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
VERSION_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
MIN_PROMPT_TOKENS = 16
"""Below this many tokens left for the prompt there is no room for a question: refused."""


# -- errors the API maps to status codes --------------------------------------------------------


class ServiceError(Exception):
    """A request the service cannot serve; `status`, `code` and `param` go into the error body."""

    status = 400
    code = "invalid_request"
    type = "invalid_request_error"

    def __init__(self, message: str, *, param: str | None = None):
        super().__init__(message)
        self.message = message
        self.param = param


class ModelNotFound(ServiceError):
    status = 404
    code = "model_not_found"


class AuthorNotFound(ServiceError):
    status = 404
    code = "author_not_found"


class IndexNotFound(ServiceError):
    status = 404
    code = "index_not_found"


class InvalidRequest(ServiceError):
    status = 400
    code = "invalid_request"


class ContextTooLong(ServiceError):
    status = 400
    code = "context_length_exceeded"


class ServiceUnavailable(ServiceError):
    """The request is fine but a model or index could not be loaded now (retry later)."""

    status = 503
    code = "unavailable"
    type = "server_error"


# -- what the service is built from ------------------------------------------------------------


class AuthorIndexLike(Protocol):
    """A loaded, read-only index snapshot of one author (`snapshot.AuthorIndex`)."""

    @property
    def version(self) -> str: ...

    @property
    def size(self) -> int: ...

    @property
    def author_id(self) -> str: ...


class Retriever(Protocol):
    """The RAG pipeline's retrieval (`rag.RagPipeline`)."""

    def retrieve(
        self, index: Any, question: str, *, k: int | None = None, filters: SearchFilters | None = None
    ) -> RetrievalResult: ...


class IndexSource(Protocol):
    """Where index snapshots come from: the newest published version, and loading one."""

    def latest_version(self, author: str) -> str | None: ...

    def load(self, author: str, version: str) -> AuthorIndexLike: ...


class MessageBuilder(Protocol):
    """`prompting.build_rag_messages`: the prompt with retrieved text quoted as data."""

    def __call__(
        self,
        question: str,
        history: Sequence[Message],
        chunks: Sequence[Any],
        *,
        system_prompt: str,
        count_tokens: Callable[[str], int],
        max_prompt_tokens: int,
    ) -> tuple[list[Message], list[Citation]]: ...


class SnapshotIndexSource:
    """Index snapshots published by the pipeline into the artifact store (`serving.snapshot`)."""

    def __init__(self, artifacts: ArtifactStore):
        self.artifacts = artifacts

    def latest_version(self, author: str) -> str | None:
        from twin_assets.serving.snapshot import latest_index_version

        return latest_index_version(self.artifacts, author)

    def load(self, author: str, version: str) -> AuthorIndexLike:
        from twin_assets.serving.snapshot import load_index

        return load_index(self.artifacts, author, version)


def default_message_builder() -> MessageBuilder:
    from twin_assets.serving.prompting import build_rag_messages

    return build_rag_messages  # pyright: ignore[reportReturnType] (same call shape)


# -- request and result models -----------------------------------------------------------------


class RagOptions(BaseModel):
    """How a request wants retrieval: `k` chunks (None: the service default), explicit filters
    (None: whatever the self-query extracts from the question)."""

    k: int | None = Field(default=None, ge=1)
    filters: SearchFilters | None = None


class Usage(BaseModel):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0


class AnswerResult(BaseModel):
    author: str
    model: str  # as requested: "<author>" or "<author>@<version>"
    model_version: str
    model_kind: ModelKind
    index_version: str | None = None
    question: str
    answer: str
    finish_reason: str
    citations: list[Citation] = Field(default_factory=list)
    retrieval: RetrievalResult | None = None
    usage: Usage = Field(default_factory=Usage)
    timings_ms: dict[str, float] = Field(default_factory=dict)
    error: str | None = None


class ModelInfo(BaseModel):
    """One entry of /v1/models."""

    id: str
    author: str
    version: str
    kind: ModelKind
    created: int = 0
    production: bool = True


@dataclass(frozen=True)
class ModelRef:
    """A resolved, registered model version."""

    author: str
    kind: ModelKind
    version: str

    @property
    def adapter(self) -> str:
        return f"{self.author}@{self.version}"


@dataclass
class _AuthorState:
    production: ModelRef | None = None
    index: AuthorIndexLike | None = None
    checked: bool = False  # production alias read at least once
    lock: threading.Lock = field(default_factory=threading.Lock)


class Turn:
    """One generation in flight, with everything it started with (model, index, citations).

    Iterate `deltas()` for streaming, then `await finish()`; or just `await finish()`. Always
    ends in `finish()` or `cancel()` (both idempotent), which release the adapter reference.
    """

    def __init__(
        self,
        *,
        service: TwinService,
        author: str,
        model: str,
        ref: ModelRef,
        index_version: str | None,
        question: str,
        retrieval: RetrievalResult | None,
        citations: list[Citation],
        handle: GenerationHandle,
        timings_ms: dict[str, float],
        started: float,
    ):
        self.service = service
        self.author = author
        self.model = model
        self.ref = ref
        self.index_version = index_version
        self.question = question
        self.retrieval = retrieval
        self.citations = citations
        self.handle = handle
        self.timings_ms = timings_ms
        self._started = started
        self._generation_started = time.perf_counter()
        self._released = False
        self._result: AnswerResult | None = None

    async def deltas(self) -> AsyncIterator[str]:
        async for delta in self.handle:
            yield delta

    async def finish(self) -> AnswerResult:
        if self._result is not None:
            return self._result
        try:
            out: GenerationOutput = await self.handle.result()
        finally:
            self._release()
        timings = dict(self.timings_ms)
        timings["generation"] = (time.perf_counter() - self._generation_started) * 1000
        timings["total"] = (time.perf_counter() - self._started) * 1000
        self._result = AnswerResult(
            author=self.author,
            model=self.model,
            model_version=self.ref.version,
            model_kind=self.ref.kind,
            index_version=self.index_version,
            question=self.question,
            answer=out.text,
            finish_reason=out.finish_reason,
            citations=self.citations,
            retrieval=self.retrieval,
            usage=Usage(
                prompt_tokens=out.prompt_tokens,
                completion_tokens=out.completion_tokens,
                total_tokens=out.prompt_tokens + out.completion_tokens,
            ),
            timings_ms=timings,
            error=out.error,
        )
        return self._result

    def cancel(self) -> None:
        try:
            self.handle.cancel()
        finally:
            self._release()

    def _release(self) -> None:
        if not self._released:
            self._released = True
            self.service._release(self.ref.adapter)


# -- the service ---------------------------------------------------------------------------------


class TwinService:
    """Models, indexes and the answer pipeline of every author one process serves."""

    def __init__(
        self,
        artifacts: ArtifactStore,
        generator: Generator,
        retriever: Retriever,
        *,
        authors: Sequence[str] | Callable[[], Sequence[str]],
        index_source: IndexSource | None = None,
        build_messages: MessageBuilder | None = None,
        system_prompt: str = "You are the digital twin of {author}. Answer in their voice, from their own writing.",
        default_k: int = 5,
        max_k: int = 20,
        context_limit: int = 0,
        adapter_idle_s: float = 900.0,
    ):
        self.artifacts = artifacts
        self.generator = generator
        self.retriever = retriever
        self._authors_source = authors
        self.index_source = index_source if index_source is not None else SnapshotIndexSource(artifacts)
        self._build_messages = build_messages
        self.system_prompt = system_prompt
        self.default_k = default_k
        self.max_k = max_k
        self.context_limit = context_limit
        self.adapter_idle_s = adapter_idle_s
        self._states: dict[str, _AuthorState] = {}
        self._states_lock = threading.Lock()
        self._adapter_lock = threading.Lock()  # guards the four dicts/sets below
        self._loaded: set[str] = set()
        self._inflight: dict[str, int] = {}
        self._retired: set[str] = set()
        self._last_used: dict[str, float] = {}
        self._adapter_load_locks: dict[str, threading.Lock] = {}
        self._served: list[str] = []
        self._refresh_task: asyncio.Task | None = None
        self._warmed = False
        self.swaps: dict[str, int] = {"model": 0, "index": 0}
        self.on_swap: Callable[[str], None] | None = None  # metrics hook: called with "model" | "index"
        self._closed = False

    # -- authors and names ---------------------------------------------------------------------
    def served_authors(self) -> list[str]:
        source = self._authors_source
        try:
            authors = list(source() if callable(source) else source)
        except Exception as exc:  # the registry could not be read: keep the last good list
            log.warning(
                "author list unavailable (%s); keeping %d authors", type(exc).__name__, len(self._served)
            )
            return list(self._served)
        self._served = sorted({a for a in authors if AUTHOR_PATTERN.fullmatch(a)})
        return list(self._served)

    def _state(self, author: str) -> _AuthorState:
        with self._states_lock:
            state = self._states.get(author)
            if state is None:
                state = self._states[author] = _AuthorState()
            return state

    def check_author(self, author: str) -> str:
        if not isinstance(author, str) or not AUTHOR_PATTERN.fullmatch(author):
            raise AuthorNotFound(f"no twin named {author!r}", param="author")
        if author not in (self._served or self.served_authors()):
            raise AuthorNotFound(f"no twin named {author!r} is served here", param="author")
        return author

    @staticmethod
    def author_of(model: str) -> str:
        """The author a model name refers to (for key scopes, before anything is loaded)."""
        return model.split("@", 1)[0] if isinstance(model, str) else ""

    def resolve(self, model: str) -> ModelRef:
        """`<author>`: its production version (dpo before sft); `<author>@<version>`: that
        registered version. Unknown names raise `ModelNotFound`/`AuthorNotFound` (404)."""
        if not isinstance(model, str) or not model.strip():
            raise ModelNotFound("model must name a twin: '<author>' or '<author>@<version>'", param="model")
        author, _, version = model.strip().partition("@")
        self.check_author(author)
        if not version:
            ref = self._production(author)
            if ref is None:
                raise ModelNotFound(
                    f"twin {author!r} has no production model yet (no 'production' alias for dpo or sft)",
                    param="model",
                )
            return ref
        if not VERSION_PATTERN.fullmatch(version):
            raise ModelNotFound(f"no version {version!r} of twin {author!r}", param="model")
        kinds: tuple[ModelKind, ...] = ("dpo", "sft")
        for kind in kinds:
            try:
                card = registry.registered_card(self.artifacts, author, kind, version)
            except Exception as exc:
                raise ServiceUnavailable(f"model registry unavailable ({type(exc).__name__})") from exc
            if card is not None:
                return ModelRef(author, kind, version)
        raise ModelNotFound(f"no registered version {version!r} of twin {author!r}", param="model")

    def _production(self, author: str) -> ModelRef | None:
        state = self._state(author)
        if not state.checked:
            with state.lock:
                if not state.checked:
                    found = registry.production_version(self.artifacts, author)
                    state.production = ModelRef(author, found[0], found[1]) if found else None
                    state.checked = True
        return state.production

    # -- loading -------------------------------------------------------------------------------
    def _ensure_adapter(self, ref: ModelRef) -> None:
        """Load the version's adapter into the generator once (blocking: call from a thread)."""
        name = ref.adapter
        with self._adapter_lock:
            if name in self._loaded:
                self._retired.discard(name)
                return
            lock = self._adapter_load_locks.setdefault(name, threading.Lock())
        with lock:
            with self._adapter_lock:
                if name in self._loaded:
                    return
            try:
                path = registry.model_dir(self.artifacts, ref.author, ref.kind, ref.version)
                self.generator.load_adapter(name, path)
            except Exception as exc:
                log.exception("loading adapter %s failed", name)
                raise ServiceUnavailable(
                    f"model {name} could not be loaded ({type(exc).__name__}: {exc})"
                ) from exc
            with self._adapter_lock:
                self._loaded.add(name)
                self._retired.discard(name)
                self._last_used[name] = time.monotonic()

    def _ensure_index(self, author: str) -> AuthorIndexLike:
        state = self._state(author)
        index = state.index
        if index is not None:
            return index
        with state.lock:
            if state.index is not None:
                return state.index
            try:
                version = self.index_source.latest_version(author)
            except Exception as exc:
                raise ServiceUnavailable(f"index store unavailable ({type(exc).__name__})") from exc
            if version is None:
                raise IndexNotFound(f"no index has been published for twin {author!r} yet", param="author")
            try:
                state.index = self.index_source.load(author, version)
            except Exception as exc:
                log.exception("loading index %s@%s failed", author, version)
                raise ServiceUnavailable(
                    f"index {version} of {author!r} could not be loaded ({type(exc).__name__})"
                ) from exc
            return state.index

    def _acquire(self, ref: ModelRef) -> None:
        self._ensure_adapter(ref)
        with self._adapter_lock:
            self._inflight[ref.adapter] = self._inflight.get(ref.adapter, 0) + 1
            self._last_used[ref.adapter] = time.monotonic()

    def _release(self, adapter: str) -> None:
        with self._adapter_lock:
            left = self._inflight.get(adapter, 0) - 1
            if left > 0:
                self._inflight[adapter] = left
                return
            self._inflight.pop(adapter, None)
            self._last_used[adapter] = time.monotonic()
            unload = adapter in self._retired
            if unload:
                self._retired.discard(adapter)
                self._loaded.discard(adapter)
        if unload:
            self._unload(adapter)

    def _unload(self, adapter: str) -> None:
        try:
            self.generator.unload_adapter(adapter)
        except Exception:
            log.exception("unloading adapter %s failed", adapter)

    def _retire(self, adapter: str) -> None:
        """Unload `adapter` once no request uses it (now, if none does)."""
        with self._adapter_lock:
            if adapter not in self._loaded:
                return
            if self._inflight.get(adapter, 0) > 0:
                self._retired.add(adapter)
                return
            self._loaded.discard(adapter)
        self._unload(adapter)

    def loaded_adapters(self) -> list[str]:
        with self._adapter_lock:
            return sorted(self._loaded)

    def index_version(self, author: str) -> str | None:
        index = self._state(author).index
        return index.version if index is not None else None

    # -- refresh (hot swap) ----------------------------------------------------------------------
    def refresh(self) -> dict[str, list[str]]:
        """Look for new production models and index versions; load and swap them in. Blocking
        (run it in a thread). A failure for one author is logged and keeps its old objects."""
        swapped: dict[str, list[str]] = {"model": [], "index": []}
        for author in self.served_authors():
            state = self._state(author)
            try:
                found = registry.production_version(self.artifacts, author)
                new = ModelRef(author, found[0], found[1]) if found else None
                old = state.production
                if new != old:
                    if new is not None:
                        self._ensure_adapter(new)  # loaded before it becomes visible
                    state.production, state.checked = new, True
                    if old is not None and old.adapter != (new.adapter if new else None):
                        self._retire(old.adapter)
                    if old is not None:  # a first load is not a swap
                        swapped["model"].append(f"{author}@{new.version if new else '-'}")
                elif new is not None and state.checked:
                    self._ensure_adapter(new)
                state.checked = True
            except Exception:
                log.exception("refreshing the model of %s failed; keeping %s", author, state.production)
            try:
                latest = self.index_source.latest_version(author)
                current = state.index
                if latest is not None and (current is None or current.version != latest):
                    loaded = self.index_source.load(author, latest)
                    with state.lock:
                        state.index = loaded
                    if current is not None:
                        swapped["index"].append(f"{author}@{latest}")
            except Exception:
                log.exception("refreshing the index of %s failed; keeping the loaded one", author)
        self._unload_idle()
        for kind, items in swapped.items():
            self.swaps[kind] += len(items)
            if self.on_swap is not None:
                for _ in items:
                    self.on_swap(kind)
        if any(swapped.values()):
            log.info("hot swap: %s", swapped)
        return swapped

    def _unload_idle(self) -> None:
        production = {s.production.adapter for s in list(self._states.values()) if s.production}
        now = time.monotonic()
        with self._adapter_lock:
            idle = [
                a
                for a in self._loaded
                if a not in production
                and self._inflight.get(a, 0) == 0
                and now - self._last_used.get(a, now) >= self.adapter_idle_s
            ]
        for adapter in idle:
            self._retire(adapter)

    def warm_up(self) -> None:
        """Load every served author's production model and index (blocking). Readiness waits
        for this; a twin that cannot be loaded is logged and stays lazy."""
        self.refresh()
        self._warmed = True

    async def start(self, refresh_interval_s: float) -> None:
        """Warm up in the background, then poll for new versions every `refresh_interval_s`."""
        self._refresh_task = asyncio.create_task(self._refresh_loop(refresh_interval_s))

    async def _refresh_loop(self, interval: float) -> None:
        try:
            await asyncio.to_thread(self.warm_up)
        except Exception:
            log.exception("warm-up failed")
            self._warmed = True
        if interval <= 0:
            return
        while not self._closed:
            await asyncio.sleep(interval)
            try:
                await asyncio.to_thread(self.refresh)
            except Exception:
                log.exception("refresh failed")

    async def stop(self) -> None:
        self._closed = True
        task, self._refresh_task = self._refresh_task, None
        if task is not None:
            task.cancel()
            try:
                await task
            except (asyncio.CancelledError, Exception):
                pass

    def close(self) -> None:
        self._closed = True
        self.generator.close()

    # -- readiness and listing -------------------------------------------------------------------
    def readiness(self) -> dict[str, Any]:
        generator_ready = bool(getattr(self.generator, "ready", True))
        servable = [
            author
            for author in self._served
            if (s := self._states.get(author)) is not None
            and s.production is not None
            and s.production.adapter in self._loaded
            and s.index is not None
        ]
        return {
            # Ready once the warm-up has loaded every production twin it could: a fresh system
            # with no twin in production yet is ready too (it answers 404 for unknown twins),
            # or its first deployment could never start the service it deploys to.
            "ready": self._warmed and generator_ready,
            "warmed_up": self._warmed,
            "generator": self.generator.name,
            "generator_ready": generator_ready,
            "authors": servable,
        }

    def models(self) -> list[ModelInfo]:
        out: list[ModelInfo] = []
        for author in self.served_authors():
            ref = self._production(author)
            if ref is None:
                continue
            created = 0
            try:
                card = registry.registered_card(self.artifacts, author, ref.kind, ref.version)
                if card is not None:
                    from datetime import datetime

                    created = int(datetime.fromisoformat(card.created_at).timestamp())
            except Exception:
                pass
            out.append(
                ModelInfo(id=author, author=author, version=ref.version, kind=ref.kind, created=created)
            )
            out.append(
                ModelInfo(id=ref.adapter, author=author, version=ref.version, kind=ref.kind, created=created)
            )
        return out

    # -- the pipeline ---------------------------------------------------------------------------
    def _window(self, max_tokens: int) -> int:
        window = self.generator.context_window
        if self.context_limit > 0:
            window = min(window, self.context_limit) if window > 0 else self.context_limit
        room = window - max_tokens
        if room < MIN_PROMPT_TOKENS:
            raise ContextTooLong(
                f"max_tokens={max_tokens} leaves {max(room, 0)} of the {window}-token context for the "
                "prompt; ask for fewer tokens",
                param="max_tokens",
            )
        return room

    def _messages_builder(self) -> MessageBuilder:
        if self._build_messages is None:
            self._build_messages = default_message_builder()
        return self._build_messages

    def _retrieve(
        self, author: str, index: AuthorIndexLike, question: str, rag: RagOptions
    ) -> RetrievalResult:
        k = rag.k or self.default_k
        if k > self.max_k:
            raise InvalidRequest(f"k={k}; at most {self.max_k}", param="k")
        try:
            result = self.retriever.retrieve(index, question, k=k, filters=rag.filters)
        except ValueError as exc:
            # the question and k are checked before: what is left is the index itself (e.g. it was
            # embedded with another model than the service's), not the client's mistake
            log.error("retrieval over %s@%s failed: %s", author, index.version, exc)
            raise ServiceUnavailable(f"retrieval failed: {exc}") from exc
        leaked = [c.chunk_id for c in result.chunks if c.author_id != author]
        if leaked:  # isolation is the one thing retrieval may never get wrong: refuse, loudly
            log.error("retrieval for %s returned chunks of other authors: %s", author, leaked[:5])
            raise ServiceUnavailable("retrieval returned another author's text; refused")
        if not result.index_version:
            result.index_version = index.version
        return result

    def _check_prompt(self, messages: Sequence[Message], room: int) -> int:
        tokens = self.generator.count_tokens(self.generator.render_prompt(messages))
        if tokens > room:
            raise ContextTooLong(
                f"the prompt is {tokens} tokens; with max_tokens this model leaves room for {room}",
                param="messages",
            )
        return tokens

    def _prepare(
        self,
        ref: ModelRef,
        question: str,
        history: Sequence[Message],
        system_prompt: str,
        params: GenerationParams,
        rag: RagOptions | None,
    ) -> tuple[list[Message], RetrievalResult | None, list[Citation], str | None]:
        room = self._window(params.max_tokens)
        if rag is None:
            messages: list[Message] = [{"role": "system", "content": system_prompt}] if system_prompt else []
            messages += [*history, {"role": "user", "content": question}]
            self._check_prompt(messages, room)
            return messages, None, [], None
        index = self._ensure_index(ref.author)
        retrieval = self._retrieve(ref.author, index, question, rag)
        try:
            messages, citations = self._messages_builder()(
                question,
                list(history),
                retrieval.chunks,
                system_prompt=system_prompt,
                count_tokens=self.generator.count_tokens,
                max_prompt_tokens=room,
            )
        except ValueError as exc:  # the question (with the system prompt) alone is too long
            raise ContextTooLong(f"{exc} (room for {room} prompt tokens)", param="messages") from exc
        self._check_prompt(messages, room)
        return messages, retrieval, citations, index.version

    async def start_turn(
        self,
        model: str,
        question: str,
        history: Sequence[Message],
        params: GenerationParams,
        *,
        rag: RagOptions | None,
        system_prompt: str | None = None,
    ) -> Turn:
        """Resolve the model, retrieve, build the prompt and submit the generation."""
        started = time.perf_counter()
        if not question.strip():
            raise InvalidRequest("the question is empty", param="messages")
        ref = self.resolve(model)
        prompt = (
            system_prompt if system_prompt is not None else self.system_prompt.replace("{author}", ref.author)
        )
        await asyncio.to_thread(self._acquire, ref)
        try:
            messages, retrieval, citations, index_version = await asyncio.to_thread(
                self._prepare, ref, question, history, prompt, params, rag
            )
            timings = dict(retrieval.timings_ms) if retrieval else {}
            timings["prompt"] = (time.perf_counter() - started) * 1000 - sum(timings.values())
            try:
                handle = self.generator.submit(ref.adapter, messages, params)
            except ValueError as exc:  # the prompt checks above leave only the context window
                raise ContextTooLong(str(exc), param="messages") from exc
            except RuntimeError as exc:
                raise ServiceUnavailable(f"the generator refused the request ({exc})") from exc
        except BaseException:
            self._release(ref.adapter)
            raise
        return Turn(
            service=self,
            author=ref.author,
            model=model,
            ref=ref,
            index_version=index_version,
            question=question,
            retrieval=retrieval,
            citations=citations,
            handle=handle,
            timings_ms=timings,
            started=started,
        )

    async def start_answer(
        self,
        author: str,
        question: str,
        history: Sequence[Message],
        params: GenerationParams,
        *,
        rag: RagOptions | None = None,
        version: str | None = None,
    ) -> Turn:
        self.check_author(author)
        model = f"{author}@{version}" if version else author
        return await self.start_turn(model, question, history, params, rag=rag or RagOptions())

    async def answer(
        self,
        author: str,
        question: str,
        history: Sequence[Message],
        params: GenerationParams,
        *,
        rag: RagOptions | None = None,
        version: str | None = None,
    ) -> AnswerResult:
        turn = await self.start_answer(author, question, history, params, rag=rag, version=version)
        try:
            return await turn.finish()
        except BaseException:
            turn.cancel()
            raise

    async def start_chat(
        self, model: str, messages: Sequence[Message], params: GenerationParams, *, rag: RagOptions | None
    ) -> Turn:
        """An OpenAI-style conversation: the last message is the user's turn; system messages
        (if any) replace the twin's default system prompt."""
        if not messages:
            raise InvalidRequest("messages must hold at least one message", param="messages")
        last = messages[-1]
        if last.get("role") != "user":
            raise InvalidRequest("the last message must be the user's (role 'user')", param="messages")
        system = [m["content"] for m in messages if m.get("role") == "system"]
        history = [m for m in messages[:-1] if m.get("role") != "system"]
        return await self.start_turn(
            model,
            last.get("content", ""),
            history,
            params,
            rag=rag,
            system_prompt="\n\n".join(system) if system else None,
        )

    async def chat(
        self, model: str, messages: Sequence[Message], params: GenerationParams, *, rag: RagOptions | None
    ) -> AnswerResult:
        turn = await self.start_chat(model, messages, params, rag=rag)
        try:
            return await turn.finish()
        except BaseException:
            turn.cancel()
            raise

    async def search(
        self, author: str, question: str, *, k: int | None = None, filters: SearchFilters | None = None
    ) -> RetrievalResult:
        self.check_author(author)
        if not question.strip():
            raise InvalidRequest("the question is empty", param="question")
        started = time.perf_counter()

        def run() -> RetrievalResult:
            index = self._ensure_index(author)
            return self._retrieve(author, index, question, RagOptions(k=k, filters=filters))

        result = await asyncio.to_thread(run)
        result.timings_ms.setdefault("total", (time.perf_counter() - started) * 1000)
        return result
