#!/usr/bin/env bash
# Create (once) and update the project's virtual environment in .venv, with only Python 3 on the machine.
# torch and torchvision are installed first, pinned by constraints.txt, which every pip call receives.
# Re-running is cheap: nothing is installed again unless pyproject.toml or constraints.txt changed.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}
EXTRAS=${EXTRAS:-test,demo,dicom,data}

if [ ! -x "$VENV/bin/python" ]; then
    echo "[setup] creating $VENV with $($PYTHON --version)"
    "$PYTHON" -m venv "$VENV"
fi
stamp="$VENV/.textseg-installed"
want="$(cat pyproject.toml constraints.txt | sha256sum | cut -d' ' -f1) $EXTRAS"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    exit 0
fi
pip() { "$VENV/bin/python" -m pip --disable-pip-version-check -q "$@"; }
echo "[setup] installing torch and torchvision (constraints.txt)"
pip install -c constraints.txt torch torchvision
echo "[setup] installing textseg-bundles with extras [$EXTRAS]"
pip install -c constraints.txt -e ".[$EXTRAS]"
echo "$want" > "$stamp"
echo "[setup] done"
