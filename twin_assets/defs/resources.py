"""Which resource instance each asset gets: local defaults, production by environment variable.

This is the one place where environment variables become resource fields (see the README's
configuration table for every variable). Resources and the plain logic below them never read
or write `os.environ`: they get their settings as fields and arguments, so a test or another
entry point can configure them without touching the process environment. The environment is
read when `build_resources` is called (when Dagster loads the definitions, or a CLI command
runs), never at import.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from datetime import timedelta
from pathlib import Path
from typing import Literal, TypeVar, cast, get_origin

import dagster as dg
from pydantic import ValidationError

from resources.artifacts import ArtifactStoreResource
from resources.author_registry import AuthorRegistryResource
from resources.crawler import CrawlerResource
from resources.embedder import EmbedderResource
from resources.llm import TextGeneratorResource
from resources.sagemaker import SageMakerResource
from resources.sagemaker_endpoint import SageMakerEndpointResource
from resources.tracking import WandbResource
from resources.vector_store import QdrantResource
from resources.warehouse import WarehouseResource
from twin_assets.authors.registry import PLACEHOLDERS
from twin_assets.crawling.settings import CrawlSettings
from twin_assets.domain.generation import GenerationBackend
from twin_assets.paths import PROJECT_ROOT, data_dir
from twin_assets.serving.snapshot_retention import DEFAULT_KEEP, validate_keep

Environ = Mapping[str, str]
T = TypeVar("T")

_FALSE = {"0", "false", "no", "off"}

# Every CrawlSettings field and the variable that sets it (a test fails if one is missing).
# Values are parsed and validated by CrawlSettings itself; list fields are comma-separated.
CRAWL_ENV: dict[str, str] = {
    "TWIN_CRAWL_ALLOW_HOSTS": "allow_hosts",
    "TWIN_CRAWL_ALLOW_LOCAL": "allow_local_sources",
    "TWIN_CRAWL_EXPORT_ROOTS": "export_roots",
    "TWIN_CHROMIUM_PATH": "chromium_path",
    "TWIN_CRAWL_BROWSER": "browser_mode",
    "TWIN_CRAWL_BLOCK_HEAVY_RESOURCES": "block_heavy_resources",
    "TWIN_CRAWL_TIMEOUT_S": "page_timeout_s",
    "TWIN_CRAWL_MAX_PAGE_BYTES": "max_page_bytes",
    "TWIN_CRAWL_MAX_REDIRECTS": "max_redirects",
    "TWIN_CRAWL_MAX_RETRIES": "max_retries",
    "TWIN_CRAWL_BACKOFF_S": "backoff_base_s",
    "TWIN_CRAWL_DOMAIN_INTERVAL_S": "min_domain_interval_s",
    "TWIN_CRAWL_MAX_LISTING_ITEMS": "max_listing_items",
    "TWIN_CRAWL_MAX_SCROLL_ROUNDS": "max_scroll_rounds",
    "TWIN_CRAWL_SCROLL_SETTLE_S": "scroll_settle_s",
    "TWIN_CRAWL_USER_AGENT": "user_agent",
    "TWIN_CRAWL_GIT_TIMEOUT_S": "git_timeout_s",
    "TWIN_CRAWL_MAX_REPO_FILE_BYTES": "max_repo_file_bytes",
    "TWIN_CRAWL_MAX_REPO_BYTES": "max_repo_total_bytes",
    "TWIN_CRAWL_MAX_REPO_FILES": "max_repo_files",
    "TWIN_GITHUB_API": "github_api_base",
}


class ConfigurationError(ValueError):
    """An environment variable holds a value its resource cannot use; the message names it."""


def env_or(name: str, default: str, environ: Environ | None = None) -> str | dg.EnvVar:
    """A variable that is set becomes a Dagster `EnvVar` (resolved at run time, never shown in
    the UI or logged); an unset one falls back to the local default. An `EnvVar` can only name
    the process environment, so a value from an explicit `environ` (tests) is used as it is."""
    if environ is None or environ is os.environ:
        return dg.EnvVar(name) if os.environ.get(name) else default
    return environ.get(name) or default


def _parsed(env: Environ, name: str, default: T, parse: Callable[[str], T]) -> T:
    raw = env.get(name, "")
    if not raw.strip():
        return default
    try:
        return parse(raw.strip())
    except ValueError as exc:
        raise ConfigurationError(f"{name}={raw!r} is not valid: {exc}") from None


def _flag(env: Environ, name: str, default: bool) -> bool:
    return _parsed(env, name, default, lambda raw: raw.lower() not in _FALSE)


def _csv(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def crawl_settings_from_env(environ: Environ | None = None) -> CrawlSettings:
    """CrawlSettings from the TWIN_CRAWL_* variables (see CRAWL_ENV); unset or empty ones keep
    the model's safe defaults, and an invalid one is an error naming the variable."""
    env = os.environ if environ is None else environ
    fields = CrawlSettings.model_fields
    variable_of = {field: name for name, field in CRAWL_ENV.items()}
    values: dict[str, object] = {}
    for name, field in CRAWL_ENV.items():
        raw = env.get(name, "").strip()
        if raw:
            values[field] = _csv(raw) if get_origin(fields[field].annotation) is list else raw
    try:
        return CrawlSettings.model_validate(values)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            name = variable_of.get(str(err["loc"][0]), str(err["loc"][0]))
            problems.append(f"{name}={env.get(name, '')!r} is not valid: {err['msg']}")
        raise ConfigurationError("; ".join(problems)) from None


