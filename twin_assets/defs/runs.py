"""Dead runs: a run whose process is gone is marked failed and its pool slots are freed.

Why this exists: a run killed hard (`kill -9`, an OOM kill, a laptop lid) never reports its end,
so Dagster keeps it STARTED and keeps the concurrency slot it held; with the `qdrant` pool at a
limit of 1 every later embedding run then waits for good ("Step blocked by limit for pool
qdrant", a DEBUG line). Dagster 1.13's run monitoring cannot see this for our local runs: it
checks a run worker's health only through the run launcher (`supports_check_run_worker_health`),
which the DefaultRunLauncher does not implement, and a `dagster asset materialize` run is not
launched by any launcher; it only fails runs that never start or exceed `max_runtime_seconds`.
(With the EcsRunLauncher / K8sRunLauncher of deploy/dagster.yaml it does detect a dead task, and
`free_slots_after_run_end_seconds` then frees its slots.)

So liveness is decided here from what the run itself recorded: Dagster writes the pid of the
orchestrating process ("Executing steps in process (pid: N)", "... multiprocess executor:
parent process (pid: N)") and of every step worker into the run's engine events; the executor
below tags the run with its host. A run is dead when it is on this host and none of those
processes exists any more (a reused pid is recognised by its start time). A run on another host,
or one whose host cannot be known, is never touched: that is run monitoring's job.

Three ways in, so a dead run never blocks the pipeline:
- `reap_dead_runs(instance)`: the plain function (the `twin runs reap` CLI calls it);
- the executor (`twin_executor`, the code location's default): at the start of every run, before
  any step claims a pool slot, and again whenever a step is blocked by a pool, it reaps dead runs
  and says at WARNING level which run holds the pool and whether its process is alive;
- the `dead_run_reaper` sensor, for `dagster dev` / the daemon.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass

import dagster as dg
from dagster._core.definitions.executor_definition import ExecutorRequirement
from dagster._core.events import DagsterEvent, DagsterEventType, JobFailureData, RunFailureReason
from dagster._core.execution.context.system import PlanOrchestrationContext
from dagster._core.execution.plan.plan import ExecutionPlan
from dagster._core.execution.retries import RetryMode
from dagster._core.execution.step_dependency_config import StepDependencyConfig
from dagster._core.storage.runs import InMemoryRunStorage, SqliteRunStorage

HOST_TAG = "twin/host"
LIVE_STATUSES = (dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.CANCELING)
PID_EVENT_TYPES = {
    DagsterEventType.ENGINE_EVENT,
    DagsterEventType.STEP_WORKER_STARTING,
    DagsterEventType.STEP_WORKER_STARTED,
}
BLOCKED_PREFIX = "Step blocked by limit for pool"
STILL_BLOCKED_PREFIX = "Step still blocked by limit for pool"
# a process that started this long after the run recorded its pid is another process (pid reuse)
PID_REUSE_SLACK_S = 2.0


@dataclass(frozen=True)
class RunLiveness:
    """What can be said about one in-progress run from this host.

    `alive`: True (a process of the run exists), False (dead: every recorded process is gone),
    None (cannot tell here: another host, or no pid recorded yet)."""

    run_id: str
    status: str
    host: str | None
    pids: tuple[int, ...]
    alive: bool | None
    reason: str


def this_host() -> str:
    return socket.gethostname()


def _single_host(instance: dg.DagsterInstance) -> bool:
    """SQLite (or in-memory) run storage lives on one machine's disk: every run it holds ran on
    this host, so a pid without a host tag can still be trusted. Postgres can be shared across
    hosts: there, only runs tagged with this host are judged."""
    storage = instance.run_storage
    inner = getattr(storage, "_storage", None)  # LegacyRunStorage wraps the `storage:` block
    if inner is not None:
        storage = getattr(inner, "run_storage", storage)
    return isinstance(storage, SqliteRunStorage | InMemoryRunStorage)


def _recorded_pids(instance: dg.DagsterInstance, run_id: str) -> list[tuple[int, float]]:
    """(pid, timestamp the run recorded it) from the run's engine and step-worker events."""
    out: list[tuple[int, float]] = []
    for entry in instance.all_logs(run_id, of_type=PID_EVENT_TYPES):
        event = entry.dagster_event
        data = event.event_specific_data if event is not None else None
        metadata = getattr(data, "metadata", None) or {}
        value = metadata.get("pid")
        text = getattr(value, "value", value)
        try:
            pid = int(str(text))
        except (TypeError, ValueError):
            continue
        out.append((pid, entry.timestamp))
    return out


