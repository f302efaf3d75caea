"""A killed run never blocks the pipeline: a real `dagster asset materialize` is killed with
SIGKILL while its step holds the `qdrant` pool slot, and a later run of the pool completes.

The code location is a tiny one written by the test (an asset that takes the pool and sleeps,
and one that takes the pool and returns) with the project's executor; the instance is a temporary
DAGSTER_HOME with the pool limit at 1, as in dagster.yaml.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import dagster as dg
import pytest

from twin_assets.defs import runs

ROOT = Path(__file__).resolve().parents[1]

DEFS = textwrap.dedent(
    """
    import os, time
    from pathlib import Path
    import dagster as dg
    from twin_assets.defs.runs import twin_executor

    MARKER = Path(os.environ["TEST_MARKER"])

    @dg.asset(pool="qdrant")
    def holder() -> None:
        MARKER.write_text(str(os.getpid()))
        time.sleep(120)

    @dg.asset(pool="qdrant")
    def follower() -> int:
        return 1

    defs = dg.Definitions(assets=[holder, follower], executor=twin_executor)
    """
)

INSTANCE = textwrap.dedent(
    """
    telemetry: {enabled: false}
    storage:
      sqlite:
        base_dir: "{home}"
    concurrency:
      pools:
        default_limit: 1
        granularity: op
    """
)


@pytest.fixture
def home(tmp_path: Path) -> Path:
    home = tmp_path / "home"
    home.mkdir()
    (home / "dagster.yaml").write_text(INSTANCE.replace("{home}", str(home)))
    (tmp_path / "defs.py").write_text(DEFS)
    return home


def _env(home: Path) -> dict[str, str]:
    return {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "TEST_MARKER": str(home.parent / "marker"),
        "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
    }


def _materialize(home: Path, asset: str, **kw) -> subprocess.Popen:
    exe = Path(sys.executable).with_name("dagster")
    return subprocess.Popen(
        [str(exe), "asset", "materialize", "-f", str(home.parent / "defs.py"), "--select", asset],
        cwd=home.parent,
        env=_env(home),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
        **kw,
    )


def _start_holder(home: Path) -> tuple[subprocess.Popen, int]:
    """`dagster asset materialize` of `holder`, once its step holds the pool slot; returns the
    CLI process and the step's pid (the multiprocess executor runs the step in a child)."""
    proc = _materialize(home, "holder")
    marker = home.parent / "marker"
    deadline = time.monotonic() + 45
    while not marker.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            out = proc.communicate(timeout=10)[0] if proc.poll() is not None else ""
            os.killpg(proc.pid, signal.SIGKILL)
            pytest.fail(f"holder never started its step:\n{out[-3000:]}")
        time.sleep(0.1)
    time.sleep(0.2)
    return proc, int(marker.read_text())


def _only_run(instance: dg.DagsterInstance, asset: str) -> dg.DagsterRun:
    found = [r for r in instance.get_runs() if r.asset_selection == {dg.AssetKey(asset)}]
    assert len(found) == 1, found
    return found[0]


def _claimed(instance: dg.DagsterInstance) -> list[str]:
    return [s.run_id for s in instance.event_log_storage.get_concurrency_info("qdrant").claimed_slots]


def test_killed_run_is_reaped_at_the_start_of_the_next_run(home: Path) -> None:
    proc, step_pid = _start_holder(home)
    with dg.DagsterInstance.from_config(str(home)) as instance:
        dead_run = _only_run(instance, "holder")
        assert dead_run.status == dg.DagsterRunStatus.STARTED
        assert _claimed(instance) == [dead_run.run_id]
        assert dead_run.tags.get(runs.HOST_TAG) == runs.this_host()

        # kill -9 of the CLI only: its step process still runs (and would still hold the Qdrant
        # folder), so the run is alive and must not be reaped
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        liveness = runs.run_liveness(instance, dead_run)
        assert liveness.alive is True, liveness
        assert step_pid in liveness.pids and proc.pid in liveness.pids
        assert runs.find_dead_runs(instance) == []

        # now the step's process too: nothing of the run is left
        os.killpg(proc.pid, signal.SIGKILL)
        _wait_gone(step_pid)
        assert runs.run_liveness(instance, dead_run).alive is False

        # a new run of the pool completes on its own: the executor reaps before claiming
        follower = _materialize(home, "follower")
        out = follower.communicate(timeout=90)[0]
        assert follower.returncode == 0, out[-3000:]
        assert "reaped dead run" in out
        after = instance.get_run_by_id(dead_run.run_id)
        assert after is not None and after.status == dg.DagsterRunStatus.FAILURE
        assert _only_run(instance, "follower").status == dg.DagsterRunStatus.SUCCESS
        assert _claimed(instance) == []
        failure = instance.all_logs(dead_run.run_id, of_type=dg.DagsterEventType.RUN_FAILURE)
        event = failure[-1].dagster_event if failure else None
        assert event is not None and "dead-run reaper" in (event.message or "")


def test_reap_dead_runs_without_the_daemon(home: Path) -> None:
    proc, step_pid = _start_holder(home)
    with dg.DagsterInstance.from_config(str(home)) as instance:
        dead_run = _only_run(instance, "holder")
        assert runs.reap_dead_runs(instance) == []  # alive: untouched
        assert "alive" in runs.describe_pool(instance, "qdrant")

        # a run that waits for the pool says why at WARNING level (Dagster says it at DEBUG)
        waiting = _materialize(home, "follower")
        lines: list[str] = []
        reader = threading.Thread(target=lambda: lines.extend(waiting.stdout or []), daemon=True)
        reader.start()
        deadline = time.monotonic() + 45
        while not any("waits for a slot of pool 'qdrant'" in line for line in lines):
            assert waiting.poll() is None and time.monotonic() < deadline, "".join(lines)[-3000:]
            time.sleep(0.1)
        said = next(line for line in lines if "waits for a slot of pool" in line)
        assert "WARNING" in said and dead_run.run_id in said and "alive" in said

        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        _wait_gone(step_pid)
        assert _claimed(instance) == [dead_run.run_id]

        # the sensor is the daemon's way in; the plain function is the same call
        result = runs.dead_run_reaper(dg.build_sensor_context(instance=instance))
        assert isinstance(result, dg.SkipReason) and dead_run.run_id in (result.skip_message or "")
        assert instance.get_run_by_id(dead_run.run_id).status == dg.DagsterRunStatus.FAILURE  # type: ignore[union-attr]
        assert dead_run.run_id not in _claimed(instance)
        assert runs.reap_dead_runs(instance) == []  # idempotent
        # the waiting run was granted the freed slot and finishes
        assert waiting.wait(timeout=60) == 0, "".join(lines)[-3000:]
        reader.join(timeout=10)
        assert _only_run(instance, "follower").status == dg.DagsterRunStatus.SUCCESS


def _wait_gone(pid: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while runs.process_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not runs.process_alive(pid), f"process {pid} survived SIGKILL"