def registry_placeholders(environ: Environ | None = None) -> dict[str, str]:
    """The registry's `${...}` placeholders that are set; the others keep the sample's defaults."""
    env = os.environ if environ is None else environ
    return {name: env[name] for name in PLACEHOLDERS if env.get(name)}


def build_resources(environ: Environ | None = None) -> dict:
    """Every resource, configured from `environ` (default: the process environment, read now)."""
    env = os.environ if environ is None else environ
    root = Path(env["TWIN_DATA_DIR"]).resolve() if env.get("TWIN_DATA_DIR") else data_dir()
    return {
        "authors": AuthorRegistryResource(
            path=env.get("TWIN_AUTHORS_FILE", str(PROJECT_ROOT / "authors.yaml")),
            placeholders=registry_placeholders(env),
        ),
        "warehouse": WarehouseResource(
            uri=env_or("TWIN_MONGO_URI", "", env),
            database=env.get("TWIN_MONGO_DATABASE", "twin"),
            embedded_data_dir=str(root / "mongo"),
            embedded_port=_parsed(env, "TWIN_MONGO_PORT", 27027, int),
            server_selection_timeout_ms=_parsed(env, "TWIN_MONGO_TIMEOUT_MS", 10_000, int),
        ),
        # safe defaults; every CrawlSettings field through its variable in CRAWL_ENV
        "crawler": CrawlerResource.from_settings(crawl_settings_from_env(env)),
        "embedder": EmbedderResource(
            model=env.get("TWIN_EMBEDDING_MODEL", ""),
            batch_size=_parsed(env, "TWIN_EMBEDDING_BATCH", 64, int),
            device=env.get("TWIN_EMBEDDING_DEVICE", "auto"),
            # the Hugging Face variable keeps its meaning: offline unless set to a false value
            offline=_flag(env, "HF_HUB_OFFLINE", True),
            cache_folder=env.get("TWIN_EMBEDDING_CACHE_DIR", ""),
        ),
        # local mode in <data_dir>/qdrant unless TWIN_QDRANT_URL points at a server
        "qdrant": QdrantResource(
            url=env.get("TWIN_QDRANT_URL", ""),
            api_key=env_or("TWIN_QDRANT_API_KEY", "", env),
            path=str(root / "qdrant"),
            collection=env.get("TWIN_QDRANT_COLLECTION", "twin_chunks"),
        ),
        "artifacts": ArtifactStoreResource(
            root_dir=env.get("TWIN_ARTIFACT_DIR", str(root / "artifacts")),
            s3_bucket=env.get("TWIN_S3_BUCKET", ""),
            s3_prefix=env.get("TWIN_S3_PREFIX", "llm-twin"),
            # index snapshot versions kept per author after a publish (aliased ones always)
            index_keep=_parsed(env, "TWIN_INDEX_KEEP", DEFAULT_KEEP, lambda raw: validate_keep(int(raw))),
            hf_repo=env.get("TWIN_HF_REPO", ""),
            hf_token=env_or("HF_TOKEN", "", env),
        ),
        # "offline" (no LLM) unless TWIN_LLM_BACKEND says otherwise or a server URL is set
        "llm": TextGeneratorResource(
            # TextGeneratorResource validates the value against GenerationBackend
            backend=cast(
                GenerationBackend,
                env.get("TWIN_LLM_BACKEND", "openai" if env.get("TWIN_LLM_BASE_URL") else "offline"),
            ),
            base_url=env.get("TWIN_LLM_BASE_URL", ""),
            model=env.get("TWIN_LLM_MODEL", ""),
            api_key=env_or("TWIN_LLM_API_KEY", "", env),
            base_model=env.get("TWIN_BASE_MODEL", str(root / "models" / "base" / "smollm2-135m-instruct")),
            max_concurrency=_parsed(env, "TWIN_LLM_MAX_CONCURRENCY", 4, int),
            timeout_s=_parsed(env, "TWIN_LLM_TIMEOUT_S", 60.0, float),
        ),
        # training: wandb offline under <data_dir>/wandb unless WANDB_API_KEY is set
        "wandb": WandbResource(
            enabled=_flag(env, "TWIN_WANDB_ENABLED", True),
            project=env.get("WANDB_PROJECT", "llm-twin"),
            entity=env.get("WANDB_ENTITY", ""),
            mode=env.get("WANDB_MODE", ""),
            api_key=env_or("WANDB_API_KEY", "", env),
            dir=env.get("WANDB_DIR", str(root / "wandb")),
            silent=_flag(env, "WANDB_SILENT", True),
        ),
        # training runs in-process unless role + image + bucket configure SageMaker
        "sagemaker": SageMakerResource(
            role_arn=env.get("TWIN_SAGEMAKER_ROLE", ""),
            image_uri=env.get("TWIN_SAGEMAKER_IMAGE", ""),
            instance_type=env.get("TWIN_SAGEMAKER_INSTANCE_TYPE", "ml.g5.2xlarge"),
            s3_bucket=env.get("TWIN_SAGEMAKER_BUCKET", ""),
            s3_prefix=env.get("TWIN_SAGEMAKER_PREFIX", "llm-twin/sagemaker"),
            region_name=env.get("AWS_REGION", env.get("AWS_DEFAULT_REGION", "us-east-1")),
            endpoint_url=env.get("TWIN_SAGEMAKER_ENDPOINT_URL", ""),
        ),
        # deployed_endpoint: the local `twin serve` process unless TWIN_DEPLOY_TARGET=sagemaker
        "sagemaker_endpoint": deployment_target(env),
    }


