"""GET /api/benchmark/latest: the Backends page opens on results without measuring anything; the shipped
results before any run, the last run of this server after one."""

from __future__ import annotations

import json
from importlib.resources import files

import pytest
from fastapi.testclient import TestClient

from attnlab.main import create_app
from attnlab.web import figures
from tests.support import make_settings, tiny_registry


@pytest.fixture
def client(one_thread):  # one per test: the latest run is per process
    app = create_app(make_settings(), registry=tiny_registry())
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


def shipped() -> dict:
    return json.loads((files("attnlab.services") / "benchmark_shipped.json").read_text())


def test_shipped_results_cover_the_page_defaults_and_agree_with_math():
    answer = shipped()
    request = answer["request"]
    rows = {(r["backend"], r["seq_len"]) for r in answer["results"]}
    assert rows == {(b, t) for b in request["backends"] for t in request["seq_lens"]}
    for r in answer["results"]:
        assert r["median_ms"] > 0 and r["peak_memory_bytes"] >= 0
        assert r["max_abs_diff_vs_math"] < 1e-4  # exact backends: the same attention
    assert answer["machine"] and answer["measured_at"].endswith("Z")


def test_latest_before_any_run_is_the_shipped_one_and_measures_nothing(client):
    answer = client.get("/api/benchmark/latest?format=figure")
    assert answer.status_code == 200
    body = answer.json()
    assert body["source"] == "shipped"
    expected = shipped()
    assert body["results"] == expected["results"] and body["request"] == expected["request"]
    assert body["figure"]["data"]  # the page's chart, drawn from the shipped rows
    assert client.get("/api/benchmark/latest").json()["figure"] is None
    # nothing was measured: the shipped answer stays until a POST
    assert client.get("/api/benchmark/latest").json()["results"] == expected["results"]


def test_latest_after_a_run_is_that_run(client):
    request = {"seq_lens": [16, 32], "backends": ["math", "sdpa"], "n_heads": 2, "head_dim": 8}
    ran = client.post("/api/benchmark", json=request)
    assert ran.status_code == 200, ran.text
    body = client.get("/api/benchmark/latest").json()
    assert body["source"] == "this server" and body["form"] == "synthetic"
    assert body["results"] == ran.json()["results"]
    assert body["request"]["seq_lens"] == [16, 32] and body["request"]["backends"] == ["math", "sdpa"]
    # a refused request is not a measurement: the latest stays
    assert client.post("/api/benchmark", json={"seq_lens": [0]}).status_code == 422
    assert client.get("/api/benchmark/latest").json()["results"] == ran.json()["results"]


def test_openapi_states_the_sources(client):
    schema = client.get("/openapi.json").json()
    assert schema["components"]["schemas"]["BenchmarkLatest"]["properties"]["source"]["enum"] == [
        "shipped", "this server"]
    assert "get" in schema["paths"]["/api/benchmark/latest"]


def test_one_input_benchmark_draws_bars_not_dots_on_log_axes():
    rows = [{"backend": b, "n_tokens": 12, "median_ms": t, "attention_peak_memory_bytes": m}
            for b, t, m in (("math", 3.0, 2**20), ("sdpa", 1.0, 2**19), ("flash", 1.5, 2**18))]
    fig = figures.benchmark_figure(rows)
    assert [t.type for t in fig.data] == ["bar", "bar"]
    assert list(fig.data[0].x) == ["math", "sdpa", "flash"] and list(fig.data[0].y) == [3.0, 1.0, 1.5]
    assert list(fig.data[1].y) == [1.0, 0.5, 0.25]  # MiB
    assert fig.layout.yaxis.type != "log" and "12 tokens" in fig.layout.title.text
    sweep = figures.benchmark_figure([{**r, "seq_len": n} for n in (64, 128) for r in rows])
    assert sweep.data[0].type == "scatter" and sweep.layout.xaxis.type == "log"
