"""The embedded warehouse server: a MongoDB wire-protocol server on 127.0.0.1, data on disk.

We run `nx-27017` (NeoSQLite's MongoDB wire-protocol server over SQLite) so that the very same
pymongo code path is exercised in tests, in the demo and against a real MongoDB in production.
The server is a separate, detached process: it outlives the Dagster step that started it (steps
run in their own processes) and is stopped explicitly by its PID (`twin warehouse stop`).
"""

from __future__ import annotations

import os
import shutil
import socket
import sys
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from twin_assets import processes
from twin_assets.processes import ProcessInfo


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

    @property
    def server_pid_file(self) -> Path:
        """Written by nx-27017 itself before it binds (and removed when it exits)."""
        return self.data_dir / "nx-27017.server.pid"

    def pid(self) -> int | None:
        """PID of THIS server (nx-27017 on this data dir), or None.

        A PID file alone proves nothing: after a reboot or a crash its number may belong to an
        unrelated process, which `stop()` would then kill. So a PID counts only when its command
        line is nx-27017 serving our data directory; when neither PID file names it (e.g. a start
        race removed one), the process table is searched for it.
        """
        owner = self.listener_pid()
        if owner is not None and processes.is_running(owner, self._serves):
            return owner
        for file in (self.server_pid_file, self.pid_file):
            pid = processes.read_pid(file, self._serves)
            if pid is not None:
                return pid
        for entry in Path("/proc").glob("[0-9]*"):
            if processes.is_running(int(entry.name), self._serves):
                return int(entry.name)
        return None

    def listener_pid(self) -> int | None:
        """PID of the process holding the listening socket on our port (None: nobody, or a
        process whose descriptors we may not read, i.e. not ours). The socket's owner is the
        only reliable answer in a start race, where several nx-27017 processes exist briefly
        and all but one exit when their bind fails."""
        inodes = set()
        for table in ("/proc/net/tcp", "/proc/net/tcp6"):
            try:
                lines = Path(table).read_text().splitlines()[1:]
            except OSError:
                continue
            for line in lines:
                fields = line.split()
                if (
                    len(fields) > 9
                    and fields[3] == "0A"
                    and int(fields[1].rsplit(":", 1)[1], 16) == self.port
                ):
                    inodes.add(f"socket:[{fields[9]}]")
        if not inodes:
            return None
        for proc in Path("/proc").glob("[0-9]*"):
            try:
                if any(os.readlink(fd) in inodes for fd in (proc / "fd").iterdir()):
                    return int(proc.name)
            except OSError:
                continue
        return None

    def _serves(self, proc: ProcessInfo, port: int | None = None) -> bool:
        """Whether `proc` is nx-27017 on this data dir (and on `port`, if given)."""
        args = proc.argv
        if not any(Path(a).name == "nx-27017" for a in args):
            return False
        cwd = proc.cwd()  # a relative --data-dir is relative to it
        if cwd is None:
            return False

        def value(*flags: str) -> str | None:
            for i, arg in enumerate(args[:-1]):
                if arg in flags:
                    return args[i + 1]
            return None

        data = value("--data-dir")
        if data is None or (cwd / data).resolve() != (self.data_dir / "db").resolve():
            return False
        return port is None or value("-p", "--port") == str(port)

    def is_listening(self) -> bool:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.settimeout(0.5)
            return s.connect_ex((self.host, self.port)) == 0

    def start(self, timeout: float = 20.0) -> int:
        """Start the server unless it already runs; return its PID. Safe to call concurrently.

        Raises `EmbeddedMongoError` when the port is held by anything but nx-27017 on this data
        dir: silently using it would read/write another checkout's (or program's) data.
        """
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self.is_listening():
            return self._own_listener()
        exe = shutil.which("nx-27017") or str(Path(sys.executable).with_name("nx-27017"))
        if not Path(exe).exists():
            raise EmbeddedMongoError(
                "nx-27017 is not installed; install the project (pip install -e .) "
                "or set TWIN_MONGO_URI to a MongoDB server"
            )
        # detached: survives the step/process that started it. Our PID file is written only
        # once this process holds the port (in a start race, the losers exit)
        proc = processes.start_detached(
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
                str(self.server_pid_file),
            ],
            log_file=self.log_file,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                if self.is_listening():  # lost a start race to a concurrent starter
                    return self._own_listener()
                raise EmbeddedMongoError(f"nx-27017 exited with {proc.returncode}; see {self.log_file}")
            if self.is_listening() and self.listener_pid() == proc.pid:
                self.pid_file.write_text(str(proc.pid))
                return proc.pid
            # listening but not by our process: a concurrent starter won; ours exits shortly
            time.sleep(0.1)
        proc.kill()
        raise EmbeddedMongoError(f"nx-27017 did not listen on {self.host}:{self.port} in {timeout}s")

    def _own_listener(self) -> int:
        """PID of our server on the port, or an error: whatever else listens there (another
        checkout's server with other data, any other program) must not be used as ours."""
        pid = self.listener_pid()
        if pid is not None and processes.is_running(pid, partial(self._serves, port=self.port)):
            return pid
        raise EmbeddedMongoError(
            f"{self.host}:{self.port} is in use by another process, not by nx-27017 serving "
            f"{self.data_dir}; set TWIN_MONGO_PORT to a free port, or TWIN_MONGO_URI to use a "
            "MongoDB server you run yourself"
        )

    def stop(self, timeout: float = 10.0) -> bool:
        """Stop the server by its PID. Returns False when it was not running.

        Only a verified PID (see `pid()`) is signalled; a stale PID file is just removed.
        """
        pid = self.pid()
        if pid is None:
            self.pid_file.unlink(missing_ok=True)
            return False
        processes.terminate(pid, self._serves, timeout_s=timeout, pid_file=self.pid_file)
        return True
