"""PID-file processes (`twin_assets.processes`) with real processes: a detached sleeper is
started, found, stopped; a stale PID file naming another live process never gets it signalled."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from twin_assets import processes
from twin_assets.processes import ProcessInfo

MARKER = "twin-processes-test-sleeper"


def _is_sleeper(proc: ProcessInfo) -> bool:
    return MARKER in proc.argv


def _sleeper_argv(on_sigterm: str = "print('SIGTERM', flush=True); sys.exit(0)") -> list[str]:
    """A sleeping Python process that reports a SIGTERM in its log (then runs `on_sigterm`)."""
    code = (
        "import signal, sys, time\n"
        "def on_term(*_):\n"
        f"    {on_sigterm}\n"
        "signal.signal(signal.SIGTERM, on_term)\n"
        "print('ready', flush=True)\n"
        "time.sleep(60)\n"
    )
    return [sys.executable, "-c", code, MARKER]


def _started(proc: subprocess.Popen[bytes], log_file: Path | None = None) -> subprocess.Popen[bytes]:
    """`proc` once /proc shows its command line (empty for a moment right after exec) and, for
    a sleeper, once it has said 'ready' in its log (its SIGTERM handler is installed)."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and proc.poll() is None:
        visible = processes.process_info(proc.pid) is not None
        if visible and (log_file is None or "ready" in log_file.read_text()):
            break
        time.sleep(0.01)
    return proc


@pytest.fixture
def files(tmp_path):
    return tmp_path / "run" / "sleeper.pid", tmp_path / "run" / "sleeper.log"


def test_start_status_stop(files):
    pid_file, log_file = files
    proc = _started(processes.start_detached(_sleeper_argv(), log_file=log_file, pid_file=pid_file), log_file)
    try:
        assert pid_file.read_text() == str(proc.pid) and log_file.exists()
        assert processes.read_pid(pid_file, _is_sleeper) == proc.pid
        info = processes.process_info(proc.pid)
        assert info is not None and info.argv[-1] == MARKER and info.cwd() is not None
        assert processes.stop(pid_file, _is_sleeper, timeout_s=10) == proc.pid
        assert processes.process_info(proc.pid) is None  # exited (and reaped) on SIGTERM
        assert "SIGTERM" in log_file.read_text()
        assert not pid_file.exists()
        assert processes.read_pid(pid_file, _is_sleeper) is None
        assert processes.stop(pid_file, _is_sleeper) is None  # a second stop: not running
    finally:
        proc.kill()
        proc.wait()


def test_detached_process_has_a_session_of_its_own(files):
    pid_file, log_file = files
    proc = _started(processes.start_detached(_sleeper_argv(), log_file=log_file, pid_file=pid_file), log_file)
    try:
        assert os.getsid(proc.pid) == proc.pid != os.getsid(0)
    finally:
        processes.terminate(proc.pid, _is_sleeper, timeout_s=10, pid_file=pid_file)
        proc.wait()
    assert not pid_file.exists()


def test_stale_pid_file_naming_another_process_is_not_signalled(files):
    """After a reboot the number in the file may belong to anything: it is not ours, so it is
    reported not running and left alone, and the stale file is dropped."""
    pid_file, _ = files
    pid_file.parent.mkdir(parents=True)
    other = _started(subprocess.Popen(["sleep", "60"]))
    try:
        for pid in (other.pid, os.getpid()):
            pid_file.write_text(str(pid))
            assert processes.read_pid(pid_file, _is_sleeper) is None
            assert processes.stop(pid_file, _is_sleeper, timeout_s=1) is None
            assert not pid_file.exists()
            assert processes.terminate(pid, _is_sleeper, timeout_s=1) is False
        assert other.poll() is None  # still running: neither SIGTERMed nor SIGKILLed
    finally:
        other.kill()
        other.wait()


def test_unreadable_or_dead_pid_files_are_not_running(files):
    pid_file, _ = files
    pid_file.parent.mkdir(parents=True)
    assert processes.read_pid(pid_file, _is_sleeper) is None  # no file
    for text in ("", "not a number", "-1", "0"):
        pid_file.write_text(text)
        assert processes.read_pid(pid_file, lambda _: True) is None
    done = subprocess.Popen(["true"])
    done.wait()
    pid_file.write_text(str(done.pid))
    assert processes.read_pid(pid_file, lambda _: True) is None
    assert processes.process_info(done.pid) is None


def test_sample_site_stop_leaves_a_foreign_process_alone(tmp_data_dir, capsys):
    """`twin sample stop` used to SIGTERM whatever PID its file named."""
    from twin_assets import cli

    tmp_data_dir.mkdir(parents=True)
    other = _started(subprocess.Popen(["sleep", "60"]))
    try:
        (tmp_data_dir / "sample-site.pid").write_text(str(other.pid))
        assert cli.main(["sample", "stop"]) == 0
        assert capsys.readouterr().out == "sample site not running\n"
        assert other.poll() is None
        assert not (tmp_data_dir / "sample-site.pid").exists()
    finally:
        other.kill()
        other.wait()


def test_sample_site_start_and_stop(tmp_data_dir, capsys):
    from twin_assets import cli
    from twin_assets_tests.conftest import free_port

    port = free_port()
    assert cli.main(["sample", "start", "--port", str(port)]) == 0
    out = capsys.readouterr().out
    pid = int(out.rsplit("(pid ", 1)[1].rstrip(")\n"))
    assert out == f"sample site at http://127.0.0.1:{port} (pid {pid})\n"
    assert cli.main(["sample", "stop"]) == 0
    assert capsys.readouterr().out == f"stopped sample site (pid {pid})\n"
    assert processes.process_info(pid) is None


def test_a_process_that_ignores_sigterm_is_killed(files):
    pid_file, log_file = files
    argv = _sleeper_argv(on_sigterm="print('SIGTERM', flush=True)")
    proc = _started(processes.start_detached(argv, log_file=log_file, pid_file=pid_file), log_file)
    try:
        assert processes.stop(pid_file, _is_sleeper, timeout_s=0.5) == proc.pid
        assert proc.wait(timeout=10) == -9  # SIGKILL after the grace period
        assert "SIGTERM" in log_file.read_text() and not pid_file.exists()
    finally:
        proc.kill()
        proc.wait()
