"""The shared run store: a run created by one app is served by another app sharing the store (SQLite, Redis),
with the same bytes; expiry, other weights and bad settings answer clearly.

Two apps in one process stand for two workers: each has its own run cache and model hub, and they share
only the store, as worker processes do (tests/server/test_scale_out.py runs real worker processes)."""

from __future__ import annotations

import asyncio
import sqlite3
import time

import pytest
import redis
import torch
from fastapi.testclient import TestClient
from pydantic import ValidationError

from attnlab.core.settings import Settings
from attnlab.main import create_app
from attnlab.services.run_store import (
    MemoryRunStore,
    RedisRunStore,
    SQLiteRunStore,
    open_run_store,
)
from tests.external import start_redis, stop
from tests.support import make_settings, parse_sse, tiny_registry

REQUEST = {"v": 3, "model": "tiny-gpt", "fingerprint": "f" * 32, "text": "héllo", "text_pair": None, "backend": "math"}


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory):
    proc, url = start_redis(tmp_path_factory.mktemp("redis"))
    yield url
    stop(proc)


def two_apps(store: str, **overrides) -> tuple[TestClient, TestClient]:
    """Two apps ("workers") over the same tiny models (tiny_adapter seeds its weights) and one store."""
    return tuple(TestClient(create_app(make_settings(run_store=store, **overrides), registry=tiny_registry()))
                 for _ in range(2))


def reads(c: TestClient, run_id: str, kind: str = "decoder") -> dict[str, bytes]:
    """Every answer of a run: exact and pooled tiles of two heads, head scores, rollout."""
    base = f"/api/runs/{run_id}"
    answers = {
        "tile": c.get(f"{base}/attention", params={"kind": kind, "layer": 1, "head": 3, "format": "f16"}),
        "pooled": c.get(f"{base}/attention", params={"kind": kind, "layer": 0, "head": 0, "pool": 4, "format": "json"}),
        "heads": c.get(f"{base}/heads"),
        "rollout": c.get(f"{base}/rollout", params={"kind": kind}),
    }
    assert {k: r.status_code for k, r in answers.items()} == dict.fromkeys(answers, 200)
    return {k: r.content for k, r in answers.items()}


# -- the stores themselves ------------------------------------------------------------------------

def test_sqlite_store_is_shared_between_connections_in_wal_mode(tmp_path):
    path = tmp_path / "runs.sqlite3"
    writer, reader = SQLiteRunStore(path, ttl_s=60), SQLiteRunStore(path, ttl_s=60)
    asyncio.run(writer.put("a" * 32, REQUEST))
    assert asyncio.run(reader.get("a" * 32)) == REQUEST
    assert asyncio.run(reader.get("b" * 32)) is None
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    asyncio.run(writer.close())
    asyncio.run(reader.close())


@pytest.mark.parametrize("make", [lambda tmp: MemoryRunStore(0.3), lambda tmp: SQLiteRunStore(tmp / "r.db", 0.3)],
                         ids=["memory", "sqlite"])
def test_entries_expire_after_ttl_and_a_put_refreshes_them(tmp_path, make):
    store = make(tmp_path)
    asyncio.run(store.put("a" * 32, REQUEST))
    asyncio.run(store.put("b" * 32, REQUEST))
    time.sleep(0.2)
    asyncio.run(store.put("b" * 32, REQUEST))  # POSTed again: kept another ttl
    time.sleep(0.2)
    assert asyncio.run(store.get("a" * 32)) is None
    assert asyncio.run(store.get("b" * 32)) == REQUEST


def test_redis_store_round_trip_with_expiry(redis_url):
    store = RedisRunStore(redis_url, ttl_s=30)

    async def go():
        await store.put("c" * 32, REQUEST)
        got = await store.get("c" * 32)
        await store.close()
        return got

    assert asyncio.run(go()) == REQUEST
    ttl = redis.Redis.from_url(redis_url).ttl("attnlab:run:" + "c" * 32)
    assert 0 < ttl <= 30


def test_unreachable_redis_answers_503_with_retry_after():
    app = create_app(make_settings(run_store="redis://127.0.0.1:9/0"), registry=tiny_registry())
    with TestClient(app) as c:
        r = c.post("/api/runs", json={"model": "tiny-gpt", "text": "abc"})
    assert r.status_code == 503 and r.headers["retry-after"] == "2"
    assert r.json()["detail"].startswith("run_id: the run store (redis (redis://127.0.0.1:9/0)) is unreachable")


def test_store_spec_forms_and_errors(tmp_path):
    assert isinstance(open_run_store("memory", 60), MemoryRunStore)
    store = open_run_store(f"sqlite:///{tmp_path}/x/runs.sqlite3", 60)  # sqlite:/// + an absolute path
    assert isinstance(store, SQLiteRunStore) and store.path == tmp_path / "x" / "runs.sqlite3"
    assert store.path.exists()
    assert RedisRunStore("redis://user:secret@db:6379/1", 60).describe() == "redis (redis://db:6379/1)"
    with pytest.raises(ValueError, match=r"run_store: 'postgres://x' is not a run store; use 'sqlite'"):
        open_run_store("postgres://x", 60)


