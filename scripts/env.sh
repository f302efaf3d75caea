#!/usr/bin/env bash
# Environment for running the project locally (sourced by the other scripts; source it in your
# shell too before `dagster dev` or `dagster asset materialize`).
_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export PATH="$_root/.venv/bin:$PATH"
export DAGSTER_HOME="${DAGSTER_HOME:-$_root/.dagster_home}"
export TWIN_DATA_DIR="${TWIN_DATA_DIR:-$_root/.data}"
export TWIN_SAMPLE_PORT="${TWIN_SAMPLE_PORT:-8765}"
export TWIN_SAMPLE_SITE_URL="${TWIN_SAMPLE_SITE_URL:-http://127.0.0.1:$TWIN_SAMPLE_PORT}"
# The demo crawls the sample site on loopback, which the SSRF guard refuses unless allowed.
export TWIN_CRAWL_ALLOW_HOSTS="${TWIN_CRAWL_ALLOW_HOSTS:-127.0.0.1}"
export TWIN_CRAWL_ALLOW_LOCAL="${TWIN_CRAWL_ALLOW_LOCAL:-1}"  # the sample repo and exports are local paths
export WANDB_MODE="${WANDB_MODE:-offline}"
export HF_HUB_OFFLINE="${HF_HUB_OFFLINE:-1}"
export TOKENIZERS_PARALLELISM=false
mkdir -p "$DAGSTER_HOME" "$TWIN_DATA_DIR"
cp "$_root/dagster.yaml" "$DAGSTER_HOME/dagster.yaml"
cd "$_root"
