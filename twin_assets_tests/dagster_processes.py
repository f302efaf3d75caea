"""Helpers for tests that run Dagster's own processes (`dagster dev`, `dagster-webserver`) on a
temporary instance, and what they check it against."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path

import yaml

from twin_assets.paths import PROJECT_ROOT

CARD_ASSETS = (
    "raw_documents",
    "cleaned_documents",
    "chunks",
    "embedded_chunks",
    "instruction_dataset",
    "preference_dataset",
    "sft_model",
    "dpo_model",
    "evaluation_report",
    "deployed_endpoint",
)
"""The per-author assets of the design card, in pipeline order."""


def dagster_home(root: Path, edit: Callable[[dict], None] | None = None) -> Path:
    """`root/home` holding the project's dagster.yaml with its storage at that explicit path (a
    test opens the instance without DAGSTER_HOME set); `edit` may change the config first."""
    home = root / "home"
    home.mkdir(parents=True, exist_ok=True)
    config = yaml.safe_load((PROJECT_ROOT / "dagster.yaml").read_text())
    config["storage"] = {"sqlite": {"base_dir": str(home)}}
    if edit is not None:
        edit(config)
    (home / "dagster.yaml").write_text(yaml.safe_dump(config))
    return home


def stop_group(proc: subprocess.Popen, timeout_s: float = 30.0) -> None:
    """SIGTERM the process group a test started (`start_new_session=True`), SIGKILL after
    `timeout_s`: Dagster's processes spawn code servers and run workers of their own."""
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
