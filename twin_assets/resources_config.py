"""Which resource instance each asset gets: local defaults, production by environment variable.

See the README's configuration table for every variable.
"""

from __future__ import annotations

import os

from resources.artifacts import ArtifactStoreResource
from resources.author_registry import AuthorRegistryResource
from resources.warehouse import WarehouseResource
from twin_assets.settings import PROJECT_ROOT, data_dir, env_or


def build_resources() -> dict:
    root = data_dir()
    return {
        "authors": AuthorRegistryResource(
            path=os.environ.get("TWIN_AUTHORS_FILE", str(PROJECT_ROOT / "authors.yaml"))
        ),
        "warehouse": WarehouseResource(
            uri=env_or("TWIN_MONGO_URI", ""),
            database=os.environ.get("TWIN_MONGO_DATABASE", "twin"),
            embedded_data_dir=str(root / "mongo"),
            embedded_port=int(os.environ.get("TWIN_MONGO_PORT", "27027")),
        ),
        "artifacts": ArtifactStoreResource(
            root_dir=os.environ.get("TWIN_ARTIFACT_DIR", str(root / "artifacts")),
            s3_bucket=os.environ.get("TWIN_S3_BUCKET", ""),
            s3_prefix=os.environ.get("TWIN_S3_PREFIX", "llm-twin"),
        ),
    }
