"""Health, models, metrics, positional data, benchmark, headers, OpenAPI, concurrency limits."""

from __future__ import annotations

import asyncio
import json

import numpy as np
import pytest
from fastapi.testclient import TestClient

from attnlab.api.errors import status_of
from attnlab.main import create_app
from attnlab.services.errors import Busy, Overloaded
from attnlab.services.hub import ModelGate
from tests.support import make_settings, tiny_registry


def test_health(client):
    body = client.get("/api/health").json()
    assert body["status"] == "ok" and body["version"] and isinstance(body["loaded_models"], list)


def test_models_list_and_detail(client):
    models = {m["id"]: m for m in client.get("/api/models").json()}
    assert set(models) == {"tiny-gpt", "tiny-bert", "tiny-t5", "ghost"}
    assert models["ghost"]["available"] is False and "ghost package" in models["ghost"]["reason"]
    gpt = models["tiny-gpt"]
    assert (gpt["family"], gpt["n_layers"], gpt["n_heads"], gpt["positional"]) == ("decoder", 2, 4, "rope")
    assert set(gpt["backends"]) >= {"math", "sdpa", "flash"}
    detail = client.get("/api/models/tiny-t5").json()
    assert detail["loaded"] is True and detail["config"]["family"] == "encoder-decoder"
    assert client.get("/api/models/ghost").status_code == 409
    r = client.get("/api/models/nope")
    assert r.status_code == 404 and "tiny-gpt" in r.json()["detail"]


def test_metrics_prometheus_text(client):
    client.get("/api/health")
    text = client.get("/api/metrics").text
    assert 'attnlab_requests_total{method="GET",route="/api/health",status="200"}' in text
    assert "attnlab_request_seconds_bucket" in text and "attnlab_run_cache_bytes" in text
    assert "attnlab_loaded_models" in text


@pytest.mark.parametrize("scheme", ["none", "sinusoidal", "learned", "t5_relative", "rope", "alibi"])
def test_positional(client, scheme):
    r = client.get(f"/api/positional/{scheme}", params={"d_model": 16, "max_len": 12, "n_heads": 4})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["scheme"] == scheme and body["max_len"] == 12
    if scheme in ("sinusoidal", "learned"):
        assert np.asarray(body["matrix"]).shape == (12, 16)
    if scheme in ("alibi", "t5_relative"):
        assert np.asarray(body["bias"]).shape == (4, 12, 12)
    if scheme == "rope":
        assert len(body["frequencies"]) == 2 and len(body["similarity"]["value"]) == 12


def test_positional_bounds(client):
    assert client.get("/api/positional/nope").status_code == 422
    r = client.get("/api/positional/rope", params={"d_model": 30, "n_heads": 4})
    assert r.status_code == 422 and "d_model" in r.json()["detail"]
    r = client.get("/api/positional/alibi", params={"d_model": 64, "n_heads": 64, "max_len": 4096})
    assert r.status_code == 413 and "dense_budget" in r.json()["detail"]


def test_extrapolation_results(one_thread, tmp_path):
    app = create_app(make_settings(zoo_dir=tmp_path), registry=tiny_registry())
    with TestClient(app) as c:
        r = c.get("/api/positional/extrapolation")
        assert r.status_code == 404 and "attnlab lab extrapolation" in r.json()["detail"]
        (tmp_path / "extrapolation").mkdir()
        (tmp_path / "extrapolation" / "results.json").write_text(json.dumps({"schemes": {"rope": [1.0, 2.0]}}))
        assert c.get("/api/positional/extrapolation").json() == {"schemes": {"rope": [1.0, 2.0]}}


def test_benchmark_on_a_model(client):
    r = client.post("/api/benchmark", json={"model": "tiny-gpt", "text": "hello world", "backends": ["math", "flash"]})
    assert r.status_code == 200, r.text
    rows = r.json()["results"]
    assert [row["backend"] for row in rows] == ["math", "flash"]
    assert rows[0]["max_abs_diff_vs_math"] == 0.0 and rows[1]["max_abs_diff_vs_math"] < 1e-5
    assert all(row["median_ms"] > 0 for row in rows)


