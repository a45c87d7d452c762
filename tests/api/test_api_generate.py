"""POST /api/generate: JSON and SSE traces, determinism for a seed, disconnect and time limits."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from fastapi.testclient import TestClient

from attnlab.main import create_app
from attnlab.services.generation import GenerateParams
from tests.support import make_settings, parse_sse, tiny_registry

REQ = {"model": "tiny-gpt", "prompt": "once upon a time", "max_new_tokens": 6, "temperature": 0.9, "top_k": 20,
       "seed": 7}


def _check_steps(steps: list[dict], prompt_len: int) -> None:
    for i, step in enumerate(steps):
        assert step["step"] == i and step["context_len"] == prompt_len + i
        attention = np.asarray(step["attention"])
        assert attention.shape == (2, 4, prompt_len + i)  # [L][H][t]
        np.testing.assert_allclose(attention.sum(-1), 1.0, atol=1e-4)
        probs = [t["prob"] for t in step["top"]]
        assert len(probs) == 5 and probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1 + 1e-6


def test_json_trace(client):
    r = client.post("/api/generate", json=REQ)
    assert r.status_code == 200, r.text
    body = r.json()
    assert len(body["steps"]) == 6
    _check_steps(body["steps"], len(REQ["prompt"]))
    summary = body["summary"]
    assert summary["tokens"] == [s["token"] for s in body["steps"]] and summary["stopped"] == "max_new_tokens"
    assert summary["text"] == REQ["prompt"] + "".join(s["text"] for s in body["steps"]) + summary["tail_text"]


def test_sse_events_match_json_and_are_deterministic(client):
    r = client.post("/api/generate", json={**REQ, "stream": True})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    events = parse_sse(r.text)
    names = [name for name, _ in events]
    assert names == ["prompt"] + ["token"] * 6 + ["summary"]
    # the prompt's tokens come first, before any new token: the same labels the summary gives at the end
    prompt, summary = events[0][1], events[-1][1]
    assert prompt["prompt_tokens"] == summary["prompt_tokens"] and len(prompt["prompt_tokens"]) == len(REQ["prompt"])
    assert prompt["prompt_offsets"] == summary["prompt_offsets"]
    steps = [data for name, data in events if name == "token"]
    _check_steps(steps, len(REQ["prompt"]))
    as_json = client.post("/api/generate", json=REQ).json()
    assert [s["token_id"] for s in steps] == [s["token_id"] for s in as_json["steps"]]
    again = parse_sse(client.post("/api/generate", json={**REQ, "stream": True}).text)
    assert [d["token_id"] for n, d in again if n == "token"] == [s["token_id"] for s in steps]
    other_seed = client.post("/api/generate", json={**REQ, "seed": 8, "max_new_tokens": 12}).json()
    same_seed = client.post("/api/generate", json={**REQ, "max_new_tokens": 12}).json()
    assert [s["token_id"] for s in other_seed["steps"]] != [s["token_id"] for s in same_seed["steps"]]


def test_greedy_is_argmax(client):
    body = client.post("/api/generate", json={**REQ, "temperature": 0, "top_k": None}).json()
    for step in body["steps"]:
        assert step["token"] == step["top"][0]["token"]


def test_disconnect_stops_generation(client):
    service = client.app.state.services.generation
    params = GenerateParams("tiny-gpt", "hello", 50, 1.0, None, None, 0, None, 5)
    polls = 0

    async def gone_after_three() -> bool:
        nonlocal polls
        polls += 1
        return polls > 3

    async def run():
        return await service.collect(params, gone_after_three)

    body = client.portal.call(run)
    assert len(body["steps"]) == 3 and body["summary"]["stopped"] == "disconnect"


def test_wall_clock_limit(one_thread):
    app = create_app(make_settings(generate_timeout_s=0.0), registry=tiny_registry())
    with TestClient(app) as c:
        body = c.post("/api/generate", json={**REQ, "max_new_tokens": 20}).json()
    assert body["summary"]["stopped"] == "timeout" and len(body["steps"]) < 20


def test_encoder_cannot_generate(client):
    r = client.post("/api/generate", json={**REQ, "model": "tiny-bert"})
    assert r.status_code == 422 and "decoder" in r.json()["detail"]


@pytest.mark.parametrize("field,value", [("temperature", -1), ("temperature", 11), ("top_p", 0), ("top_p", 1.5),
                                         ("max_new_tokens", 0), ("max_new_tokens", 10**6), ("n_top", 0)])
def test_bad_sampling_parameters(client, field, value):
    r = client.post("/api/generate", json={**REQ, field: value})
    assert r.status_code == 422 and field in r.json()["detail"]


def test_server_limit_on_new_tokens(client):
    r = client.post("/api/generate", json={**REQ, "max_new_tokens": 65})  # test settings: 64
    assert r.status_code == 422 and "max_new_tokens" in r.json()["detail"] and "64" in r.json()["detail"]


def test_nan_temperature_rejected(client):
    r = client.post("/api/generate", content=b'{"model": "tiny-gpt", "prompt": "hi", "temperature": NaN}',
                    headers={"content-type": "application/json"})
    assert r.status_code == 422 and "temperature" in r.json()["detail"]


def test_concurrent_streams(client):
    async def both():
        from httpx import ASGITransport, AsyncClient

        async with AsyncClient(transport=ASGITransport(client.app), base_url="http://t") as ac:
            return await asyncio.gather(*(ac.post("/api/generate", json={**REQ, "seed": s}) for s in (1, 2, 3)))

    responses = client.portal.call(both)
    assert [r.status_code for r in responses] == [200, 200, 200]