def process_alive(pid: int, recorded_at: float | None = None) -> bool:
    """Whether `pid` is a live process that existed when the run recorded it: a zombie is dead,
    and a process created after `recorded_at` is a reused pid, not the run's."""
    if pid <= 0:
        return False
    try:
        import psutil  # installed with accelerate/peft; without it, a plain signal-0 probe
    except ImportError:  # pragma: no cover - psutil is always present in this project
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        if recorded_at is not None and proc.create_time() > recorded_at + PID_REUSE_SLACK_S:
            return False
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:
        return True
    return True


def run_liveness(instance: dg.DagsterInstance, run: dg.DagsterRun) -> RunLiveness:
    host = run.tags.get(HOST_TAG)
    status = run.status.value
    if host is not None and host != this_host():
        return RunLiveness(run.run_id, status, host, (), None, f"runs on host {host}")
    if host is None and not _single_host(instance):
        return RunLiveness(run.run_id, status, None, (), None, "host unknown (shared run storage)")
    recorded = _recorded_pids(instance, run.run_id)
    pids = tuple(sorted({p for p, _ in recorded}))
    if not recorded:
        return RunLiveness(run.run_id, status, host, (), None, "no process recorded yet")
    alive = [p for p, ts in recorded if process_alive(p, ts)]
    if alive:
        return RunLiveness(run.run_id, status, host, pids, True, f"process {alive[0]} alive")
    return RunLiveness(
        run.run_id, status, host, pids, False, f"no process of the run exists (pids {list(pids)})"
    )


def in_progress_runs(instance: dg.DagsterInstance) -> list[dg.DagsterRun]:
    return list(instance.get_runs(filters=dg.RunsFilter(statuses=list(LIVE_STATUSES))))


def find_dead_runs(instance: dg.DagsterInstance, exclude: Collection[str] = ()) -> list[RunLiveness]:
    """In-progress runs (STARTING, STARTED, CANCELING) whose every process is gone."""
    out = []
    for run in in_progress_runs(instance):
        if run.run_id in exclude:
            continue
        liveness = run_liveness(instance, run)
        if liveness.alive is False:
            out.append(liveness)
    return out


def _slot_holders(instance: dg.DagsterInstance) -> dict[str, list[tuple[str, str | None]]]:
    """pool -> [(run id, step key)] of every claimed slot and pending step."""
    storage = instance.event_log_storage
    if not storage.supports_global_concurrency_limits:
        return {}
    out: dict[str, list[tuple[str, str | None]]] = {}
    for pool in sorted(storage.get_concurrency_keys()):
        info = storage.get_concurrency_info(pool)
        rows = [(s.run_id, s.step_key) for s in info.claimed_slots]
        rows += [(p.run_id, p.step_key) for p in info.pending_steps]
        out[pool] = list(dict.fromkeys(rows))  # a granted claim is listed as slot and as step
    return out


def free_slots(instance: dg.DagsterInstance, run_id: str) -> None:
    """Every pool slot and pending claim of the run (what the UI's "free slots" button does)."""
    if instance.event_log_storage.supports_global_concurrency_limits:
        instance.event_log_storage.free_concurrency_slots_for_run(run_id)


def reap_dead_runs(
    instance: dg.DagsterInstance, exclude: Collection[str] = (), log: dg.DagsterLogManager | None = None
) -> list[str]:
    """Mark dead runs failed and free their pool slots; also free slots still held by runs that
    already finished (killed and then marked failed by hand or by run monitoring).

    Returns the ids of the runs that were marked failed or had slots freed (empty: nothing to
    do). `exclude`: run ids never touched (the calling run). Safe to call from any process and
    at any time: a run is touched only when it is provably dead on this host."""
    reaped: list[str] = []
    for dead in find_dead_runs(instance, exclude):
        run = instance.get_run_by_id(dead.run_id)
        if run is None or run.status not in LIVE_STATUSES:
            continue  # finished meanwhile
        message = (
            f"Marked failed by the dead-run reaper on {this_host()}: {dead.reason}. The run's "
            "process was killed or crashed without reporting its end; its pool slots are freed."
        )
        instance.report_run_failed(
            run,
            message,
            JobFailureData(error=None, failure_reason=RunFailureReason.UNEXPECTED_TERMINATION),
        )
        free_slots(instance, run.run_id)
        reaped.append(run.run_id)
        if log is not None:
            log.warning(f"reaped dead run {run.run_id}: {dead.reason}")
    held = {run_id for rows in _slot_holders(instance).values() for run_id, _ in rows}
    for run_id in sorted(held - set(reaped) - set(exclude)):
        run = instance.get_run_by_id(run_id)
        if run is None or run.is_finished:
            free_slots(instance, run_id)
            reaped.append(run_id)
            if log is not None:
                log.warning(f"freed the pool slots still held by finished run {run_id}")
    return reaped


