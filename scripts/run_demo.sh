#!/usr/bin/env bash
# The main job: set up .venv, make the demo data, train and evaluate the bundles on it, print the test Dice.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
exec .venv/bin/python scripts/demo.py "$@"
