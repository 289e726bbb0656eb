"""MONAI Label's server (``monailabel.app:app``) with CORS limited to the origins named in ``TEXTSEG_CORS_ORIGINS``.

MONAI Label allows every origin, with credentials, unless ``MONAI_LABEL_CORS_ORIGINS`` is set, and in 0.8.5 setting
it breaks start-up (``start_server`` cannot serialise the parsed URLs) and would not match browsers anyway (each
origin is stored with a trailing ``/``). ``serve.sh`` starts the server with ``--uvicorn_app textseg_asgi:app``
instead: this module sets the CORS middleware's origins to exactly the comma-separated list in
``TEXTSEG_CORS_ORIGINS`` (empty: no cross-origin request is answered) before the server takes its first request.
"""

from __future__ import annotations

import os

from monailabel.app import app
from starlette.middleware.cors import CORSMiddleware

ORIGINS = [o.strip().rstrip("/") for o in os.environ.get("TEXTSEG_CORS_ORIGINS", "").split(",") if o.strip()]
for middleware in app.user_middleware:
    if middleware.cls is CORSMiddleware:
        middleware.kwargs["allow_origins"] = ORIGINS
        break
else:  # pragma: no cover - a MONAI Label without the middleware: nothing to limit, say so
    raise RuntimeError("MONAI Label's app has no CORS middleware to limit; check the monailabel version")
if app.middleware_stack is not None:  # pragma: no cover - built already: our origins would not apply
    raise RuntimeError("MONAI Label's middleware was built before its CORS origins could be set")
print(f"CORS origins (TEXTSEG_CORS_ORIGINS): {ORIGINS or 'none'}")
