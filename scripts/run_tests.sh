#!/usr/bin/env bash
# The test suite: set up .venv, then run pytest (any failing test makes this exit non-zero). Orthanc, the PACS of
# the PACS tests, is installed when missing (scripts/setup_orthanc.sh, apt-get); if it cannot be, they are skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
bash scripts/setup_orthanc.sh || echo "(the PACS tests will be skipped)"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
# -rs: the reason of every skipped test is printed (e.g. the PACS tests without Orthanc)
exec .venv/bin/python -m pytest -q -rs "$@"
