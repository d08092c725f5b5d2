"""The interactive API documentation (``/docs``), served entirely by spoc.

FastAPI's default page loads Swagger UI from a CDN and starts it with an inline script: neither works in a
closed network or under a Content-Security-Policy of ``'self'``. Here the Swagger UI assets come from the
``fastapi-offline`` package (its static files only; Swagger UI 5, Apache-2.0) under ``/docs/assets/`` and
the start-up script is ``broker/static/docs.js``. ReDoc and the OAuth2 redirect page are not offered.
"""

from __future__ import annotations

from pathlib import Path

import fastapi_offline
from fastapi import FastAPI
from fastapi.responses import FileResponse, HTMLResponse
from fastapi.staticfiles import StaticFiles

__all__ = ["DOCS_ASSETS", "mount_docs"]

DOCS_ASSETS = "/docs/assets"
_SWAGGER_DIR = Path(fastapi_offline.__file__).parent / "static"
_START = Path(__file__).parent / "static" / "docs.js"

_PAGE = f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>spoc API</title>
<link rel="stylesheet" href="{DOCS_ASSETS}/swagger-ui.css">
<link rel="icon" href="{DOCS_ASSETS}/favicon.png">
</head>
<body>
<div id="swagger-ui"></div>
<script src="{DOCS_ASSETS}/swagger-ui-bundle.js"></script>
<script src="/docs/start.js"></script>
</body>
</html>
"""


def mount_docs(app: FastAPI) -> None:
    """Add ``/docs``, its start-up script and the Swagger UI assets to ``app`` (created with docs off)."""

    @app.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        return HTMLResponse(_PAGE)

    @app.get("/docs/start.js", include_in_schema=False)
    def start() -> FileResponse:
        return FileResponse(_START, media_type="text/javascript")

    app.mount(DOCS_ASSETS, StaticFiles(directory=_SWAGGER_DIR), name="docs-assets")