@pytest.mark.parametrize("passes", ["fwd", "fwd_bwd"])
def test_benchmark_synthetic(client, passes):
    # fwd_bwd found by fuzzing: the server's inference threads run under no_grad
    r = client.post("/api/benchmark", json={"seq_lens": [32, 64], "backends": ["math", "flash"], "n_heads": 2,
                                            "head_dim": 16, "passes": passes})
    assert r.status_code == 200, r.text
    rows = r.json()["results"]
    assert r.json()["form"] == "synthetic" and len(rows) == 4
    flash = [row for row in rows if row["backend"] == "flash"]
    assert all(row["max_abs_diff_vs_math"] < 1e-4 for row in flash), flash


def test_benchmark_bounds(client):
    r = client.post("/api/benchmark", json={"seq_lens": [2048], "n_heads": 64})  # the schema admits it: the budget
    assert r.status_code == 413 and "benchmark_max_cells" in r.json()["detail"]
    r = client.post("/api/benchmark", json={"model": "tiny-gpt", "text": "hi", "backends": ["warp"]})
    assert r.status_code == 422 and "backend" in r.json()["detail"]


def test_security_headers_and_request_id(client):
    r = client.get("/api/health", headers={"X-Request-ID": "abc-123"})
    csp = r.headers["content-security-policy"]
    assert "script-src 'self';" in csp and "object-src 'none'" in csp and "frame-ancestors 'none'" in csp
    assert "unsafe-inline" not in csp
    assert r.headers["x-content-type-options"] == "nosniff" and r.headers["x-request-id"] == "abc-123"
    forged = client.get("/api/health", headers={"X-Request-ID": "a b\tc"})
    assert forged.headers["x-request-id"] != "a b\tc"
    assert "access-control-allow-origin" not in client.get("/api/health", headers={"Origin": "http://evil"}).headers


def test_cors_only_when_configured(one_thread):
    app = create_app(make_settings(cors_origins=["http://school.example"]), registry=tiny_registry())
    with TestClient(app) as c:
        r = c.get("/api/health", headers={"Origin": "http://school.example"})
        assert r.headers["access-control-allow-origin"] == "http://school.example"
        assert "access-control-allow-origin" not in c.get("/api/health", headers={"Origin": "http://evil"}).headers


def test_gzip_for_large_json_not_for_binary(client):
    text = "a b c d " * 12
    r = client.post("/api/attention", json={"model": "tiny-gpt", "text": text}, headers={"Accept-Encoding": "gzip"})
    assert r.headers.get("content-encoding") == "gzip"
    r = client.post("/api/attention", json={"model": "tiny-gpt", "text": text, "format": "npy"},
                    headers={"Accept-Encoding": "gzip"})
    assert "content-encoding" not in r.headers


def test_openapi_contract(client):
    spec = client.get("/openapi.json").json()
    paths = spec["paths"]
    for path in ["/api/health", "/api/models", "/api/models/{model_id}", "/api/attention", "/api/runs",
                 "/api/runs/{run_id}/attention", "/api/runs/{run_id}/heads", "/api/runs/{run_id}/rollout",
                 "/api/generate", "/api/positional/{scheme}", "/api/positional/extrapolation", "/api/benchmark",
                 "/api/metrics"]:
        assert path in paths, path
    fields = spec["components"]["schemas"]["GenerateRequest"]["properties"]
    assert set(fields) >= {"model", "prompt", "max_new_tokens", "temperature", "top_k", "top_p", "seed", "backend",
                           "stream"}
    assert "X-Attnlab-Meta" in paths["/api/attention"]["post"]["description"]
    assert "text/event-stream" in paths["/api/generate"]["post"]["responses"]["200"]["content"]


