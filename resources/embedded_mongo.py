"""The embedded warehouse server: a MongoDB wire-protocol server on 127.0.0.1, data on disk.

We run `nx-27017` (NeoSQLite's MongoDB wire-protocol server over SQLite) so that the very same
pymongo code path is exercised in tests, in the demo and against a real MongoDB in production.
The server is a separate, detached process: it outlives the Dagster step that started it (steps
run in their own processes) and is stopped explicitly by its PID (`twin warehouse stop`).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path


class EmbeddedMongoError(RuntimeError):
    pass


@dataclass(frozen=True)
class EmbeddedMongo:
    data_dir: Path
    host: str = "127.0.0.1"
    port: int = 27027

    @property
    def uri(self) -> str:
        return f"mongodb://{self.host}:{self.port}/"

    @property
    def pid_file(self) -> Path:
        return self.data_dir / "nx-27017.pid"

    @property
    def log_file(self) -> Path:
        return self.data_dir / "nx-27017.log"

    def pid(self) -> int | None:
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        try:
            os.kill(pid, 0)
        except OSError:
            return None
        return pid

    def is_listening(self) -> bool:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.settimeout(0.5)
            return s.connect_ex((self.host, self.port)) == 0

    def start(self, timeout: float = 20.0) -> int:
        """Start the server unless it already runs; return its PID. Safe to call concurrently."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self.is_listening():
            pid = self.pid()
            if pid is None:
                # Something else owns the port; if it speaks the protocol we use it as is.
                return -1
            return pid
        exe = shutil.which("nx-27017") or str(Path(sys.executable).with_name("nx-27017"))
        if not Path(exe).exists():
            raise EmbeddedMongoError(
                "nx-27017 is not installed; install the project (pip install -e .) "
                "or set TWIN_MONGO_URI to a MongoDB server"
            )
        log = open(self.log_file, "ab")
        proc = subprocess.Popen(
            [
                exe,
                "--data-dir",
                str(self.data_dir / "db"),
                "--host",
                self.host,
                "-p",
                str(self.port),
                "--log-file",
                str(self.log_file),
                "--pid-file",
                str(self.data_dir / "nx-27017.server.pid"),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # detached: survives the step/process that started it
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                if self.is_listening():  # lost a start race to a concurrent starter
                    return self.pid() or -1
                raise EmbeddedMongoError(
                    f"nx-27017 exited with {proc.returncode}; see {self.log_file}"
                )
            if self.is_listening():
                self.pid_file.write_text(str(proc.pid))
                return proc.pid
            time.sleep(0.1)
        proc.kill()
        raise EmbeddedMongoError(f"nx-27017 did not listen on {self.host}:{self.port} in {timeout}s")

    def stop(self, timeout: float = 10.0) -> bool:
        """Stop the server by its PID. Returns False when it was not running."""
        pid = self.pid()
        if pid is None:
            return False
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
                # reap if it is our child
                try:
                    os.waitpid(pid, os.WNOHANG)
                except ChildProcessError:
                    pass
            except OSError:
                break
            time.sleep(0.1)
        else:
            os.kill(pid, signal.SIGKILL)
        self.pid_file.unlink(missing_ok=True)
        return True
