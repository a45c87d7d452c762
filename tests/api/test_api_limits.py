"""Request size: a body over max_body_bytes is refused (413) before it is read.

A real uvicorn server on a free port, in a thread of this process so that tracemalloc sees what the
server allocates; raw sockets, so a client can declare a body it never sends, or stream one in chunks.
"""

from __future__ import annotations

import json
import socket
import threading
import time
import tracemalloc
from dataclasses import dataclass

import httpx
import pytest
import uvicorn

from attnlab.api.schemas import MAX_HEADS, MAX_LAYERS
from attnlab.core.settings import Settings
from attnlab.main import create_app
from tests.support import make_settings, tiny_registry

TEXT_CHARS = 300  # max_text_chars of the test server: its body limit is 300 * 12 + 64 KiB = 69,136 bytes
WAIT_S = 60  # generous: these only say "does not hang"


@dataclass
class Server:
    host: str
    port: int
    limit: int

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def connect(self) -> socket.socket:
        sock = socket.create_connection((self.host, self.port), timeout=WAIT_S)
        sock.settimeout(WAIT_S)
        return sock


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(one_thread):
    settings = make_settings(max_text_chars=TEXT_CHARS)
    port = _free_port()
    config = uvicorn.Config(create_app(settings, registry=tiny_registry()), host="127.0.0.1", port=port,
                            log_level="warning", access_log=False, lifespan="on")
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.time() + WAIT_S
    while not srv.started:
        if time.time() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.05)
    yield Server("127.0.0.1", port, settings.body_limit_bytes())
    srv.should_exit = True
    thread.join(timeout=WAIT_S)


# ----------------------------------------------------------------------------- raw HTTP/1.1


