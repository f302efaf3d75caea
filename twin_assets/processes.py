"""Background processes tracked by a PID file: the inference service, the sample site and the
embedded warehouse server all outlive the command that started them and are stopped later by
the number in a file.

A number in a PID file proves nothing on its own: after a reboot or a crash it may belong to any
unrelated process, which a blind `kill` would then terminate. So a PID counts only when the
process's command line (read from /proc) satisfies the caller's predicate, and a process is only
signalled while it still does.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ProcessInfo:
    """A live process as /proc shows it: enough for a caller to tell whether it is theirs."""

    pid: int
    argv: tuple[str, ...]

    def cwd(self) -> Path | None:
        """Its working directory (a relative path on its command line is relative to it), or
        None when it cannot be read (gone, or not our user's)."""
        try:
            return Path(os.readlink(f"/proc/{self.pid}/cwd"))
        except OSError:
            return None


Matcher = Callable[[ProcessInfo], bool]
"""Whether a process is the one a PID file is meant to name."""


def process_info(pid: int) -> ProcessInfo | None:
    """The process `pid`, or None when there is none or it has no command line left to judge
    (a zombie, a kernel thread)."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    argv = tuple(raw.decode(errors="replace").split("\0"))
    if argv and argv[-1] == "":
        argv = argv[:-1]
    return ProcessInfo(pid, argv) if argv else None


def is_running(pid: int, matches: Matcher) -> bool:
    """Whether `pid` is alive and is the process `matches` describes."""
    info = process_info(pid)
    return info is not None and matches(info)


def read_pid(pid_file: Path, matches: Matcher) -> int | None:
    """The PID in `pid_file` if that process runs and `matches`; None for a missing or
    unreadable file and for a stale one (the process is gone or the number was reused)."""
    try:
        pid = int(pid_file.read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if pid > 0 and is_running(pid, matches) else None


def start_detached(
    argv: Sequence[str],
    *,
    log_file: Path,
    pid_file: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    """Start `argv` in a session of its own (it survives the command or Dagster step that
    started it, and a Ctrl-C there), stdout and stderr appended to `log_file`, stdin closed;
    its PID written to `pid_file` when given (a caller that must first confirm the process won
    a start race writes the file itself)."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with open(log_file, "ab") as out:  # the child keeps its own copy of the descriptor
        proc = subprocess.Popen(
            list(argv),
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=None if env is None else dict(env),
            start_new_session=True,
        )
    if pid_file is not None:
        pid_file.parent.mkdir(parents=True, exist_ok=True)
        pid_file.write_text(str(proc.pid))
    return proc


def terminate(pid: int, matches: Matcher, *, timeout_s: float = 30.0, pid_file: Path | None = None) -> bool:
    """SIGTERM `pid`, wait up to `timeout_s` for it to exit, then SIGKILL it; `pid_file` is
    removed either way. Only a process that still `matches` is signalled (its number may have
    been reused since it was read); False when there was none to signal."""
    try:
        if not is_running(pid, matches):
            return False
        try:
            os.kill(pid, signal.SIGTERM)
        except OSError:
            return False
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:  # our own child would linger as a zombie until reaped
                os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                pass
            if not is_running(pid, matches):
                return True
            time.sleep(0.1)
        if is_running(pid, matches):
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        return True
    finally:
        if pid_file is not None:
            pid_file.unlink(missing_ok=True)


def stop(pid_file: Path, matches: Matcher, *, timeout_s: float = 30.0) -> int | None:
    """Stop the process `pid_file` names (see `terminate`) and remove the file; returns its PID,
    or None when it was not running (a stale file, naming a process that is not ours, is just
    removed and nothing is signalled)."""
    pid = read_pid(pid_file, matches)
    if pid is None:
        pid_file.unlink(missing_ok=True)
        return None
    terminate(pid, matches, timeout_s=timeout_s, pid_file=pid_file)
    return pid
