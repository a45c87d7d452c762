"""/docs: the OpenAPI document's page, offline.

Swagger UI 5 from the `swagger-ui-bundle-v2` package, started by our own script file, so the page
needs no CDN and no inline script (its inline styles: app.core.security's DOCS_CSP).
"""

from __future__ import annotations

from pathlib import Path

import swagger_ui_bundle
from fastapi import FastAPI
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

SWAGGER_DIR = Path(swagger_ui_bundle.swagger_ui_path)

PAGE = """<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>attnlab API</title>
  <link rel="icon" href="/docs-assets/favicon-32x32.png">
  <link rel="stylesheet" href="/docs-assets/swagger-ui.css">
</head>
<body>
  <nav aria-label="back to the pages"><a id="back-to-pages" href="/">&larr; attnlab pages</a></nav>
  <div id="swagger-ui" data-openapi-url="{openapi_url}"></div>
  <script src="/docs-assets/swagger-ui-bundle.js"></script>
  <script src="/static/js/swagger-init.js"></script>
</body>
</html>
"""


def mount_docs(app: FastAPI) -> None:
    """Serve /docs (create the app with docs_url=None, redoc_url=None)."""
    app.mount("/docs-assets", StaticFiles(directory=SWAGGER_DIR), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return HTMLResponse(PAGE.format(openapi_url=app.openapi_url))
