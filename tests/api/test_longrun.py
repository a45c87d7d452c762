"""Long inputs in class: the demo passage fits each model, `auto` picks flash for long inputs, a run streamed
with its estimate and per-layer progress (and cancelled between layers when its consumer goes), the grid's
thumbnails in one answer, and /api/health while models are prepared in the background."""

from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient

from attnlab.core.metrics import Metrics
from attnlab.main import create_app
from attnlab.models import Registry, ScratchAdapter, TransformerConfig, build_model
from attnlab.models.capture import Cancelled, capture, on_record
from attnlab.models.catalogue import Entry
from attnlab.models.tokenization import CharTokenizer
from attnlab.services import build_services
from attnlab.services.longrun import PASSAGE, fit_text, readable
from tests.support import CORPUS, adapter_entry, make_settings, meta_of, parse_sse, tiny_registry


def deep_adapter(model_id: str = "tiny-deep", n_layers: int = 8, corpus: str = CORPUS) -> ScratchAdapter:
    """A decoder with enough layers to cancel in the middle of."""
    torch.manual_seed(0)
    tok = CharTokenizer.from_corpus(corpus)
    cfg = TransformerConfig(vocab_size=tok.vocab_size, d_model=32, n_layers=n_layers, n_heads=4, family="decoder",
                            positional="rope", max_positions=2048)
    return ScratchAdapter(model_id, build_model(cfg), tok)


def registry() -> Registry:
    reg = tiny_registry()
    reg.register(adapter_entry(deep_adapter()))
    return reg


@pytest.fixture(scope="module")
def client(one_thread):
    app = create_app(make_settings(auto_flash_min_tokens=64), registry=registry())
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


# -- the demo passage ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(("model", "limit", "reason"), [("tiny-bert", 64, "max_positions"),
                                                        ("tiny-t5", 128, "max_positions"),
                                                        ("tiny-gpt", 2048, "max_positions")])
def test_long_text_fits_each_model_and_runs(client, model, limit, reason):
    r = client.get("/api/long-text", params={"model": model})
    assert r.status_code == 200, r.text
    lt = r.json()
    assert (lt["limit"], lt["limit_reason"]) == (limit, reason)
    assert limit * 0.8 <= lt["n_tokens"] <= limit  # fills the model, never past it
    assert lt["text"].startswith("(1) A transformer") and not lt["text"].endswith(" ")
    run = client.post("/api/runs", json={"model": model, "text": lt["text"], "backend": lt["backend"]})
    assert run.status_code == 200, run.text
    assert run.json()["n_tokens"] == lt["n_tokens"]
    assert lt["backend"] == "flash" and "auto_flash_min_tokens 64" in lt["backend_reason"]
    assert lt["estimate_s"] > 0


def test_long_text_asked_past_the_classroom_default_goes_to_the_model_limit(one_thread):
    """long_text_tokens is the default length only: a count asked for goes as far as the model and the run
    cache go (the 32k ALiBi decoder gets a 32k text)."""
    from attnlab.models.paths import ZOO
    from attnlab.models.registry import Registry, zoo_entries

    reg = Registry([e for e in zoo_entries(ZOO) if e.id == "extrapolation-alibi"])
    with TestClient(create_app(make_settings(run_cache_bytes=64 * 2**20), registry=reg)) as c:
        default = c.get("/api/long-text", params={"model": "extrapolation-alibi"}).json()
        assert default["limit_reason"] == "long_text_tokens" and default["limit"] == 2048
        asked = c.get("/api/long-text", params={"model": "extrapolation-alibi", "tokens": 32768}).json()
        assert (asked["limit"], asked["limit_reason"]) == (32768, "max_positions")
        assert 0.8 * 32768 <= asked["n_tokens"] <= 32768 and asked["backend"] == "flash"


def test_long_text_honours_a_smaller_token_count_and_validates(client):
    lt = client.get("/api/long-text", params={"model": "tiny-gpt", "tokens": 40}).json()
    assert lt["limit_reason"] == "tokens" and lt["n_tokens"] <= 40
    assert lt["backend"] == "math" and "< auto_flash_min_tokens 64" in lt["backend_reason"]
    r = client.get("/api/long-text", params={"model": "tiny-gpt", "tokens": 3})
    assert r.status_code == 422 and "tokens" in r.json()["detail"]
    r = client.get("/api/long-text", params={"model": "tiny-gpt", "tokens": 10**9})
    assert r.status_code == 422 and "tokens" in r.json()["detail"]
    r = client.get("/api/long-text", params={"model": "nope"})
    assert r.status_code == 404 and r.json()["detail"].startswith("model:")
    assert client.get("/api/long-text", params={"model": "ghost"}).status_code == 409


