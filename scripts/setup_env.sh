#!/usr/bin/env bash
# Create (once) and update the project's virtual environment in .venv, with only Python 3 on the machine.
# torch and torchvision are installed first, pinned by constraints.txt, which every pip call receives.
# Re-running is cheap: nothing is installed again unless pyproject.toml or a constraints file changed.
# Other environments reuse this script through variables (scripts/monailabel/setup_env.sh does):
#   VENV (.venv), EXTRAS (test,demo,dicom,data,report), EXTRA_PACKAGES (more requirement specs, e.g. monailabel),
#   EXTRA_CONSTRAINTS (one more constraints file for them), SEED_VENV (a venv whose big packages, SEED_PACKAGES with
#   what they require, are hard-linked in before pip runs: seconds instead of minutes of unpacking; pip then keeps
#   or replaces each as the constraints decide; see scripts/link_packages.py).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}
EXTRAS=${EXTRAS:-test,demo,dicom,data,report}
EXTRA_PACKAGES=${EXTRA_PACKAGES:-}
EXTRA_CONSTRAINTS=${EXTRA_CONSTRAINTS:-}
SEED_VENV=${SEED_VENV:-}
SEED_PACKAGES=${SEED_PACKAGES:-torch torchvision itk monai transformers scipy}
TAG="[setup${EXTRA_PACKAGES:+ $EXTRA_PACKAGES}]"

if [ ! -x "$VENV/bin/python" ]; then
    echo "$TAG creating $VENV with $($PYTHON --version)"
    "$PYTHON" -m venv "$VENV"
fi
constraints=(-c constraints.txt)
[ -n "$EXTRA_CONSTRAINTS" ] && constraints+=(-c "$EXTRA_CONSTRAINTS")
stamp="$VENV/.textseg-installed"
want="$(cat pyproject.toml constraints.txt $EXTRA_CONSTRAINTS | sha256sum | cut -d' ' -f1) $EXTRAS $EXTRA_PACKAGES"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    exit 0
fi
pip() { "$VENV/bin/python" -m pip --disable-pip-version-check -q "$@"; }
if [ -n "$SEED_VENV" ] && [ -x "$SEED_VENV/bin/python" ]; then
    "$VENV/bin/python" scripts/link_packages.py --source "$SEED_VENV" $SEED_PACKAGES
fi
echo "$TAG installing torch and torchvision (constraints.txt)"
# byte-compiled at install time (no --no-compile): this machine sets PYTHONDONTWRITEBYTECODE=1, so a module left
# uncompiled is compiled again by every process that imports it (a fresh-clone suite took 28 minutes so)
pip install -c constraints.txt torch torchvision
echo "$TAG installing textseg-bundles with extras [$EXTRAS] $EXTRA_PACKAGES"
# shellcheck disable=SC2086  # EXTRA_PACKAGES and SEED_PACKAGES are lists
pip install "${constraints[@]}" -e ".[$EXTRAS]" $EXTRA_PACKAGES
echo "$want" > "$stamp"
echo "$TAG done"