def request_head(path: str, headers: dict[str, str]) -> bytes:
    lines = [f"POST {path} HTTP/1.1", "Host: test", "Content-Type: application/json",
             *(f"{k}: {v}" for k, v in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def read_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """Status, headers (lower-case names) and body of one response with a Content-Length."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise AssertionError(f"connection closed before a response; got {data!r}")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in header_lines)}
    while len(body) < int(headers["content-length"]):
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return int(status_line.split()[1]), headers, body


def stream_body(sock: socket.socket, total: int, chunked: bool, piece: bytes) -> threading.Thread:
    """Send ``total`` bytes (``piece`` again and again) in a thread; stops quietly when the server hangs up."""

    def run() -> None:
        view = memoryview(piece)
        sent = 0
        try:
            while sent < total:
                part = view[:min(len(piece), total - sent)]
                if chunked:
                    sock.sendall(f"{len(part):x}\r\n".encode())
                sock.sendall(part)
                if chunked:
                    sock.sendall(b"\r\n")
                sent += len(part)
            if chunked:
                sock.sendall(b"0\r\n\r\n")
        except OSError:  # the server answered 413 and closed the connection: the point of the test
            pass

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def run_request(model: str, text: str, size: int) -> bytes:
    """A valid POST /api/runs body of exactly ``size`` bytes: every character escaped, then padding."""
    escaped = "".join(f"\\u{ord(c):04x}" for c in text)
    body = f'{{"model": "{model}", "text": "{escaped}"}}'.encode()
    assert len(body) <= size
    return body[:-1] + b" " * (size - len(body)) + b"}"


# ----------------------------------------------------------------------------- the tests


def test_declared_length_over_the_limit_is_refused_before_the_body(server):
    """Content-Length: 2 GB and not one byte of body: the 413 comes at once, not after a wait for the body."""
    with server.connect() as sock:
        sock.sendall(request_head("/api/runs", {"Content-Length": "2000000000"}))
        status, headers, body = read_response(sock)
        assert status == 413 and headers["content-type"] == "application/json"
        detail = json.loads(body)["detail"]
        assert detail == f"body: 2000000000 bytes is over the limit of {server.limit} bytes (max_body_bytes)"
        assert sock.recv(1) == b""  # and hangs up once the client is quiet (keep-alive timeout), not after 2 GB


def test_chunked_body_over_the_limit_is_cut_off(server):
    with server.connect() as sock:
        sock.sendall(request_head("/api/runs", {"Transfer-Encoding": "chunked"}))
        sender = stream_body(sock, 20 * server.limit, chunked=True, piece=b" " * 4096)
        status, headers, body = read_response(sock)
        sender.join(timeout=WAIT_S)
    assert status == 413
    detail = json.loads(body)["detail"]
    assert detail.startswith("body: at least ") and detail.endswith(
        f"bytes is over the limit of {server.limit} bytes (max_body_bytes)")
    assert "x-request-id" in headers and "content-security-policy" in headers  # still inside log and headers


@pytest.mark.parametrize("transfer", ["content-length", "chunked"])
def test_a_body_at_the_limit_is_served_one_byte_more_is_not(server, transfer):
    text = ("the cat sat on the mat. " * 20)[:TEXT_CHARS]  # max_text_chars characters
    at_limit = run_request("tiny-gpt", text, server.limit)
    over = run_request("tiny-gpt", text, server.limit + 1)

    def post(body: bytes) -> httpx.Response:
        content = body if transfer == "content-length" else iter([body[:1000], body[1000:]])  # iterator: chunked
        return httpx.post(f"{server.url}/api/runs", content=content, headers={"Content-Type": "application/json"},
                          timeout=WAIT_S)

    r = post(at_limit)
    assert r.status_code == 200, r.text
    assert r.json()["n_tokens"] == TEXT_CHARS  # the tiny models tokenise by character
    r = post(over)
    assert r.status_code == 413 and "(max_body_bytes)" in r.json()["detail"]


def test_a_client_that_sends_all_of_a_large_body_first_still_reads_the_413(server):
    """httpx writes the whole body before it reads: the server must not reset the connection under it."""
    body = b'{"text": "' + b"a" * (16 * server.limit) + b'"}'
    with httpx.Client(base_url=server.url, timeout=WAIT_S) as http:
        for _ in range(5):
            r = http.post("/api/runs", content=body, headers={"Content-Type": "application/json"})
            assert r.status_code == 413 and "(max_body_bytes)" in r.json()["detail"]
        assert http.get("/api/health").status_code == 200  # and the connection stays usable


@pytest.mark.parametrize("transfer", ["content-length", "chunked"])
def test_a_60_MiB_body_does_not_grow_the_server_memory(server, transfer):
    """Before the limit, Starlette joined the whole body before the 422: peak +120 MiB for 60 MiB."""
    total = 60 * 2**20
    piece = b" " * 2**20  # one buffer, sent again and again: the client adds nothing to the peak
    head = {"Content-Length": str(total)} if transfer == "content-length" else {"Transfer-Encoding": "chunked"}
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        with server.connect() as sock:
            sock.sendall(request_head("/api/runs", head))
            sender = stream_body(sock, total, chunked=transfer == "chunked", piece=piece)
            status, _, body = read_response(sock)
            sender.join(timeout=WAIT_S)  # the server discards the rest as it comes
            assert not sender.is_alive()
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    assert status == 413 and "(max_body_bytes)" in json.loads(body)["detail"]
    assert peak < 8 * 2**20, f"peak traced memory grew by {peak / 2**20:.1f} MiB"


def test_every_operation_with_a_body_documents_the_413(server):
    spec = httpx.get(f"{server.url}/openapi.json", timeout=WAIT_S).json()
    with_body = [(path, method, op) for path, ops in spec["paths"].items() for method, op in ops.items()
                 if "requestBody" in op]
    assert {method for _, method, _ in with_body} == {"post"}
    assert {path for path, _, _ in with_body} >= {"/api/attention", "/api/runs", "/api/generate"}
    for path, method, op in with_body:
        documented = op["responses"].get("413", {})
        assert f"{server.limit} bytes" in documented.get("description", "") and "max_body_bytes" in \
            documented["description"], (method, path)
        assert documented["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/ErrorOut"}


def test_the_largest_valid_request_fits_the_default_limit():
    """POST /api/attention with every character of text at its most expensive in JSON (a surrogate pair,
    12 bytes, as json.dumps sends any character past U+FFFF) and every other field longer than it may be."""
    settings = Settings(_env_file=None)
    half = settings.max_text_chars // 2  # text and text_pair share max_text_chars
    largest = {"model": "\U0001F600" * 200, "text": "\U0001F600" * half,
               "text_pair": "\U0001F600" * (settings.max_text_chars - half), "backend": "\U0001F600" * 32,
               "layers": [MAX_LAYERS - 1] * MAX_LAYERS, "heads": [MAX_HEADS - 1] * MAX_HEADS, "kind": "encoder",
               "format": "json"}
    body = json.dumps(largest).encode()
    assert len(body) > settings.max_text_chars * 12  # the text really is escaped at 12 bytes a character
    assert len(body) <= settings.body_limit_bytes() == settings.max_text_chars * 12 + 64 * 1024
    assert Settings(_env_file=None, max_body_bytes=5000).body_limit_bytes() == 5000  # an explicit setting wins