def test_passage_is_made_readable_for_a_small_vocabulary(one_thread):
    adapter = deep_adapter("lower", n_layers=1, corpus="abcdefghijklmnopqrstuvwxyz .,")
    table, dropped, lowered = readable(adapter, PASSAGE + "(0123456789)")
    assert lowered and "(" in dropped and "7" in dropped and ":" in dropped and "A" not in dropped
    text, n = fit_text(adapter, PASSAGE, 300, table)
    enc = adapter.tokenize(text)
    assert adapter.unk_id not in enc.ids[0].tolist() and n == len(enc) <= 300
    assert text.startswith(" a transformer reads a sentence all at once.")


# -- streamed runs ----------------------------------------------------------------------------------------
def test_stream_reports_estimate_progress_and_the_same_run_as_post(client):
    text = "the cat sat on the mat. " * 4  # 96 tokens: auto picks flash
    r = client.post("/api/runs/stream", json={"model": "tiny-deep", "text": text})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    events = parse_sse(r.text)
    names = [n for n, _ in events]
    assert names == ["estimate"] + ["progress"] * 8 + ["done"]
    estimate = events[0][1]
    assert (estimate["n_tokens"], estimate["backend"], estimate["n_steps"]) == (96, "flash", 8)
    assert [e["done"] for n, e in events if n == "progress"] == list(range(1, 9))
    assert [e["layer"] for n, e in events if n == "progress"] == list(range(8))
    done = events[-1][1]
    plain = client.post("/api/runs", json={"model": "tiny-deep", "text": text, "backend": "flash"}).json()
    assert plain["cached"]  # the stream put it in the cache
    for key in ("run_id", "tokens", "token_ids", "offsets", "n_layers", "n_heads", "backend"):
        assert done[key] == plain[key], key
    again = parse_sse(client.post("/api/runs/stream", json={"model": "tiny-deep", "text": text}).text)
    assert [n for n, _ in again] == ["done"] and again[0][1]["cached"] is True


def test_stream_short_input_uses_math_and_a_named_backend_is_kept(client):
    events = parse_sse(client.post("/api/runs/stream", json={"model": "tiny-gpt", "text": "abc abc"}).text)
    assert events[0][1]["backend"] == "math" and events[-1][1]["backend"] == "math"
    events = parse_sse(client.post("/api/runs/stream", json={"model": "tiny-gpt", "text": "abc abc",
                                                              "backend": "sdpa"}).text)
    assert events[-1][1]["backend"] == "sdpa"


@pytest.mark.parametrize(("body", "status", "field"), [
    ({"model": "tiny-deep", "text": "abc", "backend": "warp"}, 422, "backend"),
    ({"model": "nope", "text": "abc"}, 404, "model"),
    ({"model": "tiny-bert", "text": "abc " * 100}, 413, "text"),
    ({"model": "tiny-gpt", "text": "abc", "text_pair": "x"}, 422, "text_pair"),
])
def test_stream_refuses_bad_input_before_streaming(client, body, status, field):
    r = client.post("/api/runs/stream", json=body)
    assert r.status_code == status, r.text
    assert field in r.json()["detail"]


def test_closing_the_stream_stops_the_forward_between_layers(one_thread):
    """The consumer goes after the first layer: the worker thread raises Cancelled at its next layer, the
    model's slot is freed and nothing is cached."""
    settings = make_settings()
    adapter = deep_adapter(n_layers=12)
    release = threading.Event()
    # the worker holds before layer 1 until the consumer has gone, so the cancel lands mid-forward
    adapter.model.decoder.blocks[1].register_forward_pre_hook(lambda *_: release.wait(20) and None)
    services = build_services(settings, Registry([adapter_entry(adapter)]), Metrics())

    async def scenario():
        stream = services.longrun.stream("tiny-deep", "abcdefgh " * 40, None, "math")
        assert (await anext(stream))[0] == "estimate"
        name, progress = await anext(stream)
        assert (name, progress["done"], progress["layer"]) == ("progress", 1, 0)
        await stream.aclose()
        release.set()
        tasks = list(services.longrun.inflight)
        assert len(tasks) == 1
        await asyncio.wait(tasks, timeout=30)
        return tasks[0]

    task = asyncio.run(scenario())
    assert isinstance(task.exception(), Cancelled)
    assert "after decoder layer 1" in str(task.exception())
    assert services.hub.gate("tiny-deep").running == 0
    assert len(services.runs.cache) == 0


def test_on_record_hook_raising_stops_a_forward(one_thread):
    adapter = deep_adapter(n_layers=6)
    calls: list[int] = []

    def hook(kind, layer):
        calls.append(layer)
        if layer == 2:
            raise Cancelled("stop")

    enc = adapter.tokenize("abc abc abc")
    with pytest.raises(Cancelled), on_record(hook), capture() as rec:
        adapter.model(enc.ids)
    assert calls == [0, 1, 2] and len(rec.records) == 3


