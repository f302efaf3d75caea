#!/usr/bin/env bash
# README command 2: install everything, check the guardrails (ruff, import-linter, pyright),
# then run the whole test suite (offline; the tests start and stop their own servers on 127.0.0.1).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/install.sh
bash scripts/lint.sh
export PATH="$PWD/.venv/bin:$PATH" WANDB_MODE=offline HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
exec .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
