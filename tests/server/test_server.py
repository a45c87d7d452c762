"""A real uvicorn server on loopback: a short load run, SSE disconnects, graceful shutdown.

These start the server as a separate process, exactly as `make run` does, with the
default registry (bundled MiniLM / SmolLM2 and the zoo checkpoints).
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import re
import signal
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]  # the checkout
spec = importlib.util.spec_from_file_location("attnlab_load", ROOT / "bench" / "load.py")
load = importlib.util.module_from_spec(spec)
sys.modules["attnlab_load"] = load  # dataclasses look their module up while the class is built
spec.loader.exec_module(load)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server():
    port = load.free_port()
    proc = load.start_server(port)
    yield f"http://127.0.0.1:{port}", proc
    if proc.poll() is None:
        proc.terminate()
        proc.wait(timeout=30)


def metric(base: str, name: str, labels: str = "") -> float:
    text = httpx.get(f"{base}/api/metrics", timeout=10).text
    pattern = rf"^{re.escape(name)}(?:_total)?{re.escape(labels)} ([0-9.e+-]+)$"
    values = [float(m.group(1)) for m in re.finditer(pattern, text, re.M)]
    return values[0] if values else 0.0


def smallest_decoder(base: str) -> str:
    models = httpx.get(f"{base}/api/models", timeout=10).json()
    decoders = [m for m in models if m["family"] == "decoder" and m["available"]]
    decoders.sort(key=lambda m: (m["source"] != "scratch", m["n_layers"] * m["d_model"]))
    return decoders[0]["id"]


def test_short_load_run_has_no_errors_and_health_stays_fast(server):
    base, proc = server
    summary = asyncio.run(load.run_load(base, clients=4, duration=8, warmup=2, pid=proc.pid))
    assert summary["errors"] == 0, summary["error_kinds"]
    assert summary["requests"] > 0 and summary["requests_per_s"] > 0
    assert set(summary["by_kind"]) >= {"attention", "tile"}
    assert summary["health_max_ms"] is not None and summary["health_max_ms"] < 5000
    assert summary["rss_end_mb"] > 0


def test_closing_an_sse_stream_stops_generation(server):
    base, _ = server
    model = smallest_decoder(base)
    before = metric(base, "attnlab_generation_stops", '{reason="disconnect"}')
    tokens_before = metric(base, "attnlab_generated_tokens")
    body = {"model": model, "prompt": "Once upon a time", "max_new_tokens": 200, "stream": True,
            "temperature": 1.0, "seed": 1}
    seen = 0
    with httpx.stream("POST", f"{base}/api/generate", json=body, timeout=120) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        for line in r.iter_lines():
            if line.startswith("data:") and '"step"' in line:  # token events (the first, `prompt`, has none)
                event = json.loads(line[5:])
                assert event["step"] == seen
                seen += 1
                if seen == 2:
                    break  # leaving the block closes the connection
    deadline = time.time() + 60
    while time.time() < deadline and metric(base, "attnlab_generation_stops", '{reason="disconnect"}') <= before:
        time.sleep(0.5)
    assert metric(base, "attnlab_generation_stops", '{reason="disconnect"}') == before + 1
    assert metric(base, "attnlab_generated_tokens") - tokens_before < 200


def test_sigterm_finishes_the_request_in_flight_then_exits():
    port = load.free_port()
    proc = load.start_server(port)
    base = f"http://127.0.0.1:{port}"
    httpx.post(f"{base}/api/attention", json={"model": "minilm", "text": "warm up"}, timeout=120)
    result = {}

    def slow_request():
        text = " ".join(["attention"] * 200)
        result["response"] = httpx.post(f"{base}/api/runs", json={"model": "minilm", "text": text}, timeout=120)

    worker = threading.Thread(target=slow_request)
    worker.start()
    time.sleep(0.3)  # the request is in flight
    proc.send_signal(signal.SIGTERM)
    worker.join(timeout=120)
    # uvicorn finishes in-flight requests, then re-raises the captured signal as its exit status
    assert proc.wait(timeout=60) in (0, -signal.SIGTERM)
    assert result["response"].status_code == 200 and result["response"].json()["n_layers"] == 6
