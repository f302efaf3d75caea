#!/usr/bin/env bash
# The guardrails: lint and format (ruff), the layer contracts (import-linter), types (pyright,
# basic mode, through basedpyright whose wheel bundles its own Node). Run by scripts/test.sh
# before the tests; each step names itself so a failure says which guardrail broke.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
echo "== ruff check";          .venv/bin/ruff check --quiet .
echo "== ruff format --check"; .venv/bin/ruff format --check --quiet .
echo "== import-linter";       .venv/bin/lint-imports --no-cache | tail -n 4
echo "== pyright (basic)";     .venv/bin/basedpyright --level error | tail -n 1
