"""In-process generation: one base model, every author's LoRA adapter, one dynamic batcher.

WHY one worker thread: the model, its adapters and the KV cache are not safe to touch from
several threads, and CPU/GPU throughput comes from batching, not from threads. Requests from any
thread (FastAPI's event loop, a benchmark's threads) are queued; the worker takes up to
`max_batch_size` of them (waiting up to `batch_wait_ms` after the first for company) and runs ONE
batched `generate` in which every row names its own adapter (peft's per-row `adapter_names`,
"__base__" for the base model; the output of a row equals that adapter's output alone) and its
own sampling parameters and limits (`sampling.RowSampler`, `sampling.RowStopper`).

Adapters are loaded and deleted by the worker between batches, so a batch in flight is never
disturbed; a request is bound to the adapter version it was submitted against, and an adapter
that is unloaded or replaced is deleted only once no queued or running request uses it.

Dynamic batching of what is queued when a batch starts; rows that finish early are padded until
the batch ends (no continuous batching).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import queue
import re
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field

from twin_assets.domain.generation import Message

if TYPE_CHECKING:
    from twin_assets.serving.sampling import RowText
from twin_assets.serving.types import FinishReason, GenerationOutput, GenerationParams

log = logging.getLogger(__name__)

BASE_ADAPTER = "__base__"  # peft's name for "no adapter" in per-row adapter_names


class GenerationStream:
    """A submitted request as its caller sees it (implements `types.GenerationHandle`).

    Producers (the worker thread, the remote client's loop) call `push`/`finish` from any
    thread; consumers iterate it or await `result()` on any asyncio loop (each waiter is woken
    with `loop.call_soon_threadsafe`, so the producer never blocks on a consumer), or call
    `wait()` from a plain thread. The final text is the concatenation of the pushed deltas.
    A consumer waiting past the request's deadline triggers the timeout itself, so a request
    still queued behind a long batch times out on time.
    """

    def __init__(
        self,
        model: str,
        prompt_tokens: int,
        deadline: float,
        on_abort: Callable[[FinishReason], None] | None = None,
    ):
        self.model = model
        self.prompt_tokens = prompt_tokens
        self.deadline = deadline  # time.monotonic() value
        self.batch_size: int | None = None  # size of the batch this request ran in (local engine)
        self.token_ids: list[int] = []  # the generated ids (end-of-turn excluded), once finished
        self._on_abort = on_abort
        self._lock = threading.Lock()
        self._chunks: list[str] = []
        self._output: GenerationOutput | None = None
        self._done = threading.Event()
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []

    # -- producer side ------------------------------------------------------------------------

    def push(self, delta: str) -> None:
        if not delta:
            return
        with self._lock:
            if self._output is not None:
                return
            self._chunks.append(delta)
            waiters, self._waiters = self._waiters, []
        _wake(waiters)

    def finish(
        self,
        finish_reason: FinishReason,
        completion_tokens: int,
        error: str | None = None,
        prompt_tokens: int | None = None,
    ) -> bool:
        """Resolve the request once (later calls are ignored); returns whether this call did."""
        with self._lock:
            if self._output is not None:
                return False
            self._output = GenerationOutput(
                text="".join(self._chunks),
                prompt_tokens=self.prompt_tokens if prompt_tokens is None else prompt_tokens,
                completion_tokens=completion_tokens,
                finish_reason=finish_reason,
                model=self.model,
                error=error,
            )
            waiters, self._waiters = self._waiters, []
            self._done.set()
        _wake(waiters)
        return True

    # -- consumer side ------------------------------------------------------------------------

    @property
    def done(self) -> bool:
        return self._done.is_set()

    @property
    def text(self) -> str:
        with self._lock:
            return "".join(self._chunks)

    def cancel(self) -> None:
        """Stop generating (e.g. the HTTP client went away): a queued request never runs, a
        running row stops at the next step and its result is the text so far, "cancelled"."""
        if not self._done.is_set() and self._on_abort is not None:
            self._on_abort("cancelled")

    def __aiter__(self) -> AsyncIterator[str]:
        return self._deltas()

    async def _deltas(self) -> AsyncIterator[str]:
        seen = 0
        while True:
            await self._wait_until(lambda n=seen: len(self._chunks) > n or self._output is not None)
            with self._lock:
                new = self._chunks[seen:]
                seen = len(self._chunks)
                finished = self._output is not None
            for delta in new:
                yield delta
            if finished:
                return

    async def result(self) -> GenerationOutput:
        await self._wait_until(lambda: self._output is not None)
        assert self._output is not None
        return self._output

    def wait(self, timeout: float | None = None) -> GenerationOutput:
        """Blocking `result()` for threads without an event loop."""
        limit = None if timeout is None else time.monotonic() + timeout
        while not self._done.is_set():
            now = time.monotonic()
            if limit is not None and now >= limit:
                raise TimeoutError("the request has not finished")
            if now >= self.deadline:
                self._expire()  # the producer resolves it at its next step
                step = 0.05
            else:
                step = self.deadline - now
            if limit is not None:
                step = min(step, limit - now)
            self._done.wait(step)
        assert self._output is not None
        return self._output

    async def _wait_until(self, ready: Callable[[], bool]) -> None:
        loop = asyncio.get_running_loop()
        while True:
            with self._lock:
                if ready():
                    return
                future: asyncio.Future[None] = loop.create_future()
                self._waiters.append((loop, future))
            remaining = self.deadline - time.monotonic()
            if remaining <= 0:
                self._expire()
                remaining = 0.05  # the producer resolves the request promptly now
            try:
                await asyncio.wait_for(future, timeout=remaining + 0.05)
            except TimeoutError:
                with self._lock:
                    if (loop, future) in self._waiters:
                        self._waiters.remove((loop, future))

    def _expire(self) -> None:
        if not self._done.is_set() and self._on_abort is not None:
            self._on_abort("timeout")


def _wake(waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]]) -> None:
    for loop, future in waiters:
        try:
            loop.call_soon_threadsafe(_resolve, future)
        except RuntimeError:  # that loop is closed: nobody is waiting any more
            pass


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class GeneratorStats(BaseModel):
    """Counters since start (for /metrics): how much batching actually happens, and outcomes."""

    requests: int = 0  # accepted by submit
    finished: int = 0
    batches: int = 0
    batch_sizes: dict[int, int] = Field(default_factory=dict)  # batch size -> number of batches
    prompt_tokens: int = 0
    completion_tokens: int = 0
    finish_reasons: dict[str, int] = Field(default_factory=dict)
    failed_batches: int = 0
    queue_depth: int = 0  # waiting now
    running: int = 0  # rows in the batch running now
    adapters: int = 0
    generate_seconds: float = 0.0  # wall time inside generate


@dataclass
class _Request:
    adapter: str | None  # public name, None: the base model
    peft_name: str  # bound at submit: the adapter version this request runs with
    prompt_ids: list[int]
    params: GenerationParams
    handle: GenerationStream
    state: str = "queued"  # queued -> running -> done
    abort_reason: FinishReason | None = None
    abort_error: str | None = None
    completed: bool = False


@dataclass
class _Control:
    """An adapter operation the worker runs between batches."""

    kind: str  # load | reap
    name: str = ""
    path: Path | None = None
    done: threading.Event = field(default_factory=threading.Event)
    error: BaseException | None = None


_CLOSE = object()


def _peft_safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]", "_", name)[:48]


class LocalGenerator:
    """The base model loaded once, LoRA adapters by name, a dynamic batcher (see module doc).

    `submit` validates at once (unknown adapter, prompt too long for the context window:
    `ValueError`; closed: `RuntimeError`) and returns a `GenerationStream`. `load_adapter`
    blocks until the worker has loaded it (call it off the event loop, e.g. `asyncio.to_thread`)
    and raises what loading raised; `unload_adapter` returns at once.
    """

    def __init__(
        self,
        base_dir: str | Path,
        *,
        device: str = "cpu",
        max_batch_size: int = 16,
        batch_wait_ms: float = 5.0,
        chat_template: str | None = None,
        dtype: str = "float32",
    ):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from twin_assets.training.base_model import PROJECT_CHAT_TEMPLATE

        if max_batch_size < 1:
            raise ValueError("max_batch_size must be >= 1")
        base = Path(base_dir)
        if not (base / "config.json").is_file():
            raise ValueError(f"{base} is not a model directory (no config.json)")
        torch_dtype = getattr(torch, dtype, None) if dtype != "auto" else "auto"
        if torch_dtype is None or not (torch_dtype == "auto" or isinstance(torch_dtype, torch.dtype)):
            raise ValueError(f"unknown dtype {dtype!r} (float32, bfloat16, float16, auto)")
        self.device = device
        self.max_batch_size = max_batch_size
        self.batch_wait_s = max(0.0, batch_wait_ms / 1000.0)

        tokenizer = AutoTokenizer.from_pretrained(str(base))
        template = tokenizer.chat_template
        if isinstance(template, dict):
            template = template.get("default")
        tokenizer.chat_template = chat_template or template or PROJECT_CHAT_TEMPLATE
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        self.tokenizer: Any = tokenizer
        self._tok_lock = threading.Lock()  # the Rust tokenizer is not re-entrant across threads

        model: Any = AutoModelForCausalLM.from_pretrained(str(base), dtype=torch_dtype)
        model = model.to(device)
        model.eval()
        self._model: Any = model
        self._is_peft = False
        config = model.config
        self._context_window = int(
            getattr(config, "max_position_embeddings", 0) or getattr(tokenizer, "model_max_length", 2048)
        )
        self._name = base.name
        eos: set[int] = set()
        for candidate in (tokenizer.eos_token_id, getattr(model.generation_config, "eos_token_id", None)):
            if isinstance(candidate, int):
                eos.add(candidate)
            elif isinstance(candidate, list):
                eos.update(i for i in candidate if isinstance(i, int))
        vocab = tokenizer.get_vocab()
        for token in ("<|im_end|>", "<|eot_id|>", "<end_of_turn>"):  # end-of-turn tokens
            if token in vocab:
                eos.add(int(vocab[token]))
        self.eos_ids = frozenset(eos)
        self.pad_id = int(tokenizer.pad_token_id)

        self._lock = threading.Lock()
        self._adapters: dict[str, str] = {}  # public name -> peft name (submit-able)
        self._loaded: set[str] = set()  # peft names in the model
        self._refs: Counter[str] = Counter()  # peft name -> queued or running requests
        self._counter = itertools.count(1)
        self._queue: queue.Queue[Any] = queue.Queue()
        self._closed = False
        self._running: list[_Request] = []
        self._stats = GeneratorStats()
        self._worker = threading.Thread(target=self._serve, name="twin-generator", daemon=True)
        self._worker.start()

    # -- Generator protocol ------------------------------------------------------------------

    @property
    def name(self) -> str:
        return self._name

    @property
    def context_window(self) -> int:
        return self._context_window

    def count_tokens(self, text: str) -> int:
        return len(self._encode(text))

    def render_prompt(self, messages: Sequence[Message]) -> str:
        if not messages:
            raise ValueError("no messages")
        for message in messages:
            if not isinstance(message.get("content"), str) or not message.get("role"):
                raise ValueError("every message needs a role and a string content")
        return self.tokenizer.apply_chat_template(
            [dict(m) for m in messages], tokenize=False, add_generation_prompt=True
        )

    def adapters(self) -> list[str]:
        with self._lock:
            return sorted(self._adapters)

    def load_adapter(self, adapter: str, path: Path) -> None:
        if not adapter or adapter == BASE_ADAPTER:
            raise ValueError(f"invalid adapter name {adapter!r}")
        if not (Path(path) / "adapter_config.json").is_file():
            raise ValueError(f"{path} is not a LoRA adapter directory (no adapter_config.json)")
        control = _Control("load", adapter, Path(path))
        if threading.current_thread() is self._worker:
            self._do_control(control)
        else:
            self._put(control)
            while not control.done.wait(0.5):
                if not self._worker.is_alive():
                    raise RuntimeError("the generator is closed")
        if control.error is not None:
            raise control.error

    def unload_adapter(self, adapter: str) -> None:
        """New requests for `adapter` are refused from now on; its weights are deleted by the
        worker once the requests already submitted for it have finished."""
        with self._lock:
            if adapter not in self._adapters:
                raise ValueError(f"adapter {adapter!r} is not loaded")
            del self._adapters[adapter]
        self._put(_Control("reap"))

    def submit(
        self, adapter: str | None, messages: Sequence[Message], params: GenerationParams
    ) -> GenerationStream:
        prompt = self.render_prompt(messages)
        ids = self._encode(prompt)
        if len(ids) + params.max_tokens > self._context_window:
            raise ValueError(
                f"the prompt is {len(ids)} tokens; with max_tokens={params.max_tokens} it exceeds "
                f"the model's context window of {self._context_window} tokens"
            )
        deadline = time.monotonic() + params.timeout_s
        with self._lock:
            if self._closed:
                raise RuntimeError("the generator is closed")
            if adapter is None or adapter == BASE_ADAPTER:
                peft_name, label = BASE_ADAPTER, self._name
            elif adapter in self._adapters:
                peft_name, label = self._adapters[adapter], adapter
            else:
                raise ValueError(f"unknown adapter {adapter!r} (loaded: {sorted(self._adapters)})")
            handle = GenerationStream(label, len(ids), deadline)
            request = _Request(None if peft_name == BASE_ADAPTER else adapter, peft_name, ids, params, handle)
            handle._on_abort = lambda reason: self._abort(request, reason)
            self._refs[peft_name] += 1
            self._stats.requests += 1
            self._queue.put(request)
        return request.handle

    def close(self) -> None:
        """Stop the worker: queued requests and the running batch end with finish_reason
        "error" ("the generator was closed"); adapters and model are released."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            for request in self._running:
                request.abort_reason, request.abort_error = "error", "the generator was closed"
        self._queue.put(_CLOSE)
        if threading.current_thread() is not self._worker:
            self._worker.join(timeout=60)

    # -- extras ------------------------------------------------------------------------------

    def stats(self) -> GeneratorStats:
        with self._lock:
            snapshot = self._stats.model_copy(deep=True)
            snapshot.running = len(self._running)
            snapshot.adapters = len(self._adapters)
        snapshot.queue_depth = self._queue.qsize()
        return snapshot

    # -- internals ---------------------------------------------------------------------------

    def _encode(self, text: str) -> list[int]:
        with self._tok_lock:
            return list(self.tokenizer.encode(text, add_special_tokens=False))

    def _decode(self, ids: list[int]) -> str:
        with self._tok_lock:
            return self.tokenizer.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=False)

    def _put(self, item: Any) -> None:
        if not self._worker.is_alive():
            raise RuntimeError("the generator is closed")
        self._queue.put(item)

    def _abort(self, request: _Request, reason: FinishReason) -> None:
        """From any thread: a queued request ends now; a running one at its next step."""
        with self._lock:
            if request.state == "queued":
                request.state = "done"
                finish_now = True
            else:
                finish_now = False
                if request.state == "running" and request.abort_reason is None:
                    if reason == "timeout" and time.monotonic() < request.handle.deadline:
                        return
                    request.abort_reason = reason
        if finish_now:
            self._complete(request, reason, 0)

    def _complete(
        self, request: _Request, reason: FinishReason, completion_tokens: int, error: str | None = None
    ) -> None:
        with self._lock:  # counted before the caller is woken: stats never lag a result
            if request.completed:
                return
            request.completed = True
            self._refs[request.peft_name] -= 1
            if self._refs[request.peft_name] <= 0:
                del self._refs[request.peft_name]
            self._stats.finished += 1
            self._stats.prompt_tokens += request.handle.prompt_tokens
            self._stats.completion_tokens += completion_tokens
            self._stats.finish_reasons[reason] = self._stats.finish_reasons.get(reason, 0) + 1
        request.handle.finish(reason, completion_tokens, error)

    def _serve(self) -> None:
        try:
            while True:
                item = self._queue.get()
                if item is _CLOSE:
                    break
                if isinstance(item, _Control):
                    self._do_control(item)
                    continue
                batch: list[_Request] = [item]
                closing = self._collect(batch)
                if self._closed:
                    batch.reverse()
                    for request in batch:  # back in front of the queue, for _drain to fail them
                        self._queue.queue.appendleft(request)
                    break
                try:
                    self._reap()
                    self._run_batch(batch)
                    self._reap()
                except Exception as exc:  # a bug or a failing peft call: fail the batch, keep serving
                    log.exception("generation worker error")
                    with self._lock:
                        self._running = []
                    for request in batch:
                        self._complete(request, "error", 0, f"generation failed: {type(exc).__name__}: {exc}")
                if closing:
                    break
        finally:
            self._drain()

    def _collect(self, batch: list[_Request]) -> bool:
        """Fill the batch from the queue, waiting up to batch_wait after the first request."""
        until = time.monotonic() + self.batch_wait_s
        while len(batch) < self.max_batch_size:
            remaining = until - time.monotonic()
            try:
                item = self._queue.get(timeout=remaining) if remaining > 0 else self._queue.get_nowait()
            except queue.Empty:
                return False
            if item is _CLOSE:
                return True
            if isinstance(item, _Control):
                self._do_control(item)
            else:
                batch.append(item)
        return False

    def _do_control(self, control: _Control) -> None:
        try:
            if control.kind == "load":
                self._load(control.name, control.path)  # type: ignore[arg-type]
            elif control.kind == "reap":
                self._reap()
        except BaseException as exc:  # handed to the caller of load_adapter
            control.error = exc
        finally:
            control.done.set()

    def _load(self, name: str, path: Path) -> None:
        peft_name = f"a{next(self._counter)}_{_peft_safe(name)}"
        if not self._is_peft:
            from peft import PeftModel

            self._model = PeftModel.from_pretrained(self._model, str(path), adapter_name=peft_name)
            self._is_peft = True
        else:
            self._model.load_adapter(str(path), adapter_name=peft_name)
        self._model.eval()
        self._loaded.add(peft_name)
        with self._lock:
            self._adapters[name] = peft_name  # a replaced version is reaped once unused
        self._reap()
        log.info("adapter %s loaded from %s", name, path)

    def _reap(self) -> None:
        """Delete adapters that are neither current nor used by any queued or running request."""
        with self._lock:
            live = set(self._adapters.values()) | set(self._refs)
        for peft_name in sorted(self._loaded - live):
            if len(self._loaded) == 1:
                self._model = self._model.unload()  # the last adapter: back to the bare base model
                self._is_peft = False
            else:
                remaining = sorted(self._loaded - {peft_name})
                self._model.set_adapter(remaining[0])  # never delete the active one (peft warns)
                self._model.delete_adapter(peft_name)
            self._model.eval()
            self._loaded.discard(peft_name)

    def _run_batch(self, batch: list[_Request]) -> None:
        import torch
        from transformers import GenerationConfig, LogitsProcessorList, StoppingCriteriaList

        from twin_assets.serving.sampling import RowSampler, RowState, RowStopper, RowText

        now = time.monotonic()
        runnable: list[_Request] = []
        expired: list[_Request] = []
        with self._lock:
            for request in batch:
                if request.state != "queued":
                    continue  # cancelled or expired while queued: already resolved
                if now > request.handle.deadline:
                    request.state = "done"
                    expired.append(request)
                else:
                    request.state = "running"
                    runnable.append(request)
            self._running = runnable
            if runnable:
                self._stats.batches += 1
                size = len(runnable)
                self._stats.batch_sizes[size] = self._stats.batch_sizes.get(size, 0) + 1
        for request in expired:
            self._complete(request, "timeout", 0)
        if not runnable:
            return

        rows: list[RowState] = []
        for request in runnable:
            request.handle.batch_size = len(runnable)
            text = RowText(self._decode, request.params.stop)
            rows.append(
                RowState(
                    text=text,
                    max_tokens=request.params.max_tokens,
                    eos_ids=self.eos_ids,
                    deadline=request.handle.deadline,
                    emit=request.handle.push,
                    on_finish=self._finisher(request, text),
                    abort=(lambda r=request: r.abort_reason),
                )
            )
        width = max(len(r.prompt_ids) for r in runnable)
        input_ids = torch.tensor(
            [[self.pad_id] * (width - len(r.prompt_ids)) + r.prompt_ids for r in runnable],
            dtype=torch.long,
            device=self.device,
        )
        attention_mask = torch.tensor(
            [[0] * (width - len(r.prompt_ids)) + [1] * len(r.prompt_ids) for r in runnable],
            dtype=torch.long,
            device=self.device,
        )
        config = GenerationConfig(
            max_new_tokens=max(r.params.max_tokens for r in runnable),
            do_sample=False,
            num_beams=1,
            use_cache=True,
            eos_token_id=sorted(self.eos_ids),
            pad_token_id=self.pad_id,
        )
        sampler = RowSampler(
            [r.params.temperature for r in runnable],
            [r.params.top_p for r in runnable],
            [r.params.seed for r in runnable],
            device=self.device,
            penalties=[(r.params.frequency_penalty, r.params.presence_penalty) for r in runnable],
            prompt_width=width,
        )
        extra: dict[str, Any] = {}
        if self._is_peft:
            extra["adapter_names"] = [r.peft_name for r in runnable]
        started = time.perf_counter()
        try:
            with torch.inference_mode():
                self._generate(
                    input_ids=input_ids,
                    attention_mask=attention_mask,
                    generation_config=config,
                    logits_processor=LogitsProcessorList([sampler]),
                    stopping_criteria=StoppingCriteriaList([RowStopper(rows)]),
                    **extra,
                )
        except Exception as exc:  # OOM, a broken adapter...: this batch fails, the worker lives
            log.exception("generation batch of %d failed", len(runnable))
            message = f"generation failed: {type(exc).__name__}: {exc}"
            with self._lock:
                self._stats.failed_batches += 1
            for row in rows:
                row.finish("error", message)
            if self.device.startswith("cuda"):
                torch.cuda.empty_cache()
        else:
            for row in rows:
                row.finish("length")  # generate stopped before the row's own limit (max length)
        finally:
            with self._lock:
                self._stats.generate_seconds += time.perf_counter() - started
                self._running = []

    def _generate(self, **kwargs: Any) -> Any:
        return self._model.generate(**kwargs)

    def _finisher(self, request: _Request, text: RowText) -> Callable[[FinishReason, int, str | None], None]:
        def finish(reason: FinishReason, completion_tokens: int, error: str | None) -> None:
            with self._lock:
                request.state = "done"
            request.handle.token_ids = list(text.tokens)
            if reason == "error" and request.abort_error and error is None:
                error = request.abort_error
            self._complete(request, reason, completion_tokens, error)

        return finish

    def _drain(self) -> None:
        """After the worker stops: every request still queued fails cleanly."""
        with self._lock:
            self._closed = True
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if isinstance(item, _Request):
                with self._lock:
                    pending = item.state == "queued"
                    item.state = "done"
                if pending:
                    self._complete(item, "error", 0, "the generator was closed")
            elif isinstance(item, _Control):
                item.error = RuntimeError("the generator is closed")
                item.done.set()
        self._model = None
