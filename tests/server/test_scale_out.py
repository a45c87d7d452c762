"""Scale out with real processes: two uvicorn workers on the SQLite run store, two servers sharing a real
Redis server, and Debian's nginx (deploy/nginx.conf) in front of them, SSE included.

Every answer about a run must be 200 and byte-identical whichever worker or replica serves it; a worker
that did not compute the run recomputes it from the request in the shared store.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import re
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.external import start_nginx, start_redis, stop

ROOT = Path(__file__).resolve().parents[2]  # the checkout
spec = importlib.util.spec_from_file_location("attnlab_load", ROOT / "bench" / "load.py")
load = sys.modules.get("attnlab_load") or importlib.util.module_from_spec(spec)
if "attnlab_load" not in sys.modules:
    sys.modules["attnlab_load"] = load  # dataclasses look their module up while the class is built
    spec.loader.exec_module(load)

pytestmark = pytest.mark.slow

RUN = {"model": "minilm", "text": "The cat sat on the mat.", "text_pair": "It was a sunny day."}


def metric_sum(base: str, name: str, **labels: str) -> float:
    """The sum of a metric's samples that carry ``labels`` (in any order: one process writes them as declared,
    the multiprocess collector sorted)."""
    text = httpx.get(f"{base}/api/metrics", timeout=10).text
    total = 0.0
    for m in re.finditer(rf"^{re.escape(name)}(?:_total)?(?:\{{(.*)\}})? ([0-9.e+-]+)$", text, re.M):
        have = dict(re.findall(r'(\w+)="([^"]*)"', m.group(1) or ""))
        if labels.items() <= have.items():
            total += float(m.group(2))
    return total


def wait_for(condition, timeout: float = 20.0) -> bool:
    """Poll: a worker updates its gauges in the metrics folder just after its response is sent."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if condition():
            return True
        time.sleep(0.2)
    return condition()


def run_requests(run_id: str, n_heads: int) -> list[tuple[str, dict]]:
    """Tiles of several heads (exact f16 and pooled JSON), head scores and rollout."""
    out = []
    for i in range(n_heads):
        out.append(("attention", {"kind": "encoder", "layer": i % 6, "head": i, "format": "f16"}))
        out.append(("attention", {"kind": "encoder", "layer": 5 - i % 6, "head": i, "pool": 8}))
    return [(f"/api/runs/{run_id}/{path}", params) for path, params in out] + [
        (f"/api/runs/{run_id}/heads", {}), (f"/api/runs/{run_id}/rollout", {})]


def fetch_all(base: str, requests: list[tuple[str, dict]], rounds: int) -> dict[str, set[bytes]]:
    """Every request ``rounds`` times, 4 at a time, each on a new connection (so the kernel spreads them over the
    workers). Answers the set of distinct bodies per request; asserts every status is 200."""

    def one(item: tuple[str, dict]) -> tuple[str, bytes]:
        path, params = item
        r = httpx.get(base + path, params=params, timeout=120, headers={"Connection": "close"})
        assert r.status_code == 200, (path, params, r.status_code, r.text[:200])
        return path + json.dumps(params, sort_keys=True), r.content

    bodies: dict[str, set[bytes]] = {}
    with ThreadPoolExecutor(4) as pool:
        for key, content in pool.map(one, requests * rounds):
            bodies.setdefault(key, set()).add(content)
    return bodies


@pytest.fixture(scope="module")
def two_workers(tmp_path_factory):
    """`attnlab serve --workers 2` with its own SQLite run store."""
    tmp = tmp_path_factory.mktemp("workers")
    port = load.free_port()
    proc = load.start_server(port, workers=2, env={"ATTNLAB_RUN_STORE": f"sqlite:///{tmp}/runs.sqlite3"})
    yield f"http://127.0.0.1:{port}"
    load.stop_server(proc)


@pytest.fixture(scope="module")
def replicas(tmp_path_factory):
    """Two separate servers (one worker each) sharing a real redis-server, and nginx in front of both."""
    tmp = tmp_path_factory.mktemp("replicas")
    redis_proc, url = start_redis(tmp)
    ports = [load.free_port(), load.free_port()]
    servers = []
    try:
        for port in ports:
            servers.append(load.start_server(port, env={"ATTNLAB_RUN_STORE": url}))
        nginx_proc, proxy = start_nginx([f"127.0.0.1:{p}" for p in ports], tmp)
        yield [f"http://127.0.0.1:{p}" for p in ports], proxy
        stop(nginx_proc)
    finally:
        for proc in servers:
            load.stop_server(proc)
        stop(redis_proc)


