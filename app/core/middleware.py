"""ASGI middleware: security headers, request log lines with a request id, metrics, a request-size limit.

Pure ASGI (not BaseHTTPMiddleware) so streaming responses (SSE) pass through untouched.
"""

from __future__ import annotations

import logging
import time
import uuid

from starlette.datastructures import MutableHeaders
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from . import logctx
from .metrics import Metrics
from .security import DOCS_CSP, DOCS_PATHS, SECURITY_HEADERS, STRICT_CSP

log = logging.getLogger("attnlab.access")



class SecurityHeadersMiddleware:
    """The headers of app.core.security on every response; a page's own CSP (app.web.pages) wins."""

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
                for name, value in SECURITY_HEADERS:
                    headers.setdefault(name, value)
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
        bytes_in = bytes_out = 0

        async def receive_counted() -> Message:
            nonlocal bytes_in
            message = await receive()
            bytes_in += len(message.get("body", b""))
            return message

        async def send_with_id(message: Message) -> None:
            nonlocal status, bytes_out
            if message["type"] == "http.response.start":
                status = message["status"]
                MutableHeaders(scope=message).setdefault("X-Request-ID", request_id)
            bytes_out += len(message.get("body", b""))
            await send(message)

        self.metrics.in_flight.inc()
        try:
            await self.app(scope, receive_counted, send_with_id)
        finally:
            self.metrics.in_flight.dec()
            seconds = time.perf_counter() - t0
            route = getattr(scope.get("route"), "path", None) or ("/static" if scope["path"].startswith("/static")
                                                                  else "unmatched")
            self.metrics.requests.labels(route, scope["method"], str(status)).inc()
            self.metrics.latency.labels(route).observe(seconds)
            self.metrics.after_request()
            # never the query string (pages keep the user's text there) nor the body: sizes only
            extra = {"request_id": request_id, "method": scope["method"], "path": _log_path(scope), "status": status,
                     "ms": round(seconds * 1e3, 1), "bytes_in": bytes_in, "bytes_out": bytes_out, **fields}
            log.info(" ".join(f"{k}={v}" for k, v in extra.items()), extra={"attnlab": extra})


class BodyTooLarge(Exception):
    """Raised from ``receive`` once a streamed body passes the limit; BodyLimitMiddleware answers 413."""


class BodyLimitMiddleware:
    """Refuse a request body over ``max_bytes`` with 413 before it is read into memory.

    A declared Content-Length over the limit is answered at once, without reading the body; a chunked
    body is counted as it arrives and cut off at the limit. (Without this, Starlette joins the whole body
    before validation: a 60 MiB body cost 120 MiB of peak memory for a 422.) The answer does not close
    the connection: uvicorn then discards what the client still sends, a chunk at a time, and hangs up
    after its keep-alive timeout once the client goes quiet. Closing at once would reset a connection
    with unread data, and a client still sending its body (httpx, requests) could lose the 413 to it.
    """

    def __init__(self, app: ASGIApp, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_bytes:
            await self._refuse(scope, receive, send, f"{declared} bytes")
            return
        received = 0
        over = started = False

        async def receive_counted() -> Message:
            nonlocal received, over
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    over = True
                    raise BodyTooLarge(received)
            return message

        async def send_unless_cut_off(message: Message) -> None:
            nonlocal started
            if over and not started:
                return  # the app's own answer to the body it could not finish (FastAPI: a 400) gives way to ours
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive_counted, send_unless_cut_off)
        except Exception:
            # after the cut-off, whatever the app raised (BodyTooLarge, or it wrapped) is that cut-off
            if not over or started:
                raise
        if over and not started:
            await self._refuse(scope, receive, send, f"at least {received} bytes")

    async def _refuse(self, scope: Scope, receive: Receive, send: Send, size: str) -> None:
        detail = f"body: {size} is over the limit of {self.max_bytes} bytes (max_body_bytes)"
        response = JSONResponse({"detail": detail}, status_code=413)
        await response(scope, receive, send)


def _content_length(scope: Scope) -> int | None:
    for key, value in scope.get("headers", []):
        if key == b"content-length":
            return int(value) if value.isdigit() else None
    return None


def _log_path(scope: Scope, limit: int = 200) -> str:
    """The path as sent (percent-encoded: no spaces or line breaks to forge log lines with), cut short."""
    raw = scope.get("raw_path")
    path = raw.decode("ascii", "backslashreplace") if raw else scope["path"].encode("unicode_escape").decode()
    return path if len(path) <= limit else path[:limit] + "..."


def _incoming_id(scope: Scope) -> str | None:
    for key, value in scope.get("headers", []):
        if key == b"x-request-id":
            text = value.decode("latin-1")
            # echo a client's id only when it is short and plain, so logs cannot be forged
            if 0 < len(text) <= 64 and all(c.isalnum() or c in "-_." for c in text):
                return text
    return None
