#!/usr/bin/env bash
# Serve trained bundles with MONAI Label (the project's app, scripts/monailabel/app), on 127.0.0.1 only, offline.
#   scripts/monailabel/serve.sh [BUNDLE] [BUNDLE_ROOT] [STUDIES] [PORT]
#   default: himix runs/demo/himix (trained by ./scripts/run_demo.sh) data/demo/images 8000
# Extra override files for the bundle's configs: CONFIGS="demo.json" (the default). Training from MONAI Label reads
# each image's sentence from sentences.json in the studies folder ({image id: sentence}); SKIP_TRAINERS=true hides it.
# Browser origins allowed to call the server (CORS): CORS_ORIGINS, comma-separated (default: the server's own origin).
# HOST=0.0.0.0 exposes the server beyond this machine: read docs/monailabel.md (authentication) first.
set -euo pipefail
cd "$(dirname "$0")/../.."
BUNDLE=${1:-himix}
BUNDLE_ROOT=${2:-runs/demo/$BUNDLE}
STUDIES=${3:-data/demo/images}
PORT=${4:-8000}
HOST=${HOST:-127.0.0.1}
CONFIGS=${CONFIGS:-demo.json}
APPS=${APPS:-runs/monailabel/apps}
VENV=${MONAILABEL_VENV:-.venv-monailabel}
APP="$APPS/textseg"

bash scripts/monailabel/setup_env.sh
# the app's code is refreshed from the repository on every start; the placed bundles in model/ stay
mkdir -p "$APP"
cp -R scripts/monailabel/app/. "$APP/"
"$VENV/bin/python" scripts/monailabel/prepare_app.py --app "$APP" --bundle "$BUNDLE" \
    --bundle-root "$BUNDLE_ROOT" --config $CONFIGS --overwrite
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 MONAI_LABEL_AUTO_UPDATE_SCORING=false
# MONAI Label's own server, with CORS limited to these origins (app/textseg_asgi.py explains why not MONAI_LABEL_CORS_ORIGINS)
export TEXTSEG_CORS_ORIGINS=${CORS_ORIGINS-"http://$HOST:$PORT"}
export PYTHONPATH="$APP${PYTHONPATH:+:$PYTHONPATH}"
exec "$VENV/bin/python" -m monailabel.main start_server --app "$APP" --studies "$STUDIES" \
    --conf models "$BUNDLE" --conf skip_trainers "${SKIP_TRAINERS:-false}" \
    --host "$HOST" --port "$PORT" --uvicorn_app textseg_asgi:app