# -- the grid's thumbnails in one answer ------------------------------------------------------------------------
def test_overviews_equal_one_pooled_tile_per_head(client):
    text = "the quick brown fox jumps over the lazy dog. " * 3
    run = client.post("/api/runs", json={"model": "tiny-deep", "text": text, "backend": "math"}).json()
    url = f"/api/runs/{run['run_id']}/overviews"
    r = client.get(url, params={"layers": "2:5", "pool": 16})
    assert r.status_code == 200 and r.headers["X-Shape"] == "3,4,15,15"
    meta = meta_of(r)
    assert (meta["layers"], meta["factor"], meta["kind"]) == ([2, 5], 9, "decoder")
    maps = np.frombuffer(r.content, dtype="<f2").reshape(3, 4, 15, 15)
    as_json = client.get(url, params={"layers": "2:5", "pool": 16, "format": "json"}).json()
    for i, layer in enumerate(range(2, 5)):
        for head in range(4):
            tile = client.get(f"/api/runs/{run['run_id']}/attention",
                              params={"layer": layer, "head": head, "pool": 16, "format": "f16"})
            one = np.frombuffer(tile.content, dtype="<f2").reshape(15, 15)
            np.testing.assert_array_equal(maps[i, head], one)
            np.testing.assert_allclose(as_json["attention"][i][head], one.astype(np.float32), atol=1e-3)
    assert client.get(url).headers["X-Shape"] == "8,4,45,45"  # default: every layer, pooled to at most 48


@pytest.mark.parametrize(("params", "status", "field"), [
    ({"layers": "3:2"}, 422, "layers"), ({"layers": "0:9"}, 422, "layers"), ({"layers": "x"}, 422, "layers"),
    ({"kind": "cross"}, 422, "kind"), ({"pool": 0}, 422, "pool"), ({"pool": 2049}, 422, "pool"),
])
def test_overviews_refuse_bad_ranges(client, params, status, field):
    run = client.post("/api/runs", json={"model": "tiny-deep", "text": "abc abc", "backend": "math"}).json()
    r = client.get(f"/api/runs/{run['run_id']}/overviews", params=params)
    assert r.status_code == status, r.text
    assert field in r.json()["detail"]


def test_overviews_count_the_cells_they_would_send(client):
    """The bound counts the maps' own cells (a pool larger than the run is the map itself), and its message
    names them: 7 tokens at pool 2048 are 7x7 maps; 400 tokens at pool 2048 pass max_tile_cells."""
    short = client.post("/api/runs", json={"model": "tiny-deep", "text": "abc abc", "backend": "math"}).json()
    r = client.get(f"/api/runs/{short['run_id']}/overviews", params={"pool": 2048})
    assert r.status_code == 200 and r.headers["X-Shape"] == "8,4,7,7"
    long = client.post("/api/runs", json={"model": "tiny-deep", "text": "abc " * 100, "backend": "flash"}).json()
    r = client.get(f"/api/runs/{long['run_id']}/overviews", params={"pool": 2048})
    assert r.status_code == 413
    assert r.json()["detail"].startswith("layers: 8 layers x 4 heads x 400x400 cells is over max_tile_cells")


def test_overviews_of_an_unknown_run_is_404(client):
    r = client.get(f"/api/runs/{'0' * 32}/overviews")
    assert r.status_code == 404 and "POST /api/runs again" in r.json()["detail"]


# -- preparing models at start-up ----------------------------------------------------------------------------
def test_health_says_preparing_until_the_background_load_ends(one_thread):
    adapter = deep_adapter("slow", n_layers=1)
    gate = threading.Event()

    def load():
        gate.wait(20)
        return adapter

    reg = Registry([Entry("slow", lambda: adapter.info, load)])
    app = create_app(make_settings(prepare_on_start=True, default_models=["slow", "absent"]), registry=reg)
    with TestClient(app) as c:
        health = c.get("/api/health").json()
        assert health["status"] == "preparing" and health["preparing"] == {"slow": "loading its weights"}
        assert c.get("/api/models").status_code == 200  # the server answers meanwhile
        gate.set()
        deadline = time.time() + 20
        while c.get("/api/health").json()["status"] != "ok" and time.time() < deadline:
            time.sleep(0.05)
        health = c.get("/api/health").json()
        assert health["status"] == "ok" and health["preparing"] == {} and health["loaded_models"] == ["slow"]
        # a request after preparation finds the model loaded (one load, shared)
        assert c.post("/api/runs", json={"model": "slow", "text": "abc"}).status_code == 200
