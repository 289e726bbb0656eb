#!/usr/bin/env bash
# Serve trained bundles in MONAI Label's stock monaibundle app, on 127.0.0.1 only, offline.
#   scripts/monailabel/serve.sh [BUNDLE] [BUNDLE_ROOT] [STUDIES] [PORT]
#   default: himix runs/demo/himix (trained by ./scripts/run_demo.sh) data/demo/images 8000
# Extra override files for the bundle's configs: CONFIGS="demo.json" (the default). Training from MONAI Label reads
# each image's sentence from sentences.json in the studies folder ({image id: sentence}); SKIP_TRAINERS=true hides it.
set -euo pipefail
cd "$(dirname "$0")/../.."
BUNDLE=${1:-himix}
BUNDLE_ROOT=${2:-runs/demo/$BUNDLE}
STUDIES=${3:-data/demo/images}
PORT=${4:-8000}
CONFIGS=${CONFIGS:-demo.json}
APPS=${APPS:-runs/monailabel/apps}
VENV=${MONAILABEL_VENV:-.venv-monailabel}

bash scripts/monailabel/setup_env.sh
if [ ! -f "$APPS/monaibundle/main.py" ]; then
    # the sample apps ship inside the monailabel wheel: this copies them, no network involved
    "$VENV/bin/python" -m monailabel.main apps --download --name monaibundle --output "$APPS"
fi
"$VENV/bin/python" scripts/monailabel/prepare_app.py --app "$APPS/monaibundle" --bundle "$BUNDLE" \
    --bundle-root "$BUNDLE_ROOT" --config $CONFIGS --overwrite
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 MONAI_LABEL_AUTO_UPDATE_SCORING=false
exec "$VENV/bin/python" -m monailabel.main start_server --app "$APPS/monaibundle" --studies "$STUDIES" \
    --conf models "$BUNDLE" --conf zoo_source github --conf sam2 false --conf skip_trainers "${SKIP_TRAINERS:-false}" \
    --host 127.0.0.1 --port "$PORT"
