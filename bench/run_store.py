"""What a worker pays to serve a run it did not compute, measured side by side in one run.

For each input length: the shared store's round trip of a run's request (what attnlab keeps: memory, SQLite,
Redis), the recomputation of the capture from it (forward + head scores, as ``RunService`` does), and, for
the question "should the store keep captures too?", the round trip of the capture's own bytes (Q, K, LSE in
float32, so tiles stay bit-identical) through SQLite and Redis.

    python bench/run_store.py                          # minilm, 32/128/400 words; starts redis-server if installed
    python bench/run_store.py --model lm --tokens 64 --redis redis://127.0.0.1:6379/0
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import redis
import torch

from attnlab.core.settings import Settings
from attnlab.models import default_registry
from attnlab.services.hub import ModelHub
from attnlab.services.run_store import MemoryRunStore, RedisRunStore, RunStore, SQLiteRunStore
from attnlab.services.runs import RunService, run_id_for, run_request

log = logging.getLogger("attnlab.bench.run_store")
WORDS = "the cat sat on a mat while students read about attention heads in small transformer models".split()


def median_ms(fn: Callable[[], object], repeats: int) -> float:
    fn()  # warm: connections, caches
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def store_round_trip(store: RunStore, key: str, value: dict, repeats: int) -> float:
    """Median ms of put + get, each on the event loop as a server does it."""
    loop = asyncio.new_event_loop()
    try:
        def once() -> None:
            loop.run_until_complete(store.put(key, value))
            assert loop.run_until_complete(store.get(key)) == value

        return median_ms(once, repeats)
    finally:
        loop.run_until_complete(store.close())
        loop.close()


def capture_blob(run) -> bytes:
    """The capture's tensors as raw float32 bytes (what a store would have to keep instead of the request)."""
    parts = []
    for rec in run.recorder.records:
        for t in (rec.q, rec.k, rec.lse):
            parts.append(t.detach().float().contiguous().numpy().tobytes())
    return b"".join(parts)


def blob_round_trip(kind: str, where: str, blob: bytes, repeats: int) -> float:
    """Median ms of writing ``blob`` as raw bytes and reading it back: SQLite (WAL, as the run store opens it)
    or Redis (SET/GET)."""
    if kind == "sqlite":
        conn = sqlite3.connect(where, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("CREATE TABLE IF NOT EXISTS captures (k TEXT PRIMARY KEY, v BLOB)")

        def once() -> None:
            conn.execute("INSERT OR REPLACE INTO captures VALUES ('k', ?)", (blob,))
            assert len(conn.execute("SELECT v FROM captures WHERE k = 'k'").fetchone()[0]) == len(blob)
    else:
        client = redis.Redis.from_url(where)

        def once() -> None:
            client.set("attnlab:bench:capture", blob, ex=60)
            assert len(client.get("attnlab:bench:capture")) == len(blob)
    return median_ms(once, repeats)


def start_redis(tmp: str) -> tuple[subprocess.Popen | None, str | None]:
    exe = shutil.which("redis-server")
    if exe is None:
        return None, None
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                             "--dir", tmp], stdout=subprocess.DEVNULL)
    time.sleep(0.5)
    return proc, f"redis://127.0.0.1:{port}/0"


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="minilm")
    parser.add_argument("--tokens", default="32,128,400", help="comma-separated input lengths (words)")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--redis", help="a running Redis (default: start redis-server on a free port, if installed)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    settings = Settings(_env_file=None, run_store="memory")
    torch.set_num_threads(settings.threads_per_forward())
    hub = ModelHub(default_registry(settings.allowlist, settings.model_dir, settings.zoo_dir), settings)
    service = RunService(hub, settings, MemoryRunStore(settings.run_ttl_s))
    adapter = hub.registry.load(args.model)
    backend = hub.default_backend(args.model)
    tmp = tempfile.mkdtemp(prefix="attnlab-bench-")
    redis_proc, redis_url = (None, args.redis) if args.redis else start_redis(tmp)
    rows = []
    try:
        for n in (int(x) for x in args.tokens.split(",")):
            text = " ".join(WORDS[i % len(WORDS)] for i in range(n))
            request = run_request(args.model, "0" * 32, text, None, backend)
            run_id = run_id_for(request)
            with torch.no_grad():
                recompute = median_ms(lambda: service._compute(adapter, run_id, text, None, backend),  # noqa: B023
                                      max(3, args.repeats // 4))
                run = service._compute(adapter, run_id, text, None, backend)
            blob = capture_blob(run)
            row = {"model": args.model, "words": n, "tokens": len(run.tokens), "recompute_ms": round(recompute, 2),
                   "request_bytes": len(json.dumps(request)), "capture_mb": round(len(blob) / 2**20, 2)}
            stores: dict[str, Callable[[], RunStore]] = {
                "memory": lambda: MemoryRunStore(3600),
                "sqlite": lambda: SQLiteRunStore(Path(tmp) / "runs.sqlite3", 3600)}
            if redis_url:
                stores["redis"] = lambda: RedisRunStore(redis_url, 3600)
            for name, make in stores.items():
                row[f"{name}_request_ms"] = round(store_round_trip(make(), run_id, request, args.repeats), 3)
            blob_stores = {"sqlite": str(Path(tmp) / "captures.sqlite3"), **({"redis": redis_url} if redis_url else {})}
            for name, where in blob_stores.items():
                row[f"{name}_capture_ms"] = round(blob_round_trip(name, where, blob, max(3, args.repeats // 4)), 2)
                row[f"recompute_over_{name}_capture"] = round(recompute / row[f"{name}_capture_ms"], 2)
            log.info("%s", row)
            rows.append(row)
    finally:
        if redis_proc is not None:
            redis_proc.terminate()
            redis_proc.wait(timeout=10)
        shutil.rmtree(tmp, ignore_errors=True)
    sys.stdout.write(json.dumps(rows, indent=2) + "\n")
    return rows


if __name__ == "__main__":
    main()
