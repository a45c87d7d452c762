"""No user text in the server's logs, while every request still leaves one line (path, status, sizes, time, id).

The real test starts `attnlab serve` as a subprocess (the same code path as `make run` and the container),
so uvicorn's own loggers are in play; a quicker one checks attnlab's own records in process.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]  # the checkout
MARKER = "QzxMarker7731"  # in every text sent; never in a log


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def text_with_marker(n: int = 0) -> str:
    text = f"the cat {MARKER} sat on the mat"
    return text + " and" * max(0, (n - len(text)) // 4 + 1) if n else text


def send_text_every_way(http: httpx.Client, model: str, encoder: str) -> list[tuple[str, str, int]]:
    """Requests whose text holds the marker, valid and not; returns (method, path, status) of each."""
    text = text_with_marker()
    calls = [
        ("POST", "/api/attention", {"json": {"model": model, "text": text}}),
        ("POST", "/api/runs", {"json": {"model": model, "text": text}}),
        ("POST", "/api/generate", {"json": {"model": model, "prompt": text, "max_new_tokens": 2}}),
        ("GET", "/", {"params": {"model": model, "text": text}}),  # pages keep their state in the query string
        ("GET", "/generate", {"params": {"model": model, "prompt": text}}),
        # invalid: an unknown field, a pair on a decoder, malformed JSON, too long, a bad query parameter
        ("POST", "/api/attention", {"json": {"model": model, "text": text, MARKER: text}}),
        ("POST", "/api/attention", {"json": {"model": model, "text": text, "text_pair": text}}),
        ("POST", "/api/runs", {"content": f'{{"model": "{model}", "text": "{text}'.encode(),
                               "headers": {"Content-Type": "application/json"}}),
        ("POST", "/api/runs", {"json": {"model": encoder, "text": text_with_marker(100_001)}}),
        ("POST", "/api/runs", {"json": {"model": encoder, "text": text_with_marker(60_000),
                                        "text_pair": text_with_marker(60_000)}}),
        ("POST", "/api/runs", {"json": {"model": encoder, "text": text_with_marker(3 * 2**20)}}),
        ("POST", "/api/attention", {"json": {"model": MARKER, "text": text}}),
        ("GET", f"/api/runs/{'0' * 32}/attention", {"params": {"rows": text}}),
    ]
    out = []
    for method, path, kwargs in calls:
        r = http.request(method, path, **kwargs)
        out.append((method, path, r.status_code))
    return out


EXPECTED_STATUS = [200, 200, 200, 200, 200, 422, 422, 422, 422, 413, 413, 404, 422]


@pytest.mark.slow
def test_a_served_request_leaves_its_path_in_the_log_and_none_of_its_text(tmp_path):
    port = _free_port()
    log_file = tmp_path / "server.log"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "ATTNLAB_LOG_LEVEL": "INFO", "ATTNLAB_PRELOAD": "false",
           "MALLOC_ARENA_MAX": "2"}
    with log_file.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "attnlab.cli", "serve",
                                 "--host", "127.0.0.1", "--port", str(port)],
                                cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=120) as http:
            deadline = time.time() + 120
            while True:
                try:
                    if http.get("/api/health", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                assert time.time() < deadline and proc.poll() is None, log_file.read_text()[-3000:]
                time.sleep(0.5)
            models = {m["id"]: m for m in http.get("/api/models").json() if m["available"]}
            # small scratch checkpoints from the zoo load in a moment
            decoder = "lm" if "lm" in models else "smollm2"
            encoder = "mlm" if "mlm" in models else "minilm"
            results = send_text_every_way(http, decoder, encoder)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    log = log_file.read_text(errors="replace")
    assert [status for _, _, status in results] == EXPECTED_STATUS, (results, log[-3000:])
    assert MARKER.lower() not in log.lower(), [line for line in log.splitlines() if MARKER.lower() in line.lower()]
    assert "the cat" not in log
    # uvicorn still logs (start-up, shutdown), but not its access lines ("GET /?text=... HTTP/1.1" 200)
    assert "Uvicorn running on" in log and "HTTP/1.1\"" not in log
    # attnlab's own line for each request: path without the query string, status, sizes, time and id
    lines = [line for line in log.splitlines() if "attnlab.access" in line]
    for method, path, status in results:
        assert any(f"method={method} path={path} status={status} " in line for line in lines), (method, path, status)
    for line in lines:
        assert re.search(r"request_id=\w+ .* ms=[0-9.]+ bytes_in=\d+ bytes_out=\d+", line), line
        assert "?" not in line.split(" path=")[1].split()[0]


def test_attnlab_logs_hold_no_text(client, caplog):
    """In process: every record the server side logs while handling text (attnlab, its libraries), with tracebacks."""
    with caplog.at_level(logging.DEBUG):
        results = send_text_every_way(client, "tiny-gpt", "tiny-bert")
    assert [status for _, _, status in results] == EXPECTED_STATUS
    server_side = [r for r in caplog.records if not r.name.startswith("httpx")]  # not the test's own client
    logged = "\n".join(caplog.handler.format(r) for r in server_side)
    assert MARKER not in logged and "the cat" not in logged
    access = [r.attnlab for r in server_side if hasattr(r, "attnlab")]
    assert len(access) == len(results)
    for fields, (method, path, status) in zip(access, results):
        assert (fields["method"], fields["path"], fields["status"]) == (method, path, status)
        assert fields["bytes_out"] > 0 and fields["ms"] >= 0 and fields["request_id"]
    assert access[0]["bytes_in"] > len(text_with_marker()) and access[3]["bytes_in"] == 0