DEPLOY_TARGETS = ("local", "sagemaker")


def deployment_target(environ: Environ | None = None) -> SageMakerEndpointResource:
    """Where `deployed_endpoint` deploys (TWIN_DEPLOY_TARGET) and, for SageMaker, the endpoint's
    placement and autoscaling limits (TWIN_SAGEMAKER_*; the role is the training one)."""
    env = os.environ if environ is None else environ
    target = env.get("TWIN_DEPLOY_TARGET", "").strip().lower() or "local"
    if target not in DEPLOY_TARGETS:
        raise ConfigurationError(
            f"TWIN_DEPLOY_TARGET={target!r} is not valid: use one of {', '.join(DEPLOY_TARGETS)}"
        )
    host = env.get("TWIN_SERVE_HOST", "").strip() or "127.0.0.1"
    if host in ("0.0.0.0", "::"):  # a wildcard bind is reached on loopback from this machine
        host = "127.0.0.1"
    port = _parsed(env, "TWIN_SERVE_PORT", 8008, int)
    container_env = {
        name: env[name] for name in ("TWIN_S3_BUCKET", "TWIN_S3_PREFIX", "TWIN_BASE_MODEL") if env.get(name)
    }
    resource = SageMakerEndpointResource(
        target=cast(Literal["local", "sagemaker"], target),
        service_url=f"http://{host}:{port}",
        switch_timeout_s=_parsed(env, "TWIN_DEPLOY_SWITCH_TIMEOUT_S", 120.0, float),
        role_arn=env.get("TWIN_SAGEMAKER_ROLE", ""),
        image_uri=env.get("TWIN_SAGEMAKER_SERVE_IMAGE", ""),
        instance_type=env.get("TWIN_SAGEMAKER_ENDPOINT_INSTANCE_TYPE", "ml.g5.xlarge"),
        initial_instance_count=_parsed(env, "TWIN_SAGEMAKER_ENDPOINT_INSTANCES", 1, int),
        container_env=container_env,
        min_capacity=_parsed(env, "TWIN_SAGEMAKER_MIN_INSTANCES", 1, int),
        max_capacity=_parsed(env, "TWIN_SAGEMAKER_MAX_INSTANCES", 2, int),
        target_invocations_per_instance=_parsed(env, "TWIN_SAGEMAKER_TARGET_INVOCATIONS", 30.0, float),
        scale_in_cooldown_s=_parsed(env, "TWIN_SAGEMAKER_SCALE_IN_COOLDOWN_S", 300, int),
        scale_out_cooldown_s=_parsed(env, "TWIN_SAGEMAKER_SCALE_OUT_COOLDOWN_S", 60, int),
        rollback_alarms=_csv(env.get("TWIN_SAGEMAKER_ROLLBACK_ALARMS", "")),
        region_name=env.get("AWS_REGION", env.get("AWS_DEFAULT_REGION", "us-east-1")),
        endpoint_url=env.get("TWIN_SAGEMAKER_ENDPOINT_URL", ""),
    )
    if target == "sagemaker":
        try:
            resource.endpoint_settings()  # role, image and limits checked now, not mid-deployment
        except ValidationError as exc:
            problems = "; ".join(str(e["msg"]) for e in exc.errors())
            raise ConfigurationError(
                f"TWIN_DEPLOY_TARGET=sagemaker: {problems} (TWIN_SAGEMAKER_ROLE, TWIN_SAGEMAKER_SERVE_IMAGE, "
                "TWIN_SAGEMAKER_MIN_INSTANCES/MAX_INSTANCES)"
            ) from None
    return resource


