"""Where the project keeps its files: the repository, the bundled sample, the local data root."""

from __future__ import annotations

import os
from pathlib import Path


def data_dir() -> Path:
    """Root of everything the project writes locally (warehouse, vectors, artifacts, runs):
    `TWIN_DATA_DIR`, read when called (never at import), else `.data` in the working directory."""
    return Path(os.environ.get("TWIN_DATA_DIR", ".data")).resolve()


PROJECT_ROOT = Path(__file__).resolve().parent.parent
SAMPLE_DATA_DIR = Path(__file__).resolve().parent / "sample_data"