def test_gate_limits_queue_with_retry_after():
    async def scenario():
        gate = ModelGate("m", capacity=1, queue_limit=1, timeout_s=0.2, retry_after_s=3)
        async with gate.slot("math"):
            waiter = asyncio.create_task(_enter(gate, "math"))
            await asyncio.sleep(0.01)
            assert gate.waiting == 1
            with pytest.raises(Busy) as busy:
                await _enter(gate, "math")
            assert status_of(busy.value) == 429 and busy.value.headers["Retry-After"] == "3"
            with pytest.raises(Overloaded) as slow:
                await waiter
            assert status_of(slow.value) == 503
        await _enter(gate, "sdpa")  # free again, any backend

    asyncio.run(scenario())


def test_gate_keeps_backends_apart():
    async def scenario():
        gate = ModelGate("m", capacity=2, queue_limit=4, timeout_s=1.0, retry_after_s=1)
        order = []

        async def use(backend, hold):
            async with gate.slot(backend):
                order.append(("in", backend))
                await asyncio.sleep(hold)
                order.append(("out", backend))

        await asyncio.gather(use("math", 0.05), use("math", 0.05), use("flash", 0.0))
        # flash enters only after both math requests left
        last_math_out = max(i for i, event in enumerate(order) if event == ("out", "math"))
        assert order.index(("in", "flash")) > last_math_out

    asyncio.run(scenario())


async def _enter(gate: ModelGate, backend: str) -> None:
    async with gate.slot(backend):
        pass


def test_access_log_line(client, caplog):
    with caplog.at_level("INFO", logger="attnlab.access"):
        client.post("/api/attention", json={"model": "tiny-gpt", "text": "hello"}, headers={"X-Request-ID": "req-42"})
    fields = [r.attnlab for r in caplog.records if hasattr(r, "attnlab")][-1]
    assert fields["request_id"] == "req-42" and fields["path"] == "/api/attention" and fields["status"] == 200
    assert fields["model"] == "tiny-gpt" and fields["tokens"] == 5 and fields["ms"] >= 0


def test_health_stays_fast_while_models_work(client):
    """Inference runs in worker threads: /api/health answers while generations hold the model."""

    async def scenario():
        import time

        from httpx import ASGITransport, AsyncClient

        async with AsyncClient(transport=ASGITransport(client.app), base_url="http://t") as ac:
            slow = [asyncio.create_task(ac.post("/api/generate", json={"model": "tiny-gpt", "prompt": "x" * 800,
                                                                       "max_new_tokens": 64, "seed": s}))
                    for s in range(2)]
            t0 = time.perf_counter()
            latencies = []
            while not all(task.done() for task in slow):
                t = time.perf_counter()
                assert (await ac.get("/api/health")).status_code == 200
                latencies.append(time.perf_counter() - t)
                await asyncio.sleep(0.005)
            return time.perf_counter() - t0, latencies, [task.result().status_code for task in slow]

    total, latencies, statuses = client.portal.call(scenario)
    assert statuses == [200, 200]
    assert len(latencies) >= 3 and max(latencies) < max(0.5 * total, 0.05), (total, max(latencies))


# -- the document states this app's settings, and the app keeps to it ------------------------------------------


@pytest.fixture(scope="module")
def narrow(one_thread):
    """An app whose settings narrow the bounds: its document and its validation must both follow them."""
    app = create_app(make_settings(max_pool=64, max_new_tokens=8, max_text_chars=50), registry=tiny_registry())
    with TestClient(app) as c:
        yield c


def _param(spec: dict, path: str, name: str) -> dict:
    return next(p for p in spec["paths"][path]["get"]["parameters"] if p["name"] == name)


def test_settings_bounds_are_in_the_document(narrow, client):
    spec = narrow.get("/openapi.json").json()
    pool = _param(spec, "/api/runs/{run_id}/attention", "pool")["schema"]["anyOf"][0]
    assert (pool["maximum"], pool["x-setting"]) == (64, "max_pool")
    schemas = spec["components"]["schemas"]
    new_tokens = schemas["GenerateRequest"]["properties"]["max_new_tokens"]
    assert (new_tokens["maximum"], new_tokens["x-setting"]) == (8, "max_new_tokens") and "default" not in new_tokens
    for model, field in [("AttentionRequest", "text"), ("RunRequest", "text"), ("GenerateRequest", "prompt"),
                         ("ModelBenchmarkRequest", "text")]:
        assert schemas[model]["properties"][field]["maxLength"] == 50, (model, field)
    # another app, other settings: its own document
    default_pool = _param(client.get("/openapi.json").json(), "/api/runs/{run_id}/attention", "pool")
    assert default_pool["schema"]["anyOf"][0]["maximum"] == 2048


