"""Where configuration comes from: environment variables with local defaults.

A variable that is set becomes a Dagster `EnvVar` (so secrets are never shown in the UI or
logged); an unset one falls back to the embedded/local default that makes the graph run offline.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import dagster as dg


def env_or(name: str, default: str) -> str | dg.EnvVar:
    # imported here: training entry points import this module on images without Dagster
    import dagster as dg

    return dg.EnvVar(name) if os.environ.get(name) else default


def data_dir() -> Path:
    """Root of everything the project writes locally (warehouse, vectors, artifacts, runs)."""
    return Path(os.environ.get("TWIN_DATA_DIR", ".data")).resolve()


PROJECT_ROOT = Path(__file__).resolve().parent.parent
SAMPLE_DATA_DIR = Path(__file__).resolve().parent / "sample_data"
