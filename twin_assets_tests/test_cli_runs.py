"""`twin runs` and `twin stop` from the command line (the kill-and-reap flow itself is in
test_dead_runs.py, through the same functions)."""

from __future__ import annotations

import os
import subprocess
import sys


def _twin(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "twin_assets.cli", *args], env=env, capture_output=True, text=True, timeout=180
    )


def test_runs_status_reap_and_stop_on_a_fresh_instance(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    env = {**os.environ, "DAGSTER_HOME": str(home), "TWIN_DATA_DIR": str(tmp_path / "data")}
    status = _twin("runs", "status", env=env)
    assert status.returncode == 0, status.stderr
    assert "no dead runs" in status.stdout and "qdrant" in status.stdout
    reap = _twin("runs", "reap", env=env)
    assert reap.returncode == 0 and "no dead runs" in reap.stdout
    stop = _twin("stop", env=env)
    assert stop.returncode == 0, stop.stderr
    assert "inference service: not running" in stop.stdout
    assert "sample site not running" in stop.stdout and "warehouse: not running" in stop.stdout
