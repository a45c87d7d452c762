"""ASGI middleware: security headers, request log lines with a request id, metrics.

Pure ASGI (not BaseHTTPMiddleware) so streaming responses (SSE) pass through untouched.
"""

from __future__ import annotations

import logging
import time
import uuid

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .services import logctx
from .services.metrics import Metrics

log = logging.getLogger("attnlab.access")

STRICT_CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
              "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'")
# Pages link Plotly.js's global rules instead of letting it inject a <style> (see app/pages.py),
# and send their own policy: the strict one plus hashes of Plotly's two fixed style attributes.
# Swagger UI on /docs is served from our own files, but it sets many inline styles
DOCS_CSP = STRICT_CSP.replace("style-src 'self'", "style-src 'self' 'unsafe-inline'")
DOCS_PATHS = ("/docs",)


class SecurityHeadersMiddleware:
    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        csp = DOCS_CSP if scope["path"].startswith(DOCS_PATHS) else STRICT_CSP

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers.setdefault("Content-Security-Policy", csp)
                headers.setdefault("X-Content-Type-Options", "nosniff")
                headers.setdefault("Referrer-Policy", "no-referrer")
                headers.setdefault("X-Frame-Options", "DENY")
                headers.setdefault("Cross-Origin-Opener-Policy", "same-origin")
                if scope["path"].startswith("/static/"):
                    # plotly.min.js is 4.6 MB: let the browser keep it between page loads
                    headers.setdefault("Cache-Control", "public, max-age=3600")
            await send(message)

        await self.app(scope, receive, send_with_headers)


class RequestLogMiddleware:
    """One structured line per request; counts and times it by route template."""

    def __init__(self, app: ASGIApp, metrics: Metrics):
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        request_id = _incoming_id(scope) or uuid.uuid4().hex[:16]
        fields = logctx.start()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                MutableHeaders(scope=message).setdefault("X-Request-ID", request_id)
            await send(message)

        self.metrics.in_flight.inc()
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            self.metrics.in_flight.dec()
            seconds = time.perf_counter() - t0
            route = getattr(scope.get("route"), "path", None) or ("/static" if scope["path"].startswith("/static")
                                                                  else "unmatched")
            self.metrics.requests.labels(route, scope["method"], str(status)).inc()
            self.metrics.latency.labels(route).observe(seconds)
            extra = {"request_id": request_id, "method": scope["method"], "path": scope["path"], "status": status,
                     "ms": round(seconds * 1e3, 1), **fields}
            log.info(" ".join(f"{k}={v}" for k, v in extra.items()), extra={"attnlab": extra})


def _incoming_id(scope: Scope) -> str | None:
    for key, value in scope.get("headers", []):
        if key == b"x-request-id":
            text = value.decode("latin-1")
            # echo a client's id only when it is short and plain, so logs cannot be forged
            if 0 < len(text) <= 64 and all(c.isalnum() or c in "-_." for c in text):
                return text
    return None
