"""Bounded load test on loopback: N concurrent clients for D seconds.

Mixes POST /api/attention (MiniLM, NPY), tiles (POST /api/runs then GET a tile) and
POST /api/generate (a small decoder), while a probe times /api/health. Reports
requests/s, p50/p95/p99 latency per kind, errors (goal 0), requests shed with
429/503 + Retry-After, and the server's RSS after warm-up and at the end.

    python bench/load.py                       # 16 clients, 60 s, starts its own server (64 MiB run cache)
    python bench/load.py --url http://host:8000 --clients 32 --duration 120
    python bench/load.py --workers 2           # 1 worker, then 2 workers, side by side in one run

With several workers a tile request's GET often reaches a worker that did not compute the run: it reads the
request from the shared run store (SQLite here) and recomputes the capture, so errors stay 0.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil

log = logging.getLogger("attnlab.load")
ROOT = Path(__file__).resolve().parent.parent
WORDS = ("the cat sat on a mat while students read about attention heads in small transformer models "
         "and a teacher draws the query key value diagram on the board").split()


@dataclass
class Stats:
    latencies: dict[str, list[float]] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)
    shed: int = 0
    health_ms: list[float] = field(default_factory=list)

    def ok(self, kind: str, ms: float) -> None:
        self.latencies.setdefault(kind, []).append(ms)

    def error(self, kind: str, what: str) -> None:
        key = f"{kind}: {what}"
        self.errors[key] = self.errors.get(key, 0) + 1


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q / 100 * (len(values) - 1))))]


def sentence(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n))


async def pick_decoder(client: httpx.AsyncClient) -> str | None:
    models = (await client.get("/api/models")).json()
    decoders = [m for m in models if m["family"] == "decoder" and m["available"]]
    decoders.sort(key=lambda m: (m["source"] != "scratch", m["n_layers"] * m["d_model"]))
    return decoders[0]["id"] if decoders else None


async def one_request(client: httpx.AsyncClient, rng: random.Random, decoder: str | None, stats: Stats) -> None:
    kind = rng.choices(["attention", "tile", "generate"], weights=[4, 4, 2 if decoder else 0])[0]
    t0 = time.perf_counter()
    try:
        if kind == "attention":
            r = await client.post("/api/attention", json={"model": "minilm", "text": sentence(rng, rng.randint(5, 30)),
                                                          "format": "npy"})
        elif kind == "tile":
            # the connection closes after the POST, so the GET may reach another worker (as from a script without
            # a session): with several workers, some GETs meet a run that another worker made
            r = await client.post("/api/runs", json={"model": "minilm", "text": sentence(rng, rng.randint(5, 60))},
                                  headers={"Connection": "close"})
            if r.status_code == 200:
                run = r.json()
                t = run["n_tokens"]
                r = await client.get(f"/api/runs/{run['run_id']}/attention", params={
                    "kind": "encoder", "layer": rng.randrange(run["n_layers"]), "head": rng.randrange(run["n_heads"]),
                    "rows": f"0:{t}", "cols": f"0:{t}", "format": "f16"})
        else:
            r = await client.post("/api/generate", json={"model": decoder, "prompt": sentence(rng, 6),
                                                         "max_new_tokens": 8, "seed": rng.randrange(1000),
                                                         "stream": False})
    except httpx.HTTPError as exc:
        stats.error(kind, type(exc).__name__)
        return
    ms = (time.perf_counter() - t0) * 1e3
    if r.status_code in (429, 503):
        stats.shed += 1
        retry = float(r.headers.get("retry-after", "1"))
        await asyncio.sleep(min(retry, 2.0))
    elif r.status_code == 200:
        stats.ok(kind, ms)
    else:
        stats.error(kind, str(r.status_code))


async def client_loop(base: str, seed: int, decoder: str | None, stop: float, stats: Stats) -> None:
    rng = random.Random(seed)
    async with httpx.AsyncClient(base_url=base, timeout=120) as client:
        while time.perf_counter() < stop:
            await one_request(client, rng, decoder, stats)


async def health_probe(base: str, stop: float, stats: Stats) -> None:
    async with httpx.AsyncClient(base_url=base, timeout=30) as client:
        while time.perf_counter() < stop:
            t0 = time.perf_counter()
            r = await client.get("/api/health")
            if r.status_code == 200:
                stats.health_ms.append((time.perf_counter() - t0) * 1e3)
            else:
                stats.error("health", str(r.status_code))
            await asyncio.sleep(0.5)


def rss_of(proc: psutil.Process) -> int:
    """RSS of the server and its worker processes together (uvicorn's supervisor plus N workers)."""
    total = 0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            total += p.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total


async def run_load(base: str, clients: int, duration: float, warmup: float, pid: int | None) -> dict:
    """Warm up (every kind once, then `warmup` seconds of load), then measure `duration` seconds."""
    async with httpx.AsyncClient(base_url=base, timeout=300) as client:
        decoder = await pick_decoder(client)
        rng = random.Random(0)
        for _ in range(3):  # load every model once before timing anything
            await one_request(client, rng, decoder, Stats())
    if warmup > 0:
        stop = time.perf_counter() + warmup
        await asyncio.gather(*(client_loop(base, 1000 + i, decoder, stop, Stats()) for i in range(clients)))
    proc = psutil.Process(pid) if pid else None
    rss_start = rss_of(proc) if proc else None
    stats = Stats()
    t0 = time.perf_counter()
    stop = t0 + duration
    await asyncio.gather(health_probe(base, stop, stats),
                         *(client_loop(base, i, decoder, stop, stats) for i in range(clients)))
    elapsed = time.perf_counter() - t0
    rss_end = rss_of(proc) if proc else None
    all_ms = [ms for v in stats.latencies.values() for ms in v]
    summary = {
        "clients": clients, "duration_s": round(elapsed, 1), "decoder": decoder,
        "requests": len(all_ms), "requests_per_s": round(len(all_ms) / elapsed, 2),
        "p50_ms": round(percentile(all_ms, 50), 1), "p95_ms": round(percentile(all_ms, 95), 1),
        "p99_ms": round(percentile(all_ms, 99), 1),
        "by_kind": {k: {"n": len(v), "p50_ms": round(percentile(v, 50), 1), "p95_ms": round(percentile(v, 95), 1),
                        "p99_ms": round(percentile(v, 99), 1)} for k, v in stats.latencies.items()},
        "errors": sum(stats.errors.values()), "error_kinds": stats.errors, "shed_429_503": stats.shed,
        "health_p50_ms": round(percentile(stats.health_ms, 50), 1),
        "health_max_ms": round(max(stats.health_ms), 1) if stats.health_ms else None,
    }
    async with httpx.AsyncClient(base_url=base, timeout=30) as client:
        text = (await client.get("/api/metrics")).text
    # runs a worker recomputed from the shared store because another worker had created them (all workers)
    summary["runs_restored"] = sum(float(line.split()[-1]) for line in text.splitlines()
                                   if line.startswith("attnlab_runs_restored"))
    if rss_start:
        summary.update(rss_start_mb=round(rss_start / 2**20, 1), rss_end_mb=round(rss_end / 2**20, 1),
                       rss_growth_pct=round(100 * (rss_end - rss_start) / rss_start, 1))
    return summary


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(port: int, cache_mb: int | None = None, workers: int = 1,
                 env: dict[str, str] | None = None) -> subprocess.Popen:
    """`attnlab serve` (as `make run` and the container start it) on loopback; returns once /api/health answers.
    ``env`` adds ATTNLAB_* settings (run store, cache dir)."""
    # as `make run` and the container do: without it glibc gives each worker thread its own
    # malloc arena and RSS creeps up (+21% in 60 s here; +6% with 2 arenas)
    env = {"MALLOC_ARENA_MAX": "2", **os.environ, "HF_HUB_OFFLINE": "1", "ATTNLAB_LOG_LEVEL": "WARNING",
           **(env or {})}
    if cache_mb is not None:
        env["ATTNLAB_RUN_CACHE_BYTES"] = str(cache_mb * 2**20)
    proc = subprocess.Popen([sys.executable, "-m", "attnlab.cli", "serve", "--host", "127.0.0.1",
                             "--port", str(port), "--workers", str(workers)], cwd=ROOT, env=env)
    deadline = time.time() + 120
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with status {proc.returncode} before answering /api/health")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=2).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.5)
    proc.terminate()
    raise RuntimeError("the server did not answer /api/health within 120 s")


def stop_server(proc: subprocess.Popen) -> None:
    proc.terminate()  # uvicorn's supervisor stops its workers on SIGTERM
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


def measure(args: argparse.Namespace, workers: int) -> dict:
    """One load run against a server started here with ``workers`` workers and its own SQLite run store."""
    with tempfile.TemporaryDirectory(prefix="attnlab-load-") as tmp:
        port = free_port()
        proc = start_server(port, args.cache_mb, workers, {"ATTNLAB_RUN_STORE": f"sqlite:///{tmp}/runs.sqlite3"})
        try:
            summary = asyncio.run(run_load(f"http://127.0.0.1:{port}", args.clients, args.duration, args.warmup,
                                           proc.pid))
        finally:
            stop_server(proc)
    return {"workers": workers, **summary}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", help="an already running server; default: start one on a free port")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--duration", type=float, default=60.0)
    parser.add_argument("--warmup", type=float, default=20.0)
    parser.add_argument("--cache-mb", type=int, default=64,
                        help="run cache budget of the server started here: every tile request makes a new run, so "
                             "the cache fills to its budget; warm-up fills it, then RSS should stay flat")
    parser.add_argument("--workers", type=int, default=1,
                        help="N > 1: measure a 1-worker server, then an N-worker one (each its own SQLite run "
                             "store), and print both with their ratios")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    if args.url:
        result = asyncio.run(run_load(args.url, args.clients, args.duration, args.warmup, None))
    elif args.workers <= 1:
        result = measure(args, 1)
    else:
        runs = []
        for workers in (1, args.workers):
            log.info("load run: %d worker(s), %d clients, %g s", workers, args.clients, args.duration)
            runs.append(measure(args, workers))
        one, many = runs
        result = {"runs": runs, "ratio": {
            "requests_per_s": round(many["requests_per_s"] / one["requests_per_s"], 2),
            "p50_ms": round(many["p50_ms"] / one["p50_ms"], 2), "p95_ms": round(many["p95_ms"] / one["p95_ms"], 2)}}
    sys.stdout.write(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