# Assets with a freshness policy and the variable that overrides it. The weekly re-crawl
# (Mondays 03:00 UTC) materializes raw_documents for every author even when nothing changed,
# and the eager automation conditions carry that materialization down to embedded_chunks and on
# to the deployment, so a healthy loop refreshes both once a week: WARN when a weekly cycle is a
# day late, FAIL when it is missed.
FRESHNESS_ENV: dict[str, str] = {
    "embedded_chunks": "TWIN_FRESHNESS_EMBEDDED_CHUNKS",
    "deployed_endpoint": "TWIN_FRESHNESS_DEPLOYED_ENDPOINT",
}
FRESHNESS_DEFAULTS: dict[str, str] = {
    "embedded_chunks": "fail=9d;warn=8d",
    # retraining and evaluation run between the index refresh and the deployment
    "deployed_endpoint": "fail=10d;warn=8d",
}
_DURATION_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def _duration(raw: str) -> timedelta:
    text = raw.strip().lower()
    unit = _DURATION_UNITS.get(text[-1:])
    try:
        amount = float(text[:-1])
    except ValueError:
        amount = -1.0
    if unit is None or amount <= 0:
        raise ValueError(f"{raw!r} is not a duration like 90m, 36h, 9d or 1w")
    return timedelta(**{unit: amount})