def test_settings_from_the_environment(monkeypatch):
    monkeypatch.setenv("ATTNLAB_RUN_STORE", "redis://cache:6379/2")
    monkeypatch.setenv("ATTNLAB_RUN_TTL_S", "90")
    monkeypatch.setenv("ATTNLAB_SSE_PING_S", "5")
    s = Settings(_env_file=None)
    assert (s.run_store, s.run_ttl_s, s.sse_ping_s) == ("redis://cache:6379/2", 90.0, 5.0)
    monkeypatch.delenv("ATTNLAB_RUN_STORE")
    assert Settings(_env_file=None).run_store == "sqlite"
    with pytest.raises(ValidationError, match="run_ttl_s"):
        Settings(_env_file=None, run_ttl_s=0)


# -- two apps, one store ----------------------------------------------------------------------------

@pytest.mark.parametrize("store", ["sqlite", "redis"])
def test_a_run_created_on_one_worker_is_served_by_another(one_thread, tmp_path, request, store):
    spec = f"sqlite:///{tmp_path}/runs.sqlite3" if store == "sqlite" else request.getfixturevalue("redis_url")
    a, b = two_apps(spec)
    with a, b:
        run = a.post("/api/runs", json={"model": "tiny-gpt", "text": "the cat sat on the mat"}).json()
        on_a = reads(a, run["run_id"])
        assert b.app.state.services.runs.cache.get(run["run_id"]) is None
        on_b = reads(b, run["run_id"])
        assert on_b == on_a  # the same bytes: same weights, same code, same threads
        assert b.app.state.services.runs.restored == 1 and a.app.state.services.runs.restored == 0
        assert "attnlab_runs_restored 1.0" in b.get("/api/metrics").text
        # B now has it cached: POST on B finds it there, with the same id
        again = b.post("/api/runs", json={"model": "tiny-gpt", "text": "the cat sat on the mat"}).json()
        assert again["run_id"] == run["run_id"] and again["cached"] is True


def test_encoder_decoder_runs_restore_every_kind(one_thread, tmp_path):
    a, b = two_apps(f"sqlite:///{tmp_path}/runs.sqlite3")
    with a, b:
        run_id = a.post("/api/runs", json={"model": "tiny-t5", "text": "hello there"}).json()["run_id"]
        for kind in ("encoder", "decoder"):
            assert reads(b, run_id, kind) == reads(a, run_id, kind)
        cross = {"kind": "cross", "layer": 1, "head": 2, "format": "f16"}
        assert b.get(f"/api/runs/{run_id}/attention", params=cross).content == \
            a.get(f"/api/runs/{run_id}/attention", params=cross).content


def test_other_weights_under_the_same_name_get_another_run_id_and_refuse_the_stored_one(one_thread, tmp_path):
    settings = make_settings(run_store=f"sqlite:///{tmp_path}/runs.sqlite3")
    retrained = tiny_registry()
    with torch.no_grad():
        next(retrained.load("tiny-gpt").model.parameters()).add_(1e-3)
    a, b = TestClient(create_app(settings, registry=tiny_registry())), TestClient(create_app(settings, retrained))
    with a, b:
        body = {"model": "tiny-gpt", "text": "abc abc"}
        run_id = a.post("/api/runs", json=body).json()["run_id"]
        r = b.get(f"/api/runs/{run_id}/attention")
        assert r.status_code == 404
        assert r.json()["detail"] == (f"run_id: run {run_id} was computed with other weights of 'tiny-gpt' than this "
                                      "server has loaded (replicas should serve the same checkpoints); POST /api/runs "
                                      "again")
        assert b.post("/api/runs", json=body).json()["run_id"] != run_id


def test_an_expired_run_answers_404_saying_to_post_it_again(one_thread, tmp_path):
    a, b = two_apps(f"sqlite:///{tmp_path}/runs.sqlite3", run_ttl_s=0.3)
    with a, b:
        run_id = a.post("/api/runs", json={"model": "tiny-bert", "text": "a b c"}).json()["run_id"]
        time.sleep(0.4)
        r = b.get(f"/api/runs/{run_id}/heads")
        assert r.status_code == 404
        assert r.json()["detail"].startswith(f"run_id: run {run_id} is unknown or expired (runs are kept")
        assert "POST /api/runs again with the same model, text and backend" in r.json()["detail"]
        assert a.get(f"/api/runs/{run_id}/heads").status_code == 200  # still in A's own cache


def test_sse_stream_headers_stop_proxy_buffering(client):
    r = client.post("/api/generate", json={"model": "tiny-gpt", "prompt": "ab", "max_new_tokens": 3, "stream": True,
                                           "seed": 1})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    assert r.headers["x-accel-buffering"] == "no" and r.headers["cache-control"] == "no-store"
    assert "content-encoding" not in r.headers  # gzip would hold events back too
    assert [name for name, _ in parse_sse(r.text)] == ["prompt"] + ["token"] * 3 + ["summary"]


def test_long_streams_carry_keep_alive_comments_every_sse_ping_s(one_thread):
    # a ping every millisecond: a stream of up to 64 tokens lasts far longer than that, so comments must appear
    app = create_app(make_settings(sse_ping_s=0.001), registry=tiny_registry())
    with TestClient(app) as c:
        r = c.post("/api/generate", json={"model": "tiny-gpt", "prompt": "ab", "max_new_tokens": 64, "stream": True,
                                          "seed": 1})
    lines = r.text.replace("\r\n", "\n").split("\n")
    assert any(line.startswith(": ping") for line in lines)
    names = [name for name, _ in parse_sse(r.text)]  # the comments are no events: the trace is intact
    assert names[0] == "prompt" and names[-1] == "summary" and set(names[1:-1]) == {"token"}
