"""Builds the parts of the sample author that cannot live in git as they are: the LinkedIn
data-export zip (from `exports/linkedin/`) and a real git repository (from `repo/`)."""

from __future__ import annotations

import shutil
import subprocess
import zipfile
from pathlib import Path

from twin_assets.paths import SAMPLE_DATA_DIR


def build_linkedin_export(target: Path, source: Path = SAMPLE_DATA_DIR / "exports" / "linkedin") -> Path:
    """Zip the export files the way LinkedIn ships them (CSV files at the archive root)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(".zip.tmp")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(source.iterdir()):
            if path.is_file():
                # fixed timestamp: the same files always give the same archive
                info = zipfile.ZipInfo(path.name, date_time=(2026, 11, 1, 0, 0, 0))
                info.compress_type = zipfile.ZIP_DEFLATED
                zf.writestr(info, path.read_bytes())
    tmp.replace(target)
    return target


def build_git_repo(target: Path, source: Path = SAMPLE_DATA_DIR / "repo") -> Path:
    """A real git repository with one commit by the sample author, rebuilt from `source`."""
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(source, target)
    env = {
        "GIT_AUTHOR_NAME": "Maya Kowalski",
        "GIT_AUTHOR_EMAIL": "maya@example.com",
        "GIT_COMMITTER_NAME": "Maya Kowalski",
        "GIT_COMMITTER_EMAIL": "maya@example.com",
        "GIT_AUTHOR_DATE": "2026-03-01T10:00:00Z",
        "GIT_COMMITTER_DATE": "2026-03-01T10:00:00Z",
        "HOME": str(target),
        "PATH": "/usr/bin:/bin:/usr/local/bin",
    }
    for cmd in (
        ["git", "init", "-q", "-b", "main"],
        ["git", "add", "-A"],
        ["git", "commit", "-q", "-m", "chunkwise: token-aware chunking with overlap"],
    ):
        subprocess.run(cmd, cwd=target, env=env, check=True, capture_output=True)
    return target


def prepare_sample(data_root: Path) -> dict[str, Path]:
    sample = data_root / "sample"
    return {
        "linkedin_export": build_linkedin_export(sample / "linkedin-export.zip"),
        "repo": build_git_repo(sample / "chunkwise"),
    }