def parse_freshness_policy(raw: str) -> dg.FreshnessPolicy | None:
    """One policy from its text form, so an operator can set it without code:
    `off` (no policy), `9d` or `9d/8d` (fail window / warn window), `fail=9d;warn=8d`, or
    `cron=0 9 * * 1;lower=30h[;tz=Europe/Berlin]` (materialized within 30 h before each
    Monday 09:00)."""
    text = raw.strip()
    if text.lower() in {"off", "none", "0", "false", "no"}:
        return None
    if "=" not in text:
        fail, _, warn = text.partition("/")
        fields = {"fail": fail, **({"warn": warn} if warn else {})}
    else:
        fields = {}
        for part in filter(None, (p.strip() for p in text.split(";"))):
            key, sep, value = part.partition("=")
            if not sep or not value.strip():
                raise ValueError(f"{part!r} is not key=value")
            fields[key.strip().lower()] = value.strip()
    unknown = set(fields) - {"fail", "warn", "cron", "lower", "tz"}
    if unknown:
        raise ValueError(f"unknown key(s) {sorted(unknown)}; use fail/warn or cron/lower/tz")
    try:
        if "cron" in fields:
            if "lower" not in fields or {"fail", "warn"} & set(fields):
                raise ValueError("a cron policy takes cron=...;lower=...[;tz=...] only")
            return dg.FreshnessPolicy.cron(
                deadline_cron=fields["cron"],
                lower_bound_delta=_duration(fields["lower"]),
                timezone=fields.get("tz", "UTC"),
            )
        if "fail" not in fields or {"lower", "tz"} & set(fields):
            raise ValueError("a time-window policy takes fail=...[;warn=...] only")
        return dg.FreshnessPolicy.time_window(
            fail_window=_duration(fields["fail"]),
            warn_window=_duration(fields["warn"]) if "warn" in fields else None,
        )
    except ValueError:
        raise
    except Exception as exc:  # Dagster's own checks (warn < fail, cron syntax, time zone): CheckError
        raise ValueError(str(exc).removeprefix("Invariant failed. Description: ")) from None


def freshness_policies_from_env(environ: Environ | None = None) -> dict[str, dg.FreshnessPolicy | None]:
    """The freshness policy of each asset in FRESHNESS_ENV (None: switched off); an invalid value
    is an error naming its variable, raised when the definitions load."""
    env = os.environ if environ is None else environ
    return {
        asset: _parsed(env, name, parse_freshness_policy(FRESHNESS_DEFAULTS[asset]), parse_freshness_policy)
        for asset, name in FRESHNESS_ENV.items()
    }


AUTOMATION_INTERVAL_ENV = "TWIN_AUTOMATION_INTERVAL_S"
AUTOMATION_INTERVAL_DEFAULT_S = 30


def _interval_seconds(raw: str) -> int:
    value = int(raw)
    if not 5 <= value <= 3600:
        raise ValueError("use a whole number of seconds from 5 to 3600")
    return value


def automation_interval_from_env(environ: Environ | None = None) -> int:
    """Seconds between two evaluations of the automation sensor (TWIN_AUTOMATION_INTERVAL_S,
    default 30): how long a finished stage waits before the next one is requested."""
    env = os.environ if environ is None else environ
    return _parsed(env, AUTOMATION_INTERVAL_ENV, AUTOMATION_INTERVAL_DEFAULT_S, _interval_seconds)
