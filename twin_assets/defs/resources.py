"""Which resource instance each asset gets: local defaults, production by environment variable.

See the README's configuration table for every variable.
"""

from __future__ import annotations

import os

import dagster as dg

from resources.artifacts import ArtifactStoreResource
from resources.crawler import CrawlerResource
from resources.embedder import EmbedderResource
from resources.author_registry import AuthorRegistryResource
from resources.llm import TextGeneratorResource
from resources.vector_store import QdrantResource
from resources.sagemaker import SageMakerResource
from resources.tracking import WandbResource
from resources.warehouse import WarehouseResource
from twin_assets.paths import PROJECT_ROOT, data_dir


def env_or(name: str, default: str) -> str | dg.EnvVar:
    """A variable that is set becomes a Dagster `EnvVar` (resolved at run time, never shown in
    the UI or logged); an unset one falls back to the local default."""
    return dg.EnvVar(name) if os.environ.get(name) else default


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
        # safe defaults; TWIN_CRAWL_* / TWIN_CHROMIUM_PATH / TWIN_GITHUB_API (see resources/crawler.py)
        "crawler": CrawlerResource.from_env(),
        "embedder": EmbedderResource(
            model=os.environ.get("TWIN_EMBEDDING_MODEL", ""),
            batch_size=int(os.environ.get("TWIN_EMBEDDING_BATCH", "64")),
            device=os.environ.get("TWIN_EMBEDDING_DEVICE", "auto"),
        ),
        # local mode in <data_dir>/qdrant unless TWIN_QDRANT_URL points at a server
        "qdrant": QdrantResource(
            url=os.environ.get("TWIN_QDRANT_URL", ""),
            api_key=env_or("TWIN_QDRANT_API_KEY", ""),
            path=str(root / "qdrant"),
            collection=os.environ.get("TWIN_QDRANT_COLLECTION", "twin_chunks"),
        ),
        "artifacts": ArtifactStoreResource(
            root_dir=os.environ.get("TWIN_ARTIFACT_DIR", str(root / "artifacts")),
            s3_bucket=os.environ.get("TWIN_S3_BUCKET", ""),
            s3_prefix=os.environ.get("TWIN_S3_PREFIX", "llm-twin"),
        ),
        # "offline" (no LLM) unless TWIN_LLM_BACKEND says otherwise or a server URL is set
        "llm": TextGeneratorResource(
            backend=os.environ.get(
                "TWIN_LLM_BACKEND", "openai" if os.environ.get("TWIN_LLM_BASE_URL") else "offline"
            ),
            base_url=os.environ.get("TWIN_LLM_BASE_URL", ""),
            model=os.environ.get("TWIN_LLM_MODEL", ""),
            api_key=env_or("TWIN_LLM_API_KEY", ""),
            base_model=os.environ.get(
                "TWIN_BASE_MODEL", str(root / "models" / "base" / "smollm2-135m-instruct")
            ),
            max_concurrency=int(os.environ.get("TWIN_LLM_MAX_CONCURRENCY", "4")),
            timeout_s=float(os.environ.get("TWIN_LLM_TIMEOUT_S", "60")),
        ),
        # training: wandb offline under <data_dir>/wandb unless WANDB_API_KEY is set
        "wandb": WandbResource(
            enabled=os.environ.get("TWIN_WANDB_ENABLED", "1") not in {"0", "false", "no"},
            project=os.environ.get("WANDB_PROJECT", "llm-twin"),
            entity=os.environ.get("WANDB_ENTITY", ""),
            mode=os.environ.get("WANDB_MODE", ""),
            api_key=env_or("WANDB_API_KEY", ""),
            dir=os.environ.get("WANDB_DIR", str(root / "wandb")),
        ),
        # training runs in-process unless role + image + bucket configure SageMaker
        "sagemaker": SageMakerResource(
            role_arn=os.environ.get("TWIN_SAGEMAKER_ROLE", ""),
            image_uri=os.environ.get("TWIN_SAGEMAKER_IMAGE", ""),
            instance_type=os.environ.get("TWIN_SAGEMAKER_INSTANCE_TYPE", "ml.g5.2xlarge"),
            s3_bucket=os.environ.get("TWIN_SAGEMAKER_BUCKET", ""),
            s3_prefix=os.environ.get("TWIN_SAGEMAKER_PREFIX", "llm-twin/sagemaker"),
            region_name=os.environ.get("AWS_REGION", os.environ.get("AWS_DEFAULT_REGION", "us-east-1")),
            endpoint_url=os.environ.get("TWIN_SAGEMAKER_ENDPOINT_URL", ""),
        ),
    }