def test_settings_bounds_are_what_the_app_enforces(narrow):
    run_id = narrow.post("/api/runs", json={"model": "tiny-gpt", "text": "abcdefghij"}).json()["run_id"]
    assert narrow.get(f"/api/runs/{run_id}/attention", params={"pool": 64}).status_code == 200
    r = narrow.get(f"/api/runs/{run_id}/attention", params={"pool": 65})
    assert r.status_code == 422 and r.json()["detail"] == "pool: Input should be less than or equal to 64 (max_pool)"
    r = narrow.post("/api/generate", json={"model": "tiny-gpt", "prompt": "hi", "max_new_tokens": 9})
    assert r.status_code == 422 and "less than or equal to 8 (max_new_tokens)" in r.json()["detail"]
    steps = narrow.post("/api/generate", json={"model": "tiny-gpt", "prompt": "hi", "seed": 1}).json()["steps"]
    assert len(steps) <= 8  # the default (32) is capped by the server's max_new_tokens
    r = narrow.post("/api/attention", json={"model": "tiny-gpt", "text": "a" * 51})
    assert r.status_code == 422 and "text: String should have at most 50 characters (max_text_chars)" in r.text
    r = narrow.post("/api/attention", json={"model": "tiny-bert", "text": "a" * 30, "text_pair": "b" * 30})
    assert r.status_code == 413 and "together: 60 characters" in r.json()["detail"]


def test_closed_sets_are_enums_from_their_registries(client):
    from attnlab.models.attention import BACKENDS
    from attnlab.models.positional import POSITIONAL

    spec = client.get("/openapi.json").json()
    schemas = spec["components"]["schemas"]
    backend = schemas["AttentionRequest"]["properties"]["backend"]["anyOf"][0]
    assert backend["enum"] == list(BACKENDS)
    assert schemas["SyntheticBenchmarkRequest"]["properties"]["backends"]["items"]["enum"] == list(BACKENDS)
    assert _param(spec, "/api/positional/{scheme}", "scheme")["schema"]["enum"] == list(POSITIONAL)
    assert _param(spec, "/api/positional/{scheme}", "format")["schema"]["enum"] == ["json", "figure"]
    tile = "/api/runs/{run_id}/attention"
    assert _param(spec, tile, "pool_mode")["schema"]["enum"] == ["max", "mean"]
    assert _param(spec, tile, "format")["schema"]["enum"] == ["json", "f16", "u8"]
    assert _param(spec, tile, "kind")["schema"]["anyOf"][0]["enum"] == ["encoder", "decoder", "cross"]
    # rollout composes self-attention only; head scores cover cross-attention too
    assert _param(spec, "/api/runs/{run_id}/rollout", "kind")["schema"]["anyOf"][0]["enum"] == ["encoder", "decoder"]
    assert _param(spec, "/api/figures/heads/{run_id}", "kind")["schema"]["anyOf"][0]["enum"] == [
        "encoder", "decoder", "cross"]


def test_every_status_the_app_sends_is_documented(client):
    spec = client.get("/openapi.json").json()
    for path, operations in spec["paths"].items():
        for method, op in operations.items():
            documented = set(op["responses"])
            if op.get("parameters") or "requestBody" in op:
                assert "422" in documented, (method, path)
            if "requestBody" in op:  # the body limit (app.core.middleware.BodyLimitMiddleware)
                assert "max_body_bytes" in op["responses"]["413"]["description"], (method, path)
            if not path.startswith("/api/positional"):  # every other operation needs the started services
                assert "the server is starting" in op["responses"]["503"]["description"], (method, path)