def test_two_workers_serve_every_run_request_with_identical_bytes(two_workers):
    base = two_workers
    run = httpx.post(f"{base}/api/runs", json=RUN, timeout=120).json()
    requests = run_requests(run["run_id"], 4)  # 10 requests
    bodies = fetch_all(base, requests, rounds=5)  # 50 requests
    rounds = 5
    # the kernel spreads connections over the workers; a few more rounds if one worker took them all
    while rounds < 25 and not wait_for(lambda: metric_sum(base, "attnlab_run_cache_runs") >= 2, timeout=2):
        for key, seen in fetch_all(base, requests, rounds=2).items():
            bodies[key] |= seen
        rounds += 2
    assert {k: len(v) for k, v in bodies.items()} == dict.fromkeys(bodies, 1)  # one answer, whichever worker
    # both workers hold the run: one computed it for the POST, the other recomputed it from the store
    assert wait_for(lambda: metric_sum(base, "attnlab_run_cache_runs") == 2)
    assert metric_sum(base, "attnlab_runs_restored") == 1
    # /api/metrics sums the workers' counters, whichever worker answers the scrape
    n_tiles = sum(1 for path, _ in requests if path.endswith("/attention"))
    route = {"route": "/api/runs/{run_id}/attention", "method": "GET", "status": "200"}
    assert wait_for(lambda: metric_sum(base, "attnlab_requests", **route) == rounds * n_tiles)


def test_a_short_load_run_on_two_workers_has_no_errors(two_workers):
    summary = asyncio.run(load.run_load(two_workers, clients=4, duration=6, warmup=1, pid=None))
    assert summary["errors"] == 0, summary["error_kinds"]
    assert summary["requests"] > 0 and set(summary["by_kind"]) >= {"attention", "tile"}


def test_a_run_created_on_one_replica_is_served_by_the_other_through_redis(replicas):
    (a, b), _ = replicas
    run = httpx.post(f"{a}/api/runs", json=RUN, timeout=120).json()
    requests = run_requests(run["run_id"], 3)
    on_a, on_b = fetch_all(a, requests, rounds=1), fetch_all(b, requests, rounds=1)
    assert on_b == on_a
    assert metric_sum(b, "attnlab_runs_restored") == 1 and metric_sum(a, "attnlab_runs_restored") == 0
    unknown = httpx.get(f"{b}/api/runs/{'0' * 32}/heads", timeout=30)
    assert unknown.status_code == 404 and "is unknown or expired" in unknown.json()["detail"]


def test_runs_through_nginx_round_robin(replicas):
    _, proxy = replicas
    body = {**RUN, "text": "A different sentence, served through the proxy."}
    run = httpx.post(f"{proxy}/api/runs", json=body, timeout=120)
    assert run.status_code == 200
    bodies = fetch_all(proxy, run_requests(run.json()["run_id"], 2), rounds=4)
    assert {k: len(v) for k, v in bodies.items()} == dict.fromkeys(bodies, 1)
    # attnlab's own 413 with its message reaches the client: nginx's body limit (2 MB) is above attnlab's
    too_big = httpx.post(f"{proxy}/api/runs", json={"model": "minilm", "text": "x" * 1_500_000}, timeout=60)
    assert too_big.status_code == 413
    assert re.fullmatch(r"body: \d+ bytes is over the limit of \d+ bytes \(max_body_bytes\)", too_big.json()["detail"])


def test_sse_through_nginx_streams_events_before_the_generation_ends(replicas):
    (a, b), proxy = replicas
    models = httpx.get(f"{proxy}/api/models", timeout=30).json()
    decoder = min((m for m in models if m["family"] == "decoder" and m["available"] and m["source"] == "scratch"),
                  key=lambda m: m["n_layers"] * m["d_model"])["id"]
    def stops() -> float:
        return sum(metric_sum(base, "attnlab_generation_stops", reason="disconnect") for base in (a, b))

    before = stops()
    body = {"model": decoder, "prompt": "Once upon a time", "max_new_tokens": 200, "stream": True,
            "temperature": 1.0, "seed": 3}
    steps = []
    with httpx.stream("POST", f"{proxy}/api/generate", json=body, timeout=120) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        for line in r.iter_lines():
            if line.startswith("data:") and '"step"' in line:  # token events (the prompt event comes first)
                steps.append(json.loads(line[5:])["step"])
                if len(steps) == 2:
                    break  # close the connection: nginx closes its upstream one, the server stops generating
    assert steps == [0, 1]
    # had nginx buffered the stream, the first events would arrive only once all 200 tokens were generated, and
    # the generation would end by its length, not by the client leaving
    assert wait_for(lambda: stops() == before + 1, timeout=60)
