"""The storage interfaces the plain logic packages are written against.

The logic in `crawling/`, `features/`, `datasets/` and `training/` never imports a resource or a
database driver: it takes one of these protocols, and `resources/` supplies the implementations
(MongoDB, Qdrant, the local/S3 artifact store). That keeps the dependencies pointing one way
(domain <- logic <- resources <- Dagster definitions) and lets tests hand in a real store or a
small fake.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol


class ArtifactStore(Protocol):
    """Versioned files (datasets, models, reports) under slash-separated keys, mirrored in a
    local directory and, when configured, in S3."""

    def local_path(self, key: str) -> Path: ...

    def uri(self, key: str) -> str: ...

    def exists(self, key: str) -> bool: ...

    def put_dir(self, key: str, local_dir: Path | None = None) -> str: ...

    def put_json(self, key: str, obj: object) -> str: ...

    def put_bytes(self, key: str, data: bytes) -> str: ...

    def get_json(self, key: str) -> object: ...

    def get_dir(self, key: str) -> Path: ...

    def delete_prefix(self, key: str) -> int: ...

    def write_alias(self, key: str, alias: str, version: str) -> str: ...

    def read_alias(self, key: str, alias: str) -> str | None: ...