def describe_pool(instance: dg.DagsterInstance, pool: str, exclude: Collection[str] = ()) -> str:
    """Who holds `pool` and whether they are alive, in one readable line."""
    rows = [(r, s) for r, s in _slot_holders(instance).get(pool, []) if r not in exclude]
    if not rows:
        return f"pool {pool!r}: no other run holds or waits for it"
    parts = []
    for run_id, step in rows:
        run = instance.get_run_by_id(run_id)
        if run is None:
            parts.append(f"deleted run {run_id}")
            continue
        liveness = run_liveness(instance, run)
        parts.append(f"run {run_id} ({run.status.value}, step {step}; {liveness.reason})")
    return f"pool {pool!r} is held or awaited by " + "; ".join(parts)


# -- the executor: reaping before any slot is claimed, and a visible reason when blocked --------


class ReapingExecutor(dg.Executor):
    """Dagster's default executor (multiprocess or in-process, same config), plus: tag the run
    with its host, reap dead runs before the first step claims a pool slot, and when a step is
    blocked by a pool, reap again and log at WARNING who holds the pool (Dagster logs the block
    only at DEBUG)."""

    def __init__(self, inner: dg.Executor):
        self._inner = inner

    @property
    def retries(self) -> RetryMode:
        return self._inner.retries

    @property
    def step_dependency_config(self) -> StepDependencyConfig:
        return self._inner.step_dependency_config

    def execute(
        self, plan_context: PlanOrchestrationContext, execution_plan: ExecutionPlan
    ) -> Iterator[DagsterEvent]:
        instance = plan_context.instance
        run_id = plan_context.run_id
        log = plan_context.log
        try:
            instance.add_run_tags(run_id, {HOST_TAG: this_host()})
            reap_dead_runs(instance, exclude={run_id}, log=log)
        except Exception as exc:  # bookkeeping must never fail the run itself
            log.warning(f"dead-run check skipped: {type(exc).__name__}: {exc}")
        for event in self._inner.execute(plan_context, execution_plan):
            yield event
            message = getattr(event, "message", None) or ""
            if event.is_engine_event and message.startswith((BLOCKED_PREFIX, STILL_BLOCKED_PREFIX)):
                pool = message.rsplit(" ", 1)[-1]
                try:
                    reaped = reap_dead_runs(instance, exclude={run_id}, log=log)
                    detail = describe_pool(instance, pool, exclude={run_id})
                except Exception as exc:
                    reaped, detail = [], f"({type(exc).__name__}: {exc})"
                log.warning(
                    f"step {event.step_key} waits for a slot of pool {pool!r}: {detail}."
                    + (f" Reaped dead runs {reaped}; it starts at the next poll." if reaped else "")
                    + " A run that holds it while dead is freed by `twin runs reap`."
                )


def _requirements(config: Mapping[str, object]) -> Sequence[ExecutorRequirement]:
    return dg.multi_or_in_process_executor.get_requirements(config)


def _create(init_context: dg.InitExecutorContext) -> dg.Executor:
    inner = dg.multi_or_in_process_executor.executor_creation_fn
    assert inner is not None
    return ReapingExecutor(inner(init_context))


twin_executor = dg.ExecutorDefinition(
    name="twin_executor",
    config_schema=dg.multi_or_in_process_executor.config_schema.as_field(),
    requirements=_requirements,
    executor_creation_fn=_create,
    description="Dagster's multi_or_in_process_executor (same config) that reaps dead runs "
    "before claiming pool slots and says at WARNING level why a step waits for a pool.",
)


@dg.sensor(
    name="dead_run_reaper",
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Marks runs whose process is gone (killed, crashed) failed and frees their "
    "pool slots, so a dead run never blocks later runs of the pool.",
)
def dead_run_reaper(context: dg.SensorEvaluationContext) -> dg.SkipReason:
    started = time.monotonic()
    reaped = reap_dead_runs(context.instance)
    took = time.monotonic() - started
    if reaped:
        context.log.warning(f"reaped {len(reaped)} dead run(s): {reaped}")
        return dg.SkipReason(f"reaped dead runs {reaped} ({took:.1f} s)")
    return dg.SkipReason(f"no dead run ({took:.1f} s)")


defs = dg.Definitions(sensors=[dead_run_reaper], executor=twin_executor)
