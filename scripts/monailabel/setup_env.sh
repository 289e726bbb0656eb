#!/usr/bin/env bash
# Create (once) MONAI Label's own environment in .venv-monailabel: monailabel needs pydicom<3 (pydicom-seg) and
# numpy<2, which the project's .venv does not use, so the two never share a venv. Same script as the project's
# (torch/torchvision first, pinned by constraints.txt), plus monailabel and scripts/monailabel/constraints.txt.
# torch and torchvision are hard-linked from the project's .venv when it has them (SEED_VENV, '' to unpack anew).
set -euo pipefail
cd "$(dirname "$0")/../.."
SEED_VENV=${SEED_VENV-.venv} VENV=${MONAILABEL_VENV:-.venv-monailabel} EXTRAS=demo EXTRA_PACKAGES=monailabel \
    EXTRA_CONSTRAINTS=scripts/monailabel/constraints.txt exec bash scripts/setup_env.sh
