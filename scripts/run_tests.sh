#!/usr/bin/env bash
# The test suite: set up .venv, then run pytest (any failing test makes this exit non-zero).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
exec .venv/bin/python -m pytest -q "$@"
